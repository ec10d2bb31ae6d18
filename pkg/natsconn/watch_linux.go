package natsconn

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// watchDir watches the directory of path with inotify and sends on the channel it returns
// when an entry named as path's file is written, created, moved in or has its attributes
// changed (a renewal writes a new file and renames it over the old one). The channel is
// closed if the watch fails; it is nil when no watch could be set up. stop ends the watch.
func watchDir(path string) (events <-chan struct{}, stop func()) {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil, func() {}
	}
	const mask = syscall.IN_CLOSE_WRITE | syscall.IN_MOVED_TO | syscall.IN_CREATE | syscall.IN_ATTRIB
	if _, err := syscall.InotifyAddWatch(fd, filepath.Dir(path), mask); err != nil {
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
			if named(buf[:n], name) {
				select {
				case ch <- struct{}{}:
				default: // a check is due already
				}
			}
		}
	}()
	return ch, func() { _ = f.Close() }
}

// named says whether any of the inotify events in b is about the entry name.
func named(b []byte, name string) bool {
	for len(b) >= syscall.SizeofInotifyEvent {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := syscall.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return false
		}
		entry := b[syscall.SizeofInotifyEvent:end]
		if i := bytes.IndexByte(entry, 0); i >= 0 {
			entry = entry[:i]
		}
		if string(entry) == name || ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
			return true
		}
		b = b[end:]
	}
	return false
}
