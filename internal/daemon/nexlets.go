package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/cgroupfs"
	"github.com/nexrun/nex/internal/proc"
	"github.com/nexrun/nex/internal/tick"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node/supervise"
)

// nexlets are the local nexlets nexd starts and supervises: the --nexlets and
// nexlet-native, each with its own credentials when an issuer is set, renewed while
// nexd runs.
type nexlets struct {
	d      *daemon
	ctx    context.Context // ends when nexd stops them
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	credIDs []string // nexlets with credentials of their own, renewed by renewLoop

	nativeGaveUp     chan struct{} // closed when nexlet-native failed too often in a row
	nativeGaveUpOnce sync.Once
}

// startNexlets starts every --nexlets nexlet and nexlet-native (unless disabled), renews
// their credentials, and waits (up to --nexlet-wait) for nexlet-native to register.
func (d *daemon) startNexlets(ctx context.Context) error {
	x := &nexlets{d: d, nativeGaveUp: make(chan struct{})}
	x.ctx, x.cancel = context.WithCancel(context.Background())
	d.nexlets = x
	for _, spec := range d.o.Nexlets {
		if err := x.startNexlet(spec); err != nil {
			return err
		}
	}
	if !d.o.DisableNativeStart {
		if err := x.startNative(); err != nil {
			return err
		}
	}
	x.startRenewal()
	if d.o.DisableNativeStart {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, d.o.NexletWait)
	defer cancel()
	go func() {
		select {
		case <-x.nativeGaveUp:
			cancel() // no use waiting for it
		case <-wctx.Done():
		}
	}()
	if err := d.node.WaitForNexlet(wctx, "native"); err != nil && ctx.Err() == nil {
		select {
		case <-x.nativeGaveUp:
			d.log.Error("nexlet-native failed at every start and was given up (its own lines above say why): this node runs no native workloads until nexd is restarted", zap.Int("starts", d.o.NexletRestartLimit+1))
		default:
			d.log.Warn("nexlet-native has not registered yet; the node runs and will accept it when it does", zap.Error(err))
		}
	}
	return nil
}

func (x *nexlets) startNexlet(spec NexletSpec) error {
	d := x.d
	path, _ := spec.Path()
	_, cenv, err := x.conn(spec.Name)
	if err != nil {
		return err
	}
	env := append([]string{v1.EnvNexletID + "=" + spec.Name, v1.EnvNodeID + "=" + d.nodeID, v1.EnvNATSURL + "=" + d.resolved.URL()}, cenv...)
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	x.supervise(supervise.Process{Name: spec.Name, Path: path, Args: spec.Argv, Env: env, Alive: nexletAlive(d.nxc, d.nodeID, spec.Name, "", d.log)})
	return nil
}

func (x *nexlets) startNative() error {
	d := x.d
	path, err := findNexletNative(d.o.NexletNativePath)
	if err != nil {
		return err
	}
	cargs, cenv, err := x.conn("native")
	if err != nil {
		return err
	}
	args := append([]string{
		"--node-id=" + d.nodeID, "--nexlet-id=native",
		"--data-dir=" + filepath.Join(d.o.DataDir, "native"),
		"--log-level=" + d.o.LogLevel,
		"--workload-uids=" + d.o.WorkloadUIDs,
		"--cgroups=" + d.o.Cgroups,
		"--run-as=" + strings.Join(d.o.RunAs, ","),
	}, cargs...)
	if d.o.CacheMaxBytes != "" {
		args = append(args, "--cache-max-bytes="+d.o.CacheMaxBytes)
	}
	if d.o.OutputRate != "" {
		args = append(args, "--output-rate="+d.o.OutputRate)
	}
	for flag, v := range map[string]string{"--default-limits": d.o.DefaultLimits, "--max-limits": d.o.MaxLimits} {
		if v != "" {
			args = append(args, flag+"="+v)
		}
	}
	if len(d.o.WorkdirRoots) > 0 {
		args = append(args, "--workdir-roots="+strings.Join(d.o.WorkdirRoots, ","))
	}
	if d.o.ShowWorkloadLogs {
		args = append(args, "--show-workload-logs")
	}
	if d.o.LogJSON {
		args = append(args, "--log-json")
	}
	// tagged as every nexlet nexd starts: a registration's PID is signalled only once the
	// process carries the tags (proc.IsNexlet)
	env := append([]string{v1.EnvNexletID + "=native", v1.EnvNodeID + "=" + d.nodeID}, cenv...)
	x.supervise(supervise.Process{Name: "native", Path: path, Args: args, Env: env, Alive: nexletAlive(d.nxc, d.nodeID, "native", filepath.Join(d.o.DataDir, "native"), d.log)})
	return nil
}

func (x *nexlets) supervise(a supervise.Process) {
	d := x.d
	// the nexlet is killed a fifth of the bound before nexd gives up, so that what it
	// leaves behind is still killed in time (AfterStop)
	a.Output, a.StopTimeout, a.RestartLimit = os.Stderr, d.o.ShutdownTimeout*4/5, d.o.NexletRestartLimit
	a.OnEvent = func(typ, msg string) {
		d.node.NexletEvent(typ, a.Name, msg)
		if typ == v1.EventNexletFailed {
			d.node.NexletFailed(a.Name) // its services move to other nodes
			if a.Name == "native" {
				x.nativeGaveUpOnce.Do(func() { close(x.nativeGaveUp) })
			}
		}
	}
	a.StopAdopted = func() { d.node.StopLocalNexlet(a.Name, a.Path, d.o.ShutdownTimeout) }
	a.AfterStop = func() {
		// a nexlet killed for lack of time cannot stop what its workloads forked
		for _, pid := range proc.KillTagged(d.nodeID, a.Name) {
			d.log.Warn("killed a workload process the stopped nexlet left behind", zap.String("nexlet_id", a.Name), zap.Int("pid", pid))
		}
		cgroupfs.RemoveOf(d.nodeID, a.Name) // and their cgroups (a nexlet-native's)
	}
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		supervise.Run(x.ctx, a, d.log)
	}()
}

// conn is how nexlet id connects: with its own scoped credentials when an issuer is set
// (as flags for nexlet-native, nothing in the environment), else with the node's
// connection settings (as flags and environment).
func (x *nexlets) conn(id string) (args, env []string, err error) {
	r := x.d.resolved
	path, err := x.writeCreds(id)
	if err != nil || path == "" {
		return r.Args(), r.Env(), err
	}
	x.mu.Lock()
	x.credIDs = append(x.credIDs, id)
	x.mu.Unlock()
	only := natsconn.Options{Servers: r.Servers, CredsFile: path, TLSCA: r.TLSCA, TLSCert: r.TLSCert, TLSKey: r.TLSKey, TLSFirst: r.TLSFirst}
	return only.Args(), nil, nil
}

// writeCreds mints nexlet id's credentials and replaces its credentials file whole (the
// nexlet reads it again when it reconnects). No issuer: no file, "".
func (x *nexlets) writeCreds(id string) (string, error) {
	d := x.d
	c, err := d.minter.Nexlet(d.nodeID, id, d.o.NexletCredsTTL)
	if err != nil || c == nil {
		return "", err
	}
	file, err := c.File()
	if err != nil {
		return "", err
	}
	path := filepath.Join(d.o.DataDir, id+".creds")
	if err := os.WriteFile(path+".new", file, 0o600); err != nil {
		return "", fmt.Errorf("write nexlet credentials: %w", err)
	}
	return path, os.Rename(path+".new", path)
}

// startRenewal renews the credentials of every supervised nexlet that has its own, at a
// third of their lifetime, until the nexlets are stopped.
func (x *nexlets) startRenewal() {
	x.mu.Lock()
	ids := append([]string(nil), x.credIDs...)
	x.mu.Unlock()
	ttl := x.d.o.NexletCredsTTL
	if len(ids) == 0 || ttl <= 0 {
		return
	}
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		t := tick.ForNode(x.d.nodeID, max(ttl/3, time.Second)) // with the node's other work
		defer t.Stop()
		for {
			select {
			case <-x.ctx.Done():
				return
			case <-t.C:
				for _, id := range ids {
					if _, err := x.writeCreds(id); err != nil {
						x.d.log.Warn("renew nexlet credentials", zap.String("nexlet_id", id), zap.Error(err))
					}
				}
			}
		}
	}()
}

// stop ends every nexlet (each stops its workloads) and the renewal, and waits for them.
func (x *nexlets) stop() {
	if x == nil {
		return
	}
	x.cancel()
	x.wg.Wait()
}
