package native

import (
	"context"

	"github.com/nexrun/nex/pkg/runtime/native/artifacts"
)

// fetchArtifacts places the workload's artifacts, and a nats:// executable, in its workdir
// (artifacts.Fetch).
func (h *handle) fetchArtifacts(ctx context.Context) error {
	f := &artifacts.Fetch{Cache: h.d.cache, ID: h.id, Namespace: h.def.Namespace, Workdir: h.wd.Path, Identity: h.identity(),
		Sandboxed: h.d.sandbox != "", Conn: h.d.opts.Conn, NATSURL: h.d.opts.NATSURL, PlaceExecutable: h.wd.PlaceExecutable}
	if h.wd.Creds() != "" {
		f.Creds = h.wd.CredsOption()
	}
	p, err := f.All(ctx, h.sr.Artifacts, h.sr.remoteExec, h.sr.SHA256)
	if err != nil {
		return err
	}
	if p != "" {
		h.sr.path = p
	}
	return nil
}
