package node

import (
	"context"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Agent is a nexlet process the node starts and keeps running.
type Agent struct {
	Name string
	Path string
	Args []string
	Env  []string
	// Output receives the child's stdout and stderr.
	Output io.Writer
	// StopTimeout bounds a graceful stop before SIGKILL.
	StopTimeout time.Duration
}

// Supervise runs a until ctx ends, restarting it with exponential backoff (250 ms doubling
// to 30 s, reset after a minute of good health). On ctx end the child gets SIGTERM, then
// SIGKILL after StopTimeout. The child runs in its own process group so a terminal's
// Ctrl+C reaches only nexd, which then stops the child in order.
func Supervise(ctx context.Context, a Agent, log *zap.Logger) {
	log = log.Named("supervisor").With(zap.String("agent", a.Name))
	if a.StopTimeout <= 0 {
		a.StopTimeout = 20 * time.Second
	}
	delay := 250 * time.Millisecond
	for {
		began := time.Now()
		cmd := exec.Command(a.Path, a.Args...)
		cmd.Env = append(os.Environ(), a.Env...)
		cmd.Stdout, cmd.Stderr = a.Output, a.Output
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			log.Error("start agent", zap.String("path", a.Path), zap.Error(err))
		} else {
			log.Info("agent started", zap.Int("pid", cmd.Process.Pid))
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				log.Warn("agent exited", zap.Error(err))
			case <-ctx.Done():
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(a.StopTimeout):
					log.Warn("agent did not stop in time; killing it")
					_ = cmd.Process.Kill()
					<-exited
				}
				log.Info("agent stopped")
				return
			}
		}
		if time.Since(began) > time.Minute {
			delay = 250 * time.Millisecond
		}
		log.Info("restarting agent", zap.Duration("delay", delay))
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 30*time.Second)
	}
}
