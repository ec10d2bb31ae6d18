package cli

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// On a terminal the columns line up by the text a person sees: the header's bold escape
// codes take no room.
func TestTableAlignsVisibleText(t *testing.T) {
	tb := NewTable("ID", "NAME", "STATE")
	tb.Row("a1b2c3", "web", "running")
	tb.Row("x", "a-much-longer-name", "stopped (exit 3)")
	var b strings.Builder
	tb.aligned(&b)
	visible := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(b.String(), "")
	lines := strings.Split(strings.TrimSuffix(visible, "\n"), "\n")
	for _, col := range []string{"NAME", "STATE"} {
		at := strings.Index(lines[0], col)
		for _, l := range lines[1:] {
			if at >= len(l) || l[at-1] != ' ' || l[at] == ' ' {
				t.Fatalf("column %s starts at %d in the header but not in %q:\n%s", col, at, l, visible)
			}
		}
	}
}

// JSON output keeps "<", ">" and "&" as they are.
func TestWriteJSONKeepsHTML(t *testing.T) {
	var b bytes.Buffer
	_ = WriteJSON(&b, map[string]string{"cmd": "a && b > c"})
	if !strings.Contains(b.String(), `"a && b > c"`) {
		t.Fatalf("WriteJSON escapes HTML: %s", b.String())
	}
}

// Text the cluster gives is shown with its control characters escaped, newlines and tabs
// kept: a tenant's escape sequences do not reach an operator's terminal.
func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                       "plain",
		"two\nlines\tand a tab":       "two\nlines\tand a tab",
		"\x1b]0;OWNED\a\x1b[2Jcalm":   `\x1b]0;OWNED\a\x1b[2Jcalm`,
		"c1 \u009b31m and é":          `c1 \u009b31m and é`,
		"carriage\rreturn\x00nul\x7f": `carriage\rreturn\x00nul\x7f`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
