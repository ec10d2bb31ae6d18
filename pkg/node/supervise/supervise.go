package supervise

import (
	"context"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/retry"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// healthyRun is how long a nexlet must run before its failures stop counting as "in a row".
const healthyRun = time.Minute

// Process is a nexlet process the node starts and keeps running.
type Process struct {
	Name string
	Path string
	Args []string
	Env  []string
	// Output receives the child's stdout and stderr.
	Output io.Writer
	// StopTimeout bounds a graceful stop before SIGKILL.
	StopTimeout time.Duration
	// RestartLimit is how many failures in a row are tolerated before giving up (0: no limit).
	RestartLimit int
	// Alive, when set, reports whether an instance of this nexlet is already serving (one
	// that outlived a previous nexd, or a child of this supervisor's that could not be told
	// from one); the supervisor then waits for it instead of starting a second one. It is
	// asked before each start, so a start that failed because an instance still holds the
	// nexlet's data dir adopts that instance.
	Alive func(ctx context.Context) bool
	// OnEvent is told about restarts and giving up (for node events).
	OnEvent func(typ, msg string)
	// StopAdopted, when set, stops an adopted instance when the supervisor's context
	// ends, as it would stop its own child.
	StopAdopted func()
	// AfterStop, when set, runs once the supervisor has stopped the nexlet for good (its
	// context ended, or it gave up on it): nexd kills what the nexlet left behind (one
	// killed for lack of time, or dead too often) and removes its cgroups.
	AfterStop func()
}

// Run runs a until ctx ends, restarting it with exponential backoff (250 ms doubling
// to 30 s); after RestartLimit failures in a row (a failure is an exit within a minute of
// starting) it gives up. On ctx end the child gets SIGTERM, then SIGKILL after StopTimeout.
// The child runs in its own process group, so a terminal's Ctrl+C reaches only nexd (which
// stops it in order) and a SIGKILLed nexd leaves it and its workloads running.
func Run(ctx context.Context, a Process, log *zap.Logger) {
	log = log.Named("supervisor").With(zap.String("nexlet", a.Name))
	if a.StopTimeout <= 0 {
		a.StopTimeout = 20 * time.Second
	}
	event := func(typ, msg string) {
		if a.OnEvent != nil {
			a.OnEvent(typ, msg)
		}
	}
	backoff := retry.Backoff{First: 250 * time.Millisecond, Max: 30 * time.Second}
	failures := 0
	for {
		if a.Alive != nil && a.Alive(ctx) {
			log.Info("an instance from before is still serving; adopting it")
			for a.Alive(ctx) {
				select {
				case <-ctx.Done():
					if a.StopAdopted != nil {
						a.StopAdopted()
					}
					if a.AfterStop != nil {
						a.AfterStop()
					}
					return
				case <-time.After(2 * time.Second):
				}
			}
			log.Warn("the adopted instance is gone; starting a new one")
			backoff.Reset() // it served: failures count afresh
			failures = 0
		}
		began := time.Now()
		cmd := exec.Command(a.Path, a.Args...)
		cmd.Env = append(os.Environ(), a.Env...)
		cmd.Stdout, cmd.Stderr = a.Output, a.Output
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			log.Error("start nexlet", zap.String("path", a.Path), zap.Error(err))
		} else {
			log.Info("nexlet started", zap.Int("pid", cmd.Process.Pid))
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				log.Warn("nexlet exited", zap.Error(err))
			case <-ctx.Done():
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(a.StopTimeout):
					log.Warn("nexlet did not stop in time; killing it")
					_ = cmd.Process.Kill()
					<-exited
				}
				log.Info("nexlet stopped")
				if a.AfterStop != nil {
					a.AfterStop()
				}
				return
			}
		}
		if time.Since(began) >= healthyRun {
			// an exit after a healthy run is not one of a series
			backoff.Reset()
			failures = 0
		} else {
			failures++
		}
		if a.RestartLimit > 0 && failures > a.RestartLimit {
			log.Error("nexlet failed too often in a row; giving up", zap.Int("limit", a.RestartLimit))
			event(v1.EventNexletFailed, "restart limit reached")
			if a.AfterStop != nil {
				a.AfterStop() // what its workloads left runs unowned from now on: it goes
			}
			return
		}
		log.Info("restarting nexlet", zap.Duration("delay", backoff.Peek()), zap.Int("attempt", failures))
		event(v1.EventNexletRestarting, "exited; restarting")
		if !backoff.Wait(ctx, 0) {
			return
		}
	}
}
