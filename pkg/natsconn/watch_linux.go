package natsconn

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// watchDir watches the directory of path with inotify and sends on the channel it returns
// when an entry named as path's file is written and closed, moved in, or has its
// attributes changed (a renewal writes a new file and renames it over the old one). The
// channel is closed when the watch ends (the directory removed or moved); it is nil when
// no watch could be set up, or path or its directory is a symlink. stop ends the watch.
func watchDir(path string) (events <-chan struct{}, stop func()) {
	dir := filepath.Dir(path)
	if real, err := filepath.EvalSymlinks(path); err != nil || real != filepath.Join(dir, filepath.Base(path)) {
		return nil, func() {}
	}
	if real, err := filepath.EvalSymlinks(dir); err != nil || real != filepath.Clean(dir) {
		return nil, func() {}
	}
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil, func() {}
	}
	const mask = syscall.IN_CLOSE_WRITE | syscall.IN_MOVED_TO | syscall.IN_ATTRIB | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF
	if _, err := syscall.InotifyAddWatch(fd, dir, mask); err != nil {
		syscall.Close(fd)
		return nil, func() {}
	}
	f := os.NewFile(uintptr(fd), "inotify") // non-blocking: reads wait in the runtime's poller
	ch := make(chan struct{}, 1)
	name := filepath.Base(path)
	go func() {
		defer close(ch)
		buf := make([]byte, 64*(syscall.SizeofInotifyEvent+syscall.NAME_MAX+1))
		for {
			n, err := f.Read(buf)
			if err != nil {
				return // closed by stop, or the watch failed
			}
			about, ended := scan(buf[:n], name)
			if ended {
				return // the directory went: the caller polls from now on
			}
			if about {
				select {
				case ch <- struct{}{}:
				default: // a check is due already
				}
			}
		}
	}()
	return ch, func() { _ = f.Close() }
}

// scan reads the inotify events in b: whether one is about the entry name, and whether
// the watch ended (its directory removed or moved, or the kernel dropped it).
func scan(b []byte, name string) (about, ended bool) {
	for len(b) >= syscall.SizeofInotifyEvent {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := syscall.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return about, ended
		}
		entry := b[syscall.SizeofInotifyEvent:end]
		if i := bytes.IndexByte(entry, 0); i >= 0 {
			entry = entry[:i]
		}
		if ev.Mask&(syscall.IN_IGNORED|syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF) != 0 {
			ended = true
		}
		if string(entry) == name || ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
			about = true
		}
		b = b[end:]
	}
	return about, ended
}
