package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/cli"
	"github.com/nexrun/nex/internal/testutil"
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

// The browser is opened on a page of the user's own that sends it on to the console's
// URL: xdg-open's arguments, which every local user may read, hold no session key
// (another user of the machine read it there and drove the operator's console).
func TestUIKeyNotInArguments(t *testing.T) {
	bin := t.TempDir()
	args := filepath.Join(bin, "args")
	if err := os.WriteFile(filepath.Join(bin, "xdg-open"), []byte("#!/bin/sh\necho \"$@\" > "+args+".tmp && mv "+args+".tmp "+args+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":/usr/bin:/bin")
	t.Setenv("DISPLAY", ":99")
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	var g cli.Globals
	g.SetOutput(io.Discard, io.Discard)
	url := "http://127.0.0.1:8077/#key=0123456789abcdef"
	done := openBrowser(&g, url)
	var got []byte
	testutil.Eventually(t, 5*time.Second, "xdg-open to run", func() bool {
		var err error
		got, err = os.ReadFile(args)
		return err == nil
	})
	if strings.Contains(string(got), "0123456789abcdef") {
		t.Fatalf("xdg-open's arguments hold the session key: %s", got)
	}
	page := strings.TrimPrefix(strings.TrimSpace(string(got)), "file://")
	body, err := os.ReadFile(page)
	if err != nil || !strings.Contains(string(body), url) {
		t.Fatalf("the page xdg-open was given: %v %s", err, body)
	}
	for p, want := range map[string]os.FileMode{page: 0o600, filepath.Dir(page): 0o700} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", p, st.Mode().Perm(), err, want)
		}
	}
	done()
	if _, err := os.Stat(page); !os.IsNotExist(err) {
		t.Errorf("the page stays after the console ends: %v", err)
	}
}
