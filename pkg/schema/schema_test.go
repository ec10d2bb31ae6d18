package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/schemas"
)

func TestNativeSchema(t *testing.T) {
	s, err := schemas.StartRequest("native")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, doc string
		wantField string
	}{
		{"minimal", `{"uri":"file:///bin/true"}`, ""},
		{"full", `{"uri":"file:///bin/echo","argv":["a"],"environment":{"A":"b"},"workdir":"/tmp","stdin":"x","expose_ports":[8080],"artifacts":[{"uri":"file:///etc/hosts"}]}`, ""},
		{"missing uri", `{"argv":["a"]}`, "start_request: uri is required"},
		{"bad uri", `{"uri":"/bin/true"}`, "start_request.uri"},
		{"argv not strings", `{"uri":"file:///bin/true","argv":[1]}`, "start_request.argv.0"},
		{"unknown field", `{"uri":"file:///bin/true","bogus":1}`, "bogus"},
		{"bad port", `{"uri":"file:///bin/true","expose_ports":[70000]}`, "start_request.expose_ports.0"},
		{"not json", `{`, "not valid JSON"},
		{"go durations", `{"uri":"file:///bin/true","grace_period":"1m30s","timeout":"1h30m","restart":{"initial_delay":"1.5s","max_delay":"2m0.5s"}}`, ""},
		{"microseconds", `{"uri":"file:///bin/true","grace_period":"1500µs"}`, ""},
		{"not a duration", `{"uri":"file:///bin/true","grace_period":"90"}`, "start_request.grace_period"},
		{"a unit only", `{"uri":"file:///bin/true","grace_period":"s"}`, "start_request.grace_period"},
		// readers of a repeated key disagree (a review hid a sealed value so)
		{"repeated key", `{"uri":"file:///bin/true","environment":[],"environment":{"A":"b"}}`, `key "environment" appears twice`},
		{"repeated key, other case", `{"uri":"file:///bin/true","environment":{"A":"b"},"Environment":{"A":"c"}}`, `key "Environment" appears twice`},
		{"repeated key, folded", `{"uri":"file:///bin/true","environment":{},"ENVIRONMENT":{}}`, `key "ENVIRONMENT" appears twice`},
		{"repeated variable", `{"uri":"file:///bin/true","environment":{"A":"b","A":"c"}}`, `key "A" appears twice`},
		{"variables of two cases", `{"uri":"file:///bin/true","environment":{"path":"b","PATH":"c"}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(s, []byte(tt.doc))
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			if !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("error %q does not name %q", err, tt.wantField)
			}
		})
	}
}

func TestBadSchema(t *testing.T) {
	if err := Validate([]byte(`{"type": 12}`), []byte(`{}`)); !errors.Is(err, ErrBadSchema) {
		t.Fatalf("want ErrBadSchema, got %v", err)
	}
}

func BenchmarkValidateNative(b *testing.B) {
	s, _ := schemas.StartRequest("native")
	doc := []byte(`{"uri":"file:///usr/local/bin/hello","argv":["--listen=:8080"],"environment":{"A":"b"},"expose_ports":[8080]}`)
	for i := 0; i < b.N; i++ {
		if err := Validate(s, doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompileNative is what a CLI start pays to compile the native start request's
// schema (once per process: the registry keeps it).
func BenchmarkCompileNative(b *testing.B) {
	s, _ := schemas.StartRequest("native")
	for i := 0; i < b.N; i++ {
		if _, err := NewRegistry().Compile(s); err != nil {
			b.Fatal(err)
		}
	}
}

// A schema is compiled once, whatever its whitespace and escapes: a nexlet's comes in its
// bid as encoding/json marshals it (compacted, "<" as "\u003c"), the CLI's is the
// indented file.
func TestSchemaCompiledOnceWhateverItsWhitespace(t *testing.T) {
	indented, err := schemas.StartRequest("native")
	if err != nil {
		t.Fatal(err)
	}
	var bid struct {
		Schema json.RawMessage `json:"start_request_schema"`
	}
	raw, err := json.Marshal(v1.Bid{StartRequestSchema: indented})
	if err == nil {
		err = json.Unmarshal(raw, &bid)
	}
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(bid.Schema, indented) || !bytes.Contains(bid.Schema, []byte(`\u003c`)) {
		t.Fatal("the shipped schema is compact already, or holds no < to escape: this test shows less than it did")
	}
	r := NewRegistry()
	a, err := r.Compile(indented)
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range [][]byte{bid.Schema, bytes.ReplaceAll(indented, []byte("\n"), []byte("\n\t "))} {
		b, err := r.Compile(other)
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatalf("the same schema, as %.60q..., was compiled again", other)
		}
	}
	// and schemas that differ, if only by a backslash before "<" or a space inside a
	// string, are compiled each for itself, and judge as they say
	for _, c := range []struct{ a, b, doc string }{
		{`{"properties":{"x":{"const":"<a"}}}`, `{"properties":{"x":{"const":"\\u003ca"}}}`, `{"x":"<a"}`},
		{`{"properties":{"x":{"const":"a b"}}}`, `{"properties":{"x":{"const":"ab"}}}`, `{"x":"a b"}`},
	} {
		sa, err := r.Compile([]byte(c.a))
		if err != nil {
			t.Fatal(err)
		}
		sb, err := r.Compile([]byte(c.b))
		if err != nil {
			t.Fatal(err)
		}
		if sa == sb {
			t.Fatalf("%s and %s were taken for one schema", c.a, c.b)
		}
		if r.Validate([]byte(c.a), []byte(c.doc)) != nil || r.Validate([]byte(c.b), []byte(c.doc)) == nil {
			t.Fatalf("%s should take %s, %s refuse it", c.a, c.doc, c.b)
		}
	}
}

// A start request that is wrong item by item costs the node little, and its error stays
// short: a review's 256 KiB of wrong argv items took 0.6 s, 177 MB and a 9.7 MB error.
func TestWrongItemByItemIsCheap(t *testing.T) {
	s, _ := schemas.StartRequest("native")
	ints := func(n int) string { return strings.TrimSuffix(strings.Repeat("1,", n), ",") }
	objs := func(n int) string { return strings.TrimSuffix(strings.Repeat("{},", n), ",") }
	for name, doc := range map[string]string{
		"argv of 131,072 ints":                  `{"uri":"file:///bin/true","argv":[` + ints(131072) + `]}`,
		"argv of 4,096 ints, artifacts of {}":   `{"uri":"file:///bin/true","argv":[` + ints(4096) + `],"artifacts":[` + objs(4096) + `],"triggers":[` + ints(4096) + `]}`,
		"every array at its bound, wrong items": `{"uri":"file:///bin/true","argv":[` + ints(4096) + `],"artifacts":[` + objs(4096) + `],"triggers":[` + ints(4096) + `],"expose_ports":[` + objs(4000) + `]}`,
		"within the bounds, 12,000 wrong items": `{"uri":"file:///bin/true","argv":[` + ints(4000) + `],"triggers":[` + ints(4000) + `],"expose_ports":[` + objs(4000) + `]}`,
	} {
		var err error
		began := time.Now()
		allocs := testing.AllocsPerRun(1, func() { err = Validate(s, []byte(doc)) })
		took := time.Since(began) / 2 // AllocsPerRun runs it twice
		if err == nil {
			t.Fatalf("%s: valid", name)
		}
		if len(err.Error()) > 8<<10 {
			t.Errorf("%s: an error of %d bytes", name, len(err.Error()))
		}
		if allocs > 2_000_000 {
			t.Errorf("%s: %.0f allocations to refuse", name, allocs)
		}
		t.Logf("%s: %v, %.0f allocations, %.80s...", name, took, allocs, err)
	}
}
