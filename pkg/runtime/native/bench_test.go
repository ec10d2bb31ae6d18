package native_test

import (
	"encoding/json"
	"fmt"
	"testing"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// BenchmarkStartJob measures the native runtime's part of a start: parse, workdir,
// fork/exec of /bin/true, event.
func BenchmarkStartJob(b *testing.B) {
	e := newEnv(&testing.T{})
	raw, _ := json.Marshal(map[string]any{"uri": "file:///bin/true"})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, err := e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: fmt.Sprintf("b%d", i), Definition: v1.WorkloadDefinition{
			Namespace: "bench", Name: "b", Type: "native", Lifecycle: v1.LifecycleJob, StartRequest: raw}})
		if err != nil {
			b.Fatal(err)
		}
	}
}
