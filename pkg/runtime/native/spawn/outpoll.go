package spawn

import (
	"errors"
	"io"
	"sync"
	"syscall"
)

// Workload output is read through one epoll set for the whole nexlet: a pipe with nothing
// to read holds no goroutine and no buffer. When a pipe turns readable, a goroutine takes
// a pooled buffer, copies until the pipe is empty, and hands the pipe back to the set
// (EPOLLONESHOT). At 10,000 quiet workloads that is 20,000 goroutines' stacks saved.

// outPoller is the epoll set of every output pipe of this process.
type outPoller struct {
	epfd  int
	mu    sync.Mutex
	pipes map[int32]*outPipe
}

// outPipe is the read end of one output pipe and where its bytes go.
type outPipe struct {
	p    *outPoller
	w    io.Writer
	done chan struct{} // closed at the end of the stream, or when it is closed early

	mu     sync.Mutex // one drain at a time; the fd is closed only under it
	fd     int
	closed bool
}

var theOutPoller = sync.OnceValues(func() (*outPoller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	p := &outPoller{epfd: epfd, pipes: map[int32]*outPipe{}}
	go p.loop()
	return p, nil
})

const outEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// watch copies everything read from fd (the read end of a pipe, non-blocking) to w until
// the stream ends; the returned pipe's done is closed then.
func (p *outPoller) watch(fd int, w io.Writer) (*outPipe, error) {
	op := &outPipe{p: p, w: w, fd: fd, done: make(chan struct{})}
	p.mu.Lock()
	p.pipes[int32(fd)] = op
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: outEvents, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		op.close()
		return nil, err
	}
	return op, nil
}

func (p *outPoller) loop() {
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		p.mu.Lock()
		ready := make([]*outPipe, 0, n)
		for _, ev := range events[:n] {
			if op := p.pipes[ev.Fd]; op != nil {
				ready = append(ready, op)
			}
		}
		p.mu.Unlock()
		for _, op := range ready {
			go op.drain()
		}
	}
}

// drain copies what the pipe holds, then hands it back to the epoll set; at the end of
// the stream it closes the pipe.
func (op *outPipe) drain() {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.closed {
		return
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	for {
		n, err := syscall.Read(op.fd, *buf)
		switch {
		case n > 0:
			if _, werr := op.w.Write((*buf)[:n]); werr != nil {
				op.w = io.Discard
			}
		case errors.Is(err, syscall.EINTR):
		case errors.Is(err, syscall.EAGAIN):
			ev := syscall.EpollEvent{Events: outEvents, Fd: int32(op.fd)}
			if syscall.EpollCtl(op.p.epfd, syscall.EPOLL_CTL_MOD, op.fd, &ev) != nil {
				op.closeLocked()
			}
			return
		default: // the end of the stream, or an error
			op.closeLocked()
			return
		}
	}
}

// close ends the copy early (a grandchild holds the pipe open after its workload ended).
func (op *outPipe) close() {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.closeLocked()
}

func (op *outPipe) closeLocked() {
	if op.closed {
		return
	}
	op.closed = true
	op.p.mu.Lock()
	delete(op.p.pipes, int32(op.fd))
	op.p.mu.Unlock()
	_ = syscall.EpollCtl(op.p.epfd, syscall.EPOLL_CTL_DEL, op.fd, nil)
	_ = syscall.Close(op.fd)
	close(op.done)
}

// copyBufs lend the output copiers a buffer only while they copy.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
