package native

import (
	"context"
	"io"
	"path/filepath"

	"github.com/nexrun/nex/pkg/runtime/native/artifacts"
)

// fetchArtifacts places the workload's artifacts, and a nats:// executable, in its workdir
// (artifacts.Fetch).
func (h *handle) fetchArtifacts(ctx context.Context) error {
	f := &artifacts.Fetch{Cache: h.d.cache, ID: h.id, Namespace: h.def.Namespace, Workdir: h.workdir, Identity: h.identity(),
		Sandboxed: h.d.sandbox != "", Conn: h.d.opts.Conn, NATSURL: h.d.opts.NATSURL, PlaceExecutable: h.placeExecutable}
	if h.creds != "" {
		f.Creds = h.credsOption()
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

// placeExecutable puts the executable of a nats:// uri in the workdir's .nex: the
// nexlet's directory, readable and runnable by the workload's group, not replaceable.
func (h *handle) placeExecutable(name string, src io.Reader) (string, error) {
	if err := h.writeInNex(true, name, "", 0o750, src); err != nil {
		return "", err
	}
	h.nexFiles = append(h.nexFiles, name)
	return filepath.Join(h.workdir, nexDir, name), nil
}
