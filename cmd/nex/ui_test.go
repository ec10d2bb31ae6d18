package main

import (
	"strings"
	"testing"
)

// A --listen that is no host:port is refused naming the flag, before anything connects.
func TestUIListenChecked(t *testing.T) {
	for _, listen := range []string{"8077", "localhost", "127.0.0.1:80:80"} {
		_, errs, code := runNex(t, "-s", "nats://127.0.0.1:1", "ui", "--no-open", "--listen", listen)
		if code == 0 || !strings.Contains(errs, `--listen "`+listen+`": want host:port`) {
			t.Errorf("--listen %s: exit %d: %s", listen, code, errs)
		}
	}
	// a namespace that cannot be one: said before anything connects
	if _, errs, code := runNex(t, "-s", "nats://127.0.0.1:1", "--namespace", "a.b", "ui"); code == 0 || !strings.Contains(errs, "namespace") {
		t.Errorf("a bad namespace: exit %d: %s", code, errs)
	}
}
