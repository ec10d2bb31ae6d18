package cli

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/nexrun/nex/internal/words"
)

// IsTerminal reports whether w is a terminal: tables and colours are for people;
// pipes get plain tab-separated lines.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// WriteJSONLine writes v as one line of JSON (for streams of messages). Output is for people and scripts, not
// browsers: "<", ">" and "&" stay as they are.
func WriteJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// WriteJSON writes v as indented JSON, HTML characters unescaped.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Table collects rows and prints them aligned on a terminal (header in bold), or as
// tab-separated lines for a pipe.
type Table struct {
	rows [][]string
}

func NewTable(header ...string) *Table { return &Table{rows: [][]string{header}} }

func (t *Table) Row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *Table) Write(w io.Writer) error {
	bw := bufio.NewWriter(w) // few writes, not one per cell: 10,000 rows are 160,000 cells
	if !IsTerminal(w) {
		t.cells(bw)
	} else {
		t.aligned(bw)
	}
	return bw.Flush()
}

// aligned writes the rows in columns two spaces apart, each as wide as its widest visible
// text (the header's bold escape codes take no room on a terminal), header in bold.
func (t *Table) aligned(w io.Writer) {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r {
			if n := utf8.RuneCountInString(c); i >= len(widths) {
				widths = append(widths, n)
			} else if n > widths[i] {
				widths[i] = n
			}
		}
	}
	var b strings.Builder
	for ri, r := range t.rows {
		b.Reset()
		for i, c := range r {
			if ri == 0 {
				b.WriteString("\x1b[1m" + c + "\x1b[0m")
			} else {
				b.WriteString(c)
			}
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteByte('\n')
		_, _ = io.WriteString(w, b.String())
	}
}

// cells writes the rows as tab-separated lines.
func (t *Table) cells(w io.Writer) {
	for _, r := range t.rows {
		_, _ = io.WriteString(w, strings.Join(r, "\t")+"\n")
	}
}

// Plural is "1 workload", "2 workloads".
func Plural(n int, noun string) string { return PluralOf(n, noun, noun+"s") }

// PluralOf is "1 copy", "2 copies".
func PluralOf(n int, one, many string) string { return words.Count(n, one, many) }

// Printable is s with its control characters but newline and tab written as Go escapes
// (`\x1b`): text the cluster gives (a description, an event's message, metadata, an
// error) may be a tenant's, and a terminal acts on the escape sequences in what it is
// shown (a tenant's description retitled an operator's terminal, cleared it and forged a
// status line in `nex workload info`: a review's walk). A workload's own output (logs)
// is shown as it is, as every runner shows it.
func Printable(s string) string {
	if !strings.ContainsFunc(s, terminalControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if terminalControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func terminalControl(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }
