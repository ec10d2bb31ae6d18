// Package workdir owns the native runtime's workload workdirs and the credentials it
// writes in them.
//
// A workload's workdir is the nexlet's <data>/workloads/<id>, or a directory the operator
// lends under --workdir-roots. The nexlet reaches it through a descriptor of the root it
// trusts (its own workloads dir, or the operator's root) and openat2 beneath it with no
// symlinks, so a workload that renames or replaces parts of its tree cannot send the
// nexlet elsewhere. Its credentials live in <workdir>/.nex: a directory the nexlet owns
// (root, group the workload's GID, 0750), holding nats.creds (0640), so the workload reads
// them but cannot replace them, and a renewal is a rename inside that directory.
package workdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native/uids"
	"golang.org/x/sys/unix"
)

// Dir is one workload's workdir as the nexlet reaches it, and what the nexlet wrote in
// its .nex: the workload's credentials, which it also keeps in memory (under credsMu).
type Dir struct {
	Path string // the workdir
	Own  bool   // the nexlet's own <data>/workloads/<id>, not one the operator lends
	root string // the trusted directory the workdir is opened beneath
	rel  string // the workdir, relative to root
	// user is who the workload runs as (ok false: the nexlet's own user)
	user     func() (uid, gid uint32, ok bool)
	madeNex  bool     // the nexlet made the workdir's .nex (and removes it)
	nexFiles []string // what else the nexlet put in .nex (a nats:// executable)

	creds     string // path of the workload's .creds file, when it has its own
	credsMu   sync.Mutex
	credsFile []byte // the credentials as written: never read back from the workdir
}

// Own is the nexlet's own workdir rel under its workloads directory root, for a workload
// that runs as user.
func Own(root, rel string, user func() (uid, gid uint32, ok bool)) *Dir {
	return &Dir{Path: filepath.Join(root, rel), Own: true, root: root, rel: rel, user: user}
}

// Lent is the workdir path a start request names, for a workload that runs as user; Lend
// checks it.
func Lent(path string, user func() (uid, gid uint32, ok bool)) *Dir {
	return &Dir{Path: path, user: user}
}

// Creds is the path of the workload's credentials in its .nex, "" before WriteCreds.
func (d *Dir) Creds() string { return d.creds }

// Open opens the workload's workdir beneath its trusted root.
func (d *Dir) Open() (int, error) { return openDir(d.root, d.rel) }

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

// MakeOwn creates the workload's own workdir: 0700 and its user's when it has one.
func (d *Dir) MakeOwn() error {
	uid, gid, ok := d.user()
	if !ok {
		return os.MkdirAll(d.Path, 0o750)
	}
	if err := os.Mkdir(d.Path, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	wfd, err := d.Open()
	if err != nil {
		return err
	}
	defer unix.Close(wfd)
	// a workload started again after its nexlet died finds its workdir as it left it,
	// but runs as a new user now: what is there becomes that user's (its old processes
	// were ended when its UID was reclaimed), all but the credentials, written anew
	_ = os.RemoveAll(filepath.Join(d.Path, nexDir))
	if err := unix.Fchmod(wfd, 0o700); err != nil {
		return err
	}
	return uids.ChownTree(d.Path, uid, gid)
}

// Lend checks the workdir a start request names: the operator must lend it (under
// roots, --workdir-roots; anywhere when workloads run as the nexlet's own user), it may
// not hold or lie in the nexlet's own directories (its data dir: its keys, other
// workloads' directories), and it must be a directory reached without a symlink below its
// root. It sets the workdir's root. Whether another workload has it is the caller's to say.
func (d *Dir) Lend(roots, nexlets []string) error {
	wd := filepath.Clean(d.Path)
	bad := func(format string, args ...any) error {
		return v1.Errorf(v1.CodeStartFailed, "start_request.workdir: %s "+format, append([]any{wd}, args...)...)
	}
	if _, _, ok := d.user(); len(roots) == 0 && !ok {
		roots = []string{"/"} // the workload is the nexlet's user: it could reach it anyway
	}
	if len(roots) == 0 {
		return bad("is refused: this nexlet lends no directories to workloads that run as users of their own (nexd --workdir-roots); leave workdir out to get one of the workload's own")
	}
	for _, own := range nexlets {
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
	d.root, d.rel, d.Path = root, rel, wd
	fd, err := d.Open()
	if err != nil {
		return bad("cannot be used: %v", err)
	}
	unix.Close(fd)
	return nil
}

// within says whether path is dir or lies below it (both clean and absolute).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && filepath.IsLocal(rel)
}

// Beside says why d, a workdir to lend, may not be lent beside o, the workdir of
// workload id (nil when it may): a lent workdir is one workload's at a time, and none lies
// in another's (a workload could swap a directory of its own on the other's path for a
// symlink, and have the nexlet act on it). The other workload is named to its own
// namespace only (same): another tenant learns neither its ID nor its path.
func (d *Dir) Beside(o *Dir, id string, same bool) error {
	if d.Own || o.Own || !(within(d.Path, o.Path) || within(o.Path, d.Path)) {
		return nil
	}
	switch {
	case !same:
		return v1.Errorf(v1.CodeStartFailed, "start_request.workdir: %s is, holds or lies in a workdir lent to a workload of another namespace", d.Path)
	case d.Path == o.Path:
		return v1.Errorf(v1.CodeStartFailed, "start_request.workdir: %s is already lent to workload %s", d.Path, id)
	}
	return v1.Errorf(v1.CodeStartFailed, "start_request.workdir: %s holds or lies in %s, lent to workload %s", d.Path, o.Path, id)
}
