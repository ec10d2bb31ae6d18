package native

// lendWorkdir checks the workdir a start request names (workdir.Dir.Lend) and that it
// is no other workload's, nor lies in or holds one (workdir.Dir.Beside).
func (h *handle) lendWorkdir() error {
	d := h.d
	if err := h.wd.Lend(d.opts.WorkdirRoots, []string{d.opts.DataDir, d.opts.UIDLockDir}); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range d.handles {
		if err := h.wd.Beside(o.wd, o.id, o.def.Namespace == h.def.Namespace); o != h && err != nil {
			return err
		}
	}
	return nil
}
