package nodeflags

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCapacityFlagsChecked(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string // "" : accepted
	}{
		{"defaults", Options{ReserveMemory: "256MiB"}, ""},
		{"sizes", Options{Memory: "8GiB", CPUs: 2.5, ReserveMemory: "1G", ReserveCPU: 0.5}, ""},
		{"bad size", Options{Memory: "8 gigs"}, `--memory: "8 gigs" is not a size`},
		{"no memory", Options{Memory: "0"}, "--memory 0: a node offering no memory"},
		{"bad reserve", Options{ReserveMemory: "-1MiB"}, "--reserve-memory:"},
		{"reserve all memory", Options{Memory: "1GiB", ReserveMemory: "1GiB"}, "--reserve-memory 1 GiB leaves nothing of --memory 1 GiB"},
		{"negative cpus", Options{CPUs: -1}, "--cpus -1: want a number of cores"},
		{"reserve all cpu", Options{CPUs: 2, ReserveCPU: 2}, "--reserve-cpu 2 leaves nothing of the node's 2 cores"},
		{"listen", Options{EmbeddedListen: "127.0.0.1:4223"}, ""},
		{"listen on any port", Options{EmbeddedListen: "127.0.0.1:-1"}, ""},
		{"listen without a port", Options{EmbeddedListen: "nonsense"}, `--embedded.listen "nonsense": want HOST:PORT`},
		{"listen on no port", Options{EmbeddedListen: "127.0.0.1:99999"}, "the port must be a number from 0 to 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Check()
			if tt.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error %v, want one with %q", err, tt.want)
			}
		})
	}
}

// --nexlets: names are unique on the node (native is the bundled nexlet's), the
// executable must be there, and an unknown key in the JSON is an error.
func TestNexletsChecked(t *testing.T) {
	sh := NexletSpec{Name: "two", URI: "file:///bin/sh"}
	text := filepath.Join(t.TempDir(), "text")
	if err := os.WriteFile(text, []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"one", Options{Nexlets: Nexlets{sh}}, ""},
		{"bundled name", Options{Nexlets: Nexlets{{Name: "native", URI: "file:///bin/sh"}}}, "--nexlets native: that is the bundled nexlet-native's name"},
		{"bundled name, bundled off", Options{DisableNativeStart: true, Nexlets: Nexlets{{Name: "native", URI: "file:///bin/sh"}}}, ""},
		{"twice", Options{Nexlets: Nexlets{sh, sh}}, "--nexlets two: two nexlets of this node have that name"},
		{"missing", Options{Nexlets: Nexlets{{Name: "gone", URI: "file:///no/such/nexlet"}}}, "--nexlets gone: /no/such/nexlet is not an executable file"},
		{"not executable", Options{Nexlets: Nexlets{{Name: "text", URI: "file://" + text}}}, text + " is not an executable file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.ReserveMemory = "256MiB"
			err := tt.o.Check()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
