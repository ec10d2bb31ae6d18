package workdir

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
)

const (
	nexDir       = ".nex"
	credsName    = "nats.creds"
	credsNewName = "nats.creds.new"
)

// beneath is how a workdir and its .nex are opened: never through a symlink, never above
// the directory they are opened from.
var beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// credsGroup is the group that may read the workload's credentials, and the modes of
// .nex and the file: group-readable for a workload of its own user, else private.
func (d *Dir) credsGroup() (gid int, dirMode, fileMode uint32) {
	if _, g, ok := d.user(); ok {
		return int(g), 0o750, 0o640
	}
	return os.Getegid(), 0o700, 0o600
}

// openNexDir opens (making it when missing) the workload's .nex in the workdir wfd. It
// must be the nexlet's: a .nex the workload made or changed is not written into.
func (d *Dir) openNexDir(wfd int, create bool) (int, error) {
	gid, dirMode, _ := d.credsGroup()
	if create {
		if err := unix.Mkdirat(wfd, nexDir, dirMode); err == nil {
			d.madeNex = true
		} else if !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("create %s: %w", filepath.Join(d.Path, nexDir), err)
		}
	}
	nfd, err := openBeneath(wfd, nexDir, d.Path)
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
		return -1, fmt.Errorf("%s is not the nexlet's (owner UID %d, mode %04o): it holds the workload's credentials; remove it", filepath.Join(d.Path, nexDir), st.Uid, st.Mode&0o7777)
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

// WriteCreds puts the workload's credentials in <workdir>/.nex/nats.creds, whole: written
// to a new file in .nex and renamed over the old one. Never on a command line; the nexlet
// keeps them in memory too (for a function's trigger connection and nats:// fetches).
func (d *Dir) WriteCreds(c []byte) error {
	_, _, fileMode := d.credsGroup()
	if err := d.writeInNex(d.creds == "", credsNewName, credsName, fileMode, bytes.NewReader(c)); err != nil {
		return err
	}
	d.credsMu.Lock()
	d.credsFile = append([]byte(nil), c...)
	d.credsMu.Unlock()
	d.creds = filepath.Join(d.Path, nexDir, credsName)
	return nil
}

// writeInNex writes src to a new file name in the workdir's .nex (made when create), the
// nexlet's and group-owned by the workload, with mode set before any byte is in it; when
// final is given it is then renamed over final, in .nex. Only through descriptors: no
// path the workload can change is walked.
func (d *Dir) writeInNex(create bool, name, final string, mode uint32, src io.Reader) error {
	wfd, err := d.Open()
	if err != nil {
		return err
	}
	defer unix.Close(wfd)
	nfd, err := d.openNexDir(wfd, create)
	if err != nil {
		return err
	}
	defer unix.Close(nfd)
	gid, _, _ := d.credsGroup()
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

// PlaceExecutable puts the executable of a nats:// uri, named name, in the workdir's .nex:
// the nexlet's directory, readable and runnable by the workload's group, not replaceable.
func (d *Dir) PlaceExecutable(name string, src io.Reader) (string, error) {
	if err := d.writeInNex(true, name, "", 0o750, src); err != nil {
		return "", err
	}
	d.nexFiles = append(d.nexFiles, name)
	return filepath.Join(d.Path, nexDir, name), nil
}

// RemoveCreds removes what the nexlet wrote into a lent workdir's .nex (the credentials,
// a nats:// executable), and .nex when the nexlet made it; nothing else of a directory it
// did not make.
func (d *Dir) RemoveCreds() {
	if d.creds == "" && len(d.nexFiles) == 0 {
		return // it wrote nothing there
	}
	wfd, err := d.Open()
	if err != nil {
		return
	}
	defer unix.Close(wfd)
	nfd, err := d.openNexDir(wfd, false)
	if err != nil {
		return
	}
	for _, name := range append([]string{credsName, credsNewName}, d.nexFiles...) {
		_ = unix.Unlinkat(nfd, name, 0)
	}
	unix.Close(nfd)
	if d.madeNex {
		_ = unix.Unlinkat(wfd, nexDir, unix.AT_REMOVEDIR) // only when empty
	}
}

// CredsOption authenticates a connection with the workload's credentials as the nexlet
// holds them in memory (never read back from its workdir), the latest at each connect.
func (d *Dir) CredsOption() nats.Option {
	current := func() []byte {
		d.credsMu.Lock()
		defer d.credsMu.Unlock()
		return d.credsFile
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
