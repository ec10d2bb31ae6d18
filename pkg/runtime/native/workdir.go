package native

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"golang.org/x/sys/unix"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native/uids"
)

// A workload's workdir is the nexlet's <data>/workloads/<id>, or a directory the operator
// lends under --workdir-roots. The nexlet reaches it through a descriptor of the root it
// trusts (its own workloads dir, or the operator's root) and openat2 beneath it with no
// symlinks, so a workload that renames or replaces parts of its tree cannot send the
// nexlet elsewhere. Its credentials live in <workdir>/.nex: a directory the nexlet owns
// (root, group the workload's GID, 0750), holding nats.creds (0640), so the workload reads
// them but cannot replace them, and a renewal is a rename inside that directory.

const (
	nexDir       = ".nex"
	credsName    = "nats.creds"
	credsNewName = "nats.creds.new"
)

// beneath is how a workdir and its .nex are opened: never through a symlink, never above
// the directory they are opened from.
var beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// openDir opens dir (trusted: the nexlet's or the operator's) and then rel beneath it.
func openDir(dir, rel string) (int, error) {
	root, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(root)
	return openBeneath(root, rel, dir)
}

// openBeneath opens the directory rel under the descriptor at (named dir in errors).
func openBeneath(at int, rel, dir string) (int, error) {
	fd, err := unix.Openat2(at, rel, &unix.OpenHow{Flags: unix.O_DIRECTORY | unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW, Resolve: uint64(beneath)})
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("%s is not a directory reached from %s without symlinks: a symlink is not followed", filepath.Join(dir, rel), dir)
		}
		return -1, &os.PathError{Op: "open", Path: filepath.Join(dir, rel), Err: err}
	}
	return fd, nil
}

// openWorkdir opens the workload's workdir beneath its trusted root.
func (h *handle) openWorkdir() (int, error) { return openDir(h.workRoot, h.workRel) }

// credsGroup is the group that may read the workload's credentials, and the modes of
// .nex and the file: group-readable for a workload of its own user, else private.
func (h *handle) credsGroup() (gid int, dirMode, fileMode uint32) {
	if _, g, ok := h.user(); ok {
		return int(g), 0o750, 0o640
	}
	return os.Getegid(), 0o700, 0o600
}

// openNexDir opens (making it when missing) the workload's .nex in the workdir wfd. It
// must be the nexlet's: a .nex the workload made or changed is not written into.
func (h *handle) openNexDir(wfd int, create bool) (int, error) {
	gid, dirMode, _ := h.credsGroup()
	if create {
		if err := unix.Mkdirat(wfd, nexDir, dirMode); err == nil {
			h.madeNex = true
		} else if !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("create %s: %w", filepath.Join(h.workdir, nexDir), err)
		}
	}
	nfd, err := openBeneath(wfd, nexDir, h.workdir)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(nfd, &st); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		unix.Close(nfd)
		return -1, fmt.Errorf("%s is not the nexlet's (owner UID %d, mode %04o): it holds the workload's credentials; remove it", filepath.Join(h.workdir, nexDir), st.Uid, st.Mode&0o7777)
	}
	if err := unix.Fchown(nfd, -1, gid); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	if err := unix.Fchmod(nfd, dirMode); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	return nfd, nil
}

// writeCreds puts the workload's credentials in <workdir>/.nex/nats.creds, whole: written
// to a new file in .nex and renamed over the old one. Never on a command line; the nexlet
// keeps them in memory too (for a function's trigger connection and nats:// fetches).
func (h *handle) writeCreds(c []byte) error {
	_, _, fileMode := h.credsGroup()
	if err := h.writeInNex(h.creds == "", credsNewName, credsName, fileMode, bytes.NewReader(c)); err != nil {
		return err
	}
	h.credsMu.Lock()
	h.credsFile = append([]byte(nil), c...)
	h.credsMu.Unlock()
	h.creds = filepath.Join(h.workdir, nexDir, credsName)
	return nil
}

// writeInNex writes src to a new file name in the workdir's .nex (made when create), the
// nexlet's and group-owned by the workload, with mode set before any byte is in it; when
// final is given it is then renamed over final, in .nex. Only through descriptors: no
// path the workload can change is walked.
func (h *handle) writeInNex(create bool, name, final string, mode uint32, src io.Reader) error {
	wfd, err := h.openWorkdir()
	if err != nil {
		return err
	}
	defer unix.Close(wfd)
	nfd, err := h.openNexDir(wfd, create)
	if err != nil {
		return err
	}
	defer unix.Close(nfd)
	gid, _, _ := h.credsGroup()
	if err := unix.Unlinkat(nfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	fd, err := unix.Openat(nfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	err = f.Chown(-1, gid)
	if err == nil {
		err = f.Chmod(os.FileMode(mode))
	}
	if err == nil {
		_, err = io.Copy(f, src)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && final != "" {
		err = unix.Renameat(nfd, name, nfd, final)
	}
	if err != nil {
		_ = unix.Unlinkat(nfd, name, 0)
	}
	return err
}

// removeCreds removes what the nexlet wrote into a lent workdir's .nex (the credentials,
// a nats:// executable), and .nex when the nexlet made it; nothing else of a directory it
// did not make.
func (h *handle) removeCreds() {
	wfd, err := h.openWorkdir()
	if err != nil {
		return
	}
	defer unix.Close(wfd)
	nfd, err := h.openNexDir(wfd, false)
	if err != nil {
		return
	}
	for _, name := range append([]string{credsName, credsNewName}, h.nexFiles...) {
		_ = unix.Unlinkat(nfd, name, 0)
	}
	unix.Close(nfd)
	if h.madeNex {
		_ = unix.Unlinkat(wfd, nexDir, unix.AT_REMOVEDIR) // only when empty
	}
}

// credsOption authenticates a connection with the workload's credentials as the nexlet
// holds them in memory (never read back from its workdir), the latest at each connect.
func (h *handle) credsOption() nats.Option {
	current := func() []byte {
		h.credsMu.Lock()
		defer h.credsMu.Unlock()
		return h.credsFile
	}
	return nats.UserJWT(func() (string, error) {
		return jwt.ParseDecoratedJWT(current())
	}, func(nonce []byte) ([]byte, error) {
		kp, err := nkeys.ParseDecoratedNKey(current())
		if err != nil {
			return nil, err
		}
		defer kp.Wipe()
		return kp.Sign(nonce)
	})
}

// makeWorkdir creates the workload's own workdir: 0700 and its user's when it has one.
func (h *handle) makeWorkdir() error {
	uid, gid, ok := h.user()
	if !ok {
		return os.MkdirAll(h.workdir, 0o750)
	}
	if err := os.Mkdir(h.workdir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	wfd, err := h.openWorkdir()
	if err != nil {
		return err
	}
	defer unix.Close(wfd)
	// a workload started again after its nexlet died finds its workdir as it left it,
	// but runs as a new user now: what is there becomes that user's (its old processes
	// were ended when its UID was reclaimed), all but the credentials, written anew
	_ = os.RemoveAll(filepath.Join(h.workdir, nexDir))
	if err := unix.Fchmod(wfd, 0o700); err != nil {
		return err
	}
	return uids.ChownTree(h.workdir, uid, gid)
}

// lendWorkdir checks the workdir a start request names: the operator must lend it
// (under --workdir-roots; anywhere when workloads run as the nexlet's own user), it may not
// lie in the nexlet's data dir (its keys, other workloads' directories), and it must be
// a directory reached without a symlink below its root. It sets the handle's root.
func (h *handle) lendWorkdir() error {
	d := h.d
	wd := filepath.Clean(h.workdir)
	bad := func(format string, args ...any) error {
		return v1.Errorf(v1.CodeStartFailed, "start_request.workdir: %s "+format, append([]any{wd}, args...)...)
	}
	roots := d.opts.WorkdirRoots
	if len(roots) == 0 && h.identity() == nil {
		roots = []string{"/"} // the workload is the nexlet's user: it could reach it anyway
	}
	if len(roots) == 0 {
		return bad("is refused: this nexlet lends no directories to workloads that run as users of their own (nexd --workdir-roots); leave workdir out to get one of the workload's own")
	}
	for _, own := range []string{d.opts.DataDir, d.opts.UIDLockDir} {
		if own != "" && (within(wd, filepath.Clean(own)) || within(filepath.Clean(own), wd)) {
			return bad("is refused: it holds or lies in the nexlet's own directory %s (its keys and other workloads' directories)", own)
		}
	}
	root := ""
	for _, r := range roots {
		if within(wd, r) && len(r) > len(root) {
			root = r
		}
	}
	if root == "" {
		return bad("is not under the directories this nexlet lends (--workdir-roots %v)", roots)
	}
	rel, _ := filepath.Rel(root, wd)
	h.workRoot, h.workRel, h.workdir = root, rel, wd
	fd, err := h.openWorkdir()
	if err != nil {
		return bad("cannot be used: %v", err)
	}
	unix.Close(fd)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range d.handles {
		if o != h && !o.ownWorkdir && o.workdir == wd {
			return bad("is already lent to workload %s", o.id)
		}
	}
	h.lent = true
	return nil
}

// within says whether path is dir or lies below it (both clean and absolute).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && filepath.IsLocal(rel)
}
