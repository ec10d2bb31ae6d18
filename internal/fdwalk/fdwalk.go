// Package fdwalk walks a directory tree the way a root process must walk a tree a tenant
// can write to: by descriptor, never by path. filepath.WalkDir names each entry by its
// whole path, so a directory the tenant swaps for a symlink while the walk runs leads
// every later path through the symlink, anywhere on the machine (a review had root chown
// /etc/shadow to a workload's user that way, in 5 of 5 runs). Here each entry is opened
// beneath the descriptor of its directory, without following a symlink (its own or one
// on the way) and without leaving the tree's mount, and what the walk reports and lets
// the caller act on is the descriptor of that very entry: a symlink is a symlink, and a
// swap after the open changes nothing for it.
package fdwalk

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Entry is one file of the tree: FD is an O_PATH descriptor of it (of the link itself for
// a symlink), valid during the call only; Stat is what fstat said of it.
type Entry struct {
	Path string
	FD   int
	Stat unix.Stat_t
}

// IsDir says whether the entry is a directory.
func (e *Entry) IsDir() bool { return e.Stat.Mode&unix.S_IFMT == unix.S_IFDIR }

// Chown gives the entry itself (a symlink, not what it points to) to uid:gid.
func (e *Entry) Chown(uid, gid uint32) error {
	if err := unix.Fchownat(e.FD, "", int(uid), int(gid), unix.AT_EMPTY_PATH); err != nil {
		return &os.PathError{Op: "chown", Path: e.Path, Err: err}
	}
	return nil
}

// MaxDepth bounds how deep a walk goes: a tree deeper than this is an error, not a walk
// without end (each level holds a descriptor).
const MaxDepth = 512

// ErrTooDeep is a walk's error for a tree deeper than MaxDepth.
var ErrTooDeep = errors.New("deeper than fdwalk.MaxDepth")

// how opens an entry beneath its directory: no symlink followed (the entry's own is opened
// as itself), no magic link, no other mount.
var how = unix.OpenHow{
	Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
	Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
}

// Walk calls fn for root (which must be a directory, not a symlink) and every entry
// below it, a directory before what it holds. An entry gone, or swapped for something
// else, between the read of its directory and its open is passed over. An error from fn
// ends the walk and is returned.
func Walk(root string, fn func(*Entry) error) error {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(fd)
	e := Entry{Path: root, FD: fd}
	if err := unix.Fstat(fd, &e.Stat); err != nil {
		return &os.PathError{Op: "stat", Path: root, Err: err}
	}
	if err := fn(&e); err != nil {
		return err
	}
	return walkDir(&e, fn, 0)
}

// walkDir walks what the directory dir holds.
func walkDir(dir *Entry, fn func(*Entry) error, depth int) error {
	if depth >= MaxDepth {
		return fmt.Errorf("%s: %w", dir.Path, ErrTooDeep)
	}
	names, err := readNames(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := visit(dir, name, fn, depth); err != nil {
			return err
		}
	}
	return nil
}

// visit opens name beneath dir, calls fn for it and walks it when it is a directory.
func visit(dir *Entry, name string, fn func(*Entry) error, depth int) error {
	fd, err := unix.Openat2(dir.FD, name, &how)
	if err != nil {
		if gone(err) {
			return nil
		}
		return &os.PathError{Op: "open", Path: dir.Path + "/" + name, Err: err}
	}
	defer unix.Close(fd)
	e := Entry{Path: dir.Path + "/" + name, FD: fd}
	if err := unix.Fstat(fd, &e.Stat); err != nil {
		return &os.PathError{Op: "stat", Path: e.Path, Err: err}
	}
	if err := fn(&e); err != nil {
		return err
	}
	if !e.IsDir() {
		return nil
	}
	return walkDir(&e, fn, depth+1)
}

// readNames lists the directory dir (opened O_PATH) by a descriptor of it that can read.
func readNames(dir *Entry) ([]string, error) {
	rfd, err := unix.Openat(dir.FD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir.Path, Err: err}
	}
	f := os.NewFile(uintptr(rfd), dir.Path)
	defer f.Close()
	return f.Readdirnames(-1)
}

// gone says whether an open failed because the entry is no longer the one listed: removed,
// or swapped for a symlink (ELOOP: a symlink on the way) or a mount (EXDEV).
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR)
}
