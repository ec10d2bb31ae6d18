package svc

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// listJSON is a node's list reply of n workloads, as the node encodes it.
func listJSON(tb testing.TB, n int) []byte {
	tb.Helper()
	l := v1.ListReply{NodeID: "NDCUWCRSB6S63RQDUL55MQPDLLLUMJ5PSZ7B2FEXLMAD3WS5RZL23UXH"}
	for i := range n {
		l.Workloads = append(l.Workloads, v1.WorkloadInfo{ID: fmt.Sprintf("44bqPxYMWfgP8MJZx%05d", i), Name: fmt.Sprintf("web-%d", i),
			Namespace: "bench", Type: "native", Lifecycle: "service", State: "running", NodeID: l.NodeID, StartedAt: time.Unix(1_780_000_000+int64(i), 0)})
	}
	b, err := json.Marshal(l)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// A reply gzipped by a node reads back as it was, whichever gzip wrote it (the standard
// library's is what older nodes send), and a trailer that lies about the size changes
// nothing but the first buffer's size.
func TestGzipRoundTrip(t *testing.T) {
	raw := listJSON(t, 1000)
	z, err := gzipped(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(z)*4 > len(raw) {
		t.Fatalf("%d bytes gzipped to %d", len(raw), len(z))
	}
	var std bytes.Buffer
	w := gzip.NewWriter(&std)
	w.Write(raw)
	w.Close()
	lying := bytes.Clone(std.Bytes())
	binary.LittleEndian.PutUint32(lying[len(lying)-4:], 0xffffffff)
	for name, in := range map[string][]byte{"ours": z, "standard library's": std.Bytes()} {
		out, err := gunzipped(in)
		if err != nil || !bytes.Equal(out, raw) {
			t.Fatalf("%s: %d bytes back of %d, %v", name, len(out), len(raw), err)
		}
	}
	if _, err := gunzipped(lying); err == nil {
		t.Fatal("a trailer whose size is wrong was accepted")
	}
	if _, err := gunzipped([]byte{1, 2}); err == nil {
		t.Fatal("two bytes read as gzip")
	}
}

// BenchmarkGzipList compresses and reads back a node's list of 1,000 workloads.
func BenchmarkGzipList(b *testing.B) {
	raw := listJSON(b, 1000)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		z, err := gzipped(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := gunzipped(z); err != nil {
			b.Fatal(err)
		}
	}
}
