// Package asuser runs the native runtime's file operations for a workload with the
// workload's own filesystem identity, and checks executables as the workload's user.
//
// The nexlet runs as root and acts for tenants. Whatever it reads or writes for a
// workload along a path the workload chose (a file:// artifact, the artifacts it places
// in its workdir, the executable it names) is done with the workload's own filesystem
// identity, so the kernel decides as it would for the workload itself: /etc/shadow, the
// node's seeds and other workloads' files are refused, and a symlink the workload planted
// leads nowhere it could not already write. What the nexlet writes for a workload where the
// workload cannot (its credentials) goes through directory descriptors the nexlet opened
// itself, never through symlinks (pkg/runtime/native/workdir).
package asuser

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Identity is the user a workload's file operations run as; nil is the nexlet's own.
type Identity struct{ UID, GID uint32 }

// ErrNotPermitted wraps what the kernel refused a workload's user.
var ErrNotPermitted = errors.New("the workload's user may not")

// Do runs fn with id's filesystem identity: setfsuid/setfsgid and no supplementary
// groups, on an OS thread locked for the purpose, and restores the nexlet's identity
// before the thread is handed back. These calls change one thread only, so no other
// goroutine ever runs with a workload's identity. Should the nexlet's identity not come
// back, the thread stays parked for good. It is never ended: a workload's parent-death
// signal is tied to the thread that forked it, and this may be that thread. fn must
// not start goroutines that touch files for the workload: they would run on other
// threads, as the nexlet. A nil id runs fn here, as the nexlet.
func Do(id *Identity, fn func() error) error {
	if id == nil {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		groups, err := unix.Getgroups()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("read supplementary groups: %w", err)
			return
		}
		uid, gid := os.Geteuid(), os.Getegid()
		restored := func() bool {
			_ = unix.Setfsuid(uid)
			_ = unix.Setfsgid(gid)
			err := unix.Setgroups(groups)
			u, _ := unix.SetfsuidRetUid(-1)
			g, _ := unix.SetfsgidRetGid(-1)
			return err == nil && u == uid && g == gid
		}
		err = func() error {
			if err := unix.Setgroups(nil); err != nil {
				return fmt.Errorf("drop supplementary groups: %w", err)
			}
			if err := unix.Setfsgid(int(id.GID)); err != nil {
				return fmt.Errorf("setfsgid %d: %w", id.GID, err)
			}
			if err := unix.Setfsuid(int(id.UID)); err != nil {
				return fmt.Errorf("setfsuid %d: %w", id.UID, err)
			}
			// setfsuid reports no failure but a missing capability: check it took
			if cur, _ := unix.SetfsuidRetUid(-1); cur != int(id.UID) {
				return fmt.Errorf("setfsuid %d did not take (fsuid %d)", id.UID, cur)
			}
			return fn()
		}()
		if !restored() {
			errc <- errors.Join(err, errors.New("the nexlet's own identity did not come back on a thread; it stays parked"))
			select {} // never run nexlet code as a workload's user, nor end the thread
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}
