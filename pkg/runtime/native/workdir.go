package native

import v1 "github.com/nexrun/nex/pkg/api/v1"

// lendWorkdir checks the workdir a start request names (workdir.Dir.Lend) and that no
// other workload has it.
func (h *handle) lendWorkdir() error {
	d := h.d
	if err := h.wd.Lend(d.opts.WorkdirRoots, []string{d.opts.DataDir, d.opts.UIDLockDir}); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range d.handles {
		if o != h && !o.wd.Own && o.wd.Path == h.wd.Path {
			return v1.Errorf(v1.CodeStartFailed, "start_request.workdir: %s is already lent to workload %s", h.wd.Path, o.id)
		}
	}
	return nil
}
