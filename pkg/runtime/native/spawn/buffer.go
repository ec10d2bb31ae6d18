package spawn

import "bytes"

// LimitedBuffer keeps the first Max bytes written to it (a command's output for a reply),
// and says whether it dropped any.
type LimitedBuffer struct {
	bytes.Buffer
	Max       int
	Truncated bool
}

func (b *LimitedBuffer) Write(p []byte) (int, error) {
	if room := b.Max - b.Len(); len(p) > room {
		b.Truncated = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// WriterFunc is a function as an io.Writer.
type WriterFunc func([]byte) (int, error)

func (f WriterFunc) Write(p []byte) (int, error) { return f(p) }
