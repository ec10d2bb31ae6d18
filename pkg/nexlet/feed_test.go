package nexlet_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/nexlet"
)

func TestLineWriter(t *testing.T) {
	long := strings.Repeat("x", nexlet.MaxLineBytes+10)
	tests := []struct {
		name   string
		writes []string
		want   []string
		cont   []bool
	}{
		{"lines", []string{"a\nb\n"}, []string{"a", "b"}, []bool{false, false}},
		{"split across writes", []string{"hel", "lo\nwor", "ld\n"}, []string{"hello", "world"}, []bool{false, false}},
		{"partial last line", []string{"a\nrest"}, []string{"a", "rest"}, []bool{false, false}},
		{"crlf", []string{"dos\r\n"}, []string{"dos"}, []bool{false}},
		{"empty line", []string{"\n\n"}, []string{"", ""}, []bool{false, false}},
		{"over-long line", []string{long + "\n"}, []string{long[:nexlet.MaxLineBytes], "xxxxxxxxxx"}, []bool{true, false}},
	}
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	feed := nexlet.NewFeed(nc, "NODE")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := nc.SubscribeSync(v1.LogSubject("ns", "w1"))
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			w := feed.LineWriter("ns", "w1", "stdout")
			for _, s := range tt.writes {
				if _, err := w.Write([]byte(s)); err != nil {
					t.Fatal(err)
				}
			}
			w.Close()
			for i, want := range tt.want {
				m, err := sub.NextMsg(2 * time.Second)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if string(m.Data) != want {
					t.Fatalf("message %d = %q (len %d), want len %d", i, m.Data, len(m.Data), len(want))
				}
				if m.Header.Get(v1.HeaderStream) != "stdout" || (m.Header.Get(nexlet.HeaderContinued) == "true") != tt.cont[i] {
					t.Fatalf("message %d headers %v", i, m.Header)
				}
			}
			if m, err := sub.NextMsg(50 * time.Millisecond); err == nil {
				t.Fatalf("extra message %q", m.Data)
			}
		})
	}
}

// BenchmarkLineWriter ships 80-byte lines through a real connection, end to end: every
// 10,000 lines it waits until they are published, so the queue never overflows.
func BenchmarkLineWriter(b *testing.B) {
	s := testutil.StartServer(b)
	nc := testutil.Connect(b, s)
	w := nexlet.NewFeed(nc, "NODE").LineWriter("ns", "w1", "stdout")
	line := []byte(strings.Repeat("x", 79) + "\n")
	b.SetBytes(int64(len(line)))
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		_, _ = w.Write(line)
		if i%10000 == 0 || i == b.N {
			for w.Lines()+w.Dropped() < uint64(i) {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	w.Close()
	if w.Dropped() > 0 {
		b.Fatalf("dropped %d lines", w.Dropped())
	}
}
