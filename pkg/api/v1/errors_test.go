package v1

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestErrorStatusPairs reads every NewError call left in the repository (most errors are
// v1.Errorf, whose status comes from its code) and checks that its HTTP-like status is
// one Statuses pairs with its error code.
func TestErrorStatusPairs(t *testing.T) {
	call := regexp.MustCompile(`NewError\((\d+), (?:v1\.)?(Code[A-Za-z]+)`)
	names := map[string]string{
		"CodeBadRequest": CodeBadRequest, "CodeInvalidToken": CodeInvalidToken, "CodeSchemaInvalid": CodeSchemaInvalid,
		"CodeNotFound": CodeNotFound, "CodeNoPlacement": CodeNoPlacement, "CodeBidExpired": CodeBidExpired,
		"CodeConflict": CodeConflict, "CodeUnavailable": CodeUnavailable, "CodeLameduck": CodeLameduck,
		"CodeStartFailed": CodeStartFailed, "CodeTimeout": CodeTimeout, "CodeForbidden": CodeForbidden,
		"CodeTooLarge": CodeTooLarge, "CodeInternal": CodeInternal, "CodeNotImplemented": CodeNotImplemented,
		"CodeStorageFull": CodeStorageFull, "CodeStorageUnavailable": CodeStorageUnavailable, "CodeQuotaExceeded": CodeQuotaExceeded,
	}
	for _, code := range names {
		if _, ok := Statuses[code]; !ok {
			t.Errorf("error code %s has no status in Statuses", code)
		}
	}
	seen := 0
	err := filepath.WalkDir("../../..", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range call.FindAllStringSubmatch(string(src), -1) {
			seen++
			status, _ := strconv.Atoi(m[1])
			code, ok := names[m[2]]
			if !ok {
				t.Errorf("%s: unknown error code constant %s", path, m[2])
				continue
			}
			if !slices.Contains(Statuses[code], status) {
				t.Errorf("%s: NewError(%d, %s): %s travels with %v", path, status, m[2], code, Statuses[code])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 3 {
		t.Fatalf("found only %d NewError calls: is the walk in the right place?", seen)
	}
}

func TestIsCode(t *testing.T) {
	wrapped := &wrapErr{NotFound("workload x not found")}
	if !IsNotFound(wrapped) || IsCode(wrapped, CodeConflict) || IsNotFound(nil) || IsNotFound(os.ErrNotExist) {
		t.Fatal("IsCode/IsNotFound disagree with the error code")
	}
}

type wrapErr struct{ err error }

func (w *wrapErr) Error() string { return "wrapped: " + w.err.Error() }
func (w *wrapErr) Unwrap() error { return w.err }

// Namespaces that NATS keeps for itself are refused: their workloads would get <ns>.>.
func TestReservedNamespaces(t *testing.T) {
	for _, ns := range []string{"$KV", "$JS", "$SYS", "_INBOX", "_INBOX_a", "$", "_"} {
		if err := ValidateNamespace(ns); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "NATS keeps for itself") {
			t.Errorf("namespace %q: %v", ns, err)
		}
		d := WorkloadDefinition{Namespace: ns, Name: "x", Type: "native", Lifecycle: LifecycleJob}
		if err := d.Validate(); err == nil {
			t.Errorf("a definition in namespace %q was accepted", ns)
		}
	}
	for _, ns := range []string{"default", "a", "team-1", "system", "A_b-9"} {
		if err := ValidateNamespace(ns); err != nil {
			t.Errorf("namespace %q refused: %v", ns, err)
		}
	}
	// a namespace names buckets and KV keys too: [A-Za-z0-9_-] only (a unicode one got a
	// storage error from JetStream)
	for _, ns := range []string{"x$", "café", "名前", "a+b", "a/b", "a:b"} {
		if err := ValidateNamespace(ns); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "letters, digits, '_' and '-' only") {
			t.Errorf("namespace %q: %v", ns, err)
		}
	}
}

// Errorf gives each code the status it travels with.
func TestErrorfStatus(t *testing.T) {
	for code, statuses := range Statuses {
		if e := Errorf(code, "x"); e.Code != statuses[0] || e.ErrorCode != code {
			t.Errorf("Errorf(%s): %d %s, want %d", code, e.Code, e.ErrorCode, statuses[0])
		}
	}
	if e := Errorf("made_up", "x"); e.Code != 500 {
		t.Errorf("an unknown code: %d, want 500", e.Code)
	}
}
