// Package schema compiles and applies JSON Schemas to start requests, with errors that
// name the failing field.
package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/xeipuuv/gojsonschema"
)

// Registry caches compiled schemas by content so repeated validations are cheap.
type Registry struct {
	mu      sync.Mutex
	schemas map[[32]byte]*gojsonschema.Schema
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{schemas: map[[32]byte]*gojsonschema.Schema{}}
}

var defaultRegistry = NewRegistry()

// Validate checks doc against schemaJSON using the process-wide registry.
func Validate(schemaJSON, doc []byte) error { return defaultRegistry.Validate(schemaJSON, doc) }

// Compile returns the compiled schema, compiling it once per distinct content: the same
// schema with other whitespace, or with <, > and & escaped, is the same (a nexlet's schema
// comes compacted and escaped by JSON encoding in its bid, where the CLI has it as the
// file, indented: a CLI start compiled it twice, the second time on its way to the node). Bytes seen before are found by their hash alone; only new bytes are compacted.
func (r *Registry) Compile(schemaJSON []byte) (*gojsonschema.Schema, error) {
	key := sha256.Sum256(schemaJSON)
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.schemas[key]; ok {
		return s, nil
	}
	var compact, escaped bytes.Buffer
	same := key
	if json.Compact(&compact, schemaJSON) == nil {
		json.HTMLEscape(&escaped, compact.Bytes()) // as encoding/json marshals it: "<" is "\u003c"
		same = sha256.Sum256(escaped.Bytes())
	}
	if s, ok := r.schemas[same]; ok {
		r.schemas[key] = s
		return s, nil
	}
	s, err := gojsonschema.NewSchema(gojsonschema.NewBytesLoader(schemaJSON))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSchema, err)
	}
	r.schemas[key], r.schemas[same] = s, s
	return s, nil
}

// ValidationError lists every field that failed, as "start_request.<field>: <problem>".
type ValidationError struct {
	Fields []string
}

func (e *ValidationError) Error() string {
	return ErrInvalid.Error() + ": " + strings.Join(e.Fields, "; ")
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Validate checks doc against schemaJSON.
func (r *Registry) Validate(schemaJSON, doc []byte) error {
	s, err := r.Compile(schemaJSON)
	if err != nil {
		return err
	}
	if len(doc) == 0 {
		return &ValidationError{Fields: []string{"start_request: is missing"}}
	}
	if err := shape(doc); err != nil {
		return err
	}
	validating <- struct{}{} // a document wrong item by item costs up to about 100 ms and 30 MB
	res, err := s.Validate(gojsonschema.NewBytesLoader(doc))
	<-validating
	if err != nil {
		return &ValidationError{Fields: []string{"start_request: is not valid JSON: " + err.Error()}}
	}
	if res.Valid() {
		return nil
	}
	ve := &ValidationError{}
	for i, re := range res.Errors() {
		if i == MaxErrors {
			ve.Fields = append(ve.Fields, fmt.Sprintf("and %d more", len(res.Errors())-MaxErrors))
			break
		}
		field := re.Field()
		if field == "(root)" {
			field = "start_request"
		} else {
			field = "start_request." + field
		}
		ve.Fields = append(ve.Fields, field+": "+describe(re))
	}
	return ve
}

// inWords says what the patterns of the shipped schemas ask for, as a person would.
var inWords = map[string]string{
	`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`:         "a duration like 10s, 500ms or 1m30s",
	`^[0-9]+(\.[0-9]+)? ?([KkMmGgTt][Ii]?[Bb]?|[Bb])?$`: "a size like 512MiB, 1GiB or a number of bytes",
	`^[0-9a-f]{64}$`:                  "a SHA-256 digest: 64 lowercase hex digits",
	`^0?[0-7]{3}$`:                    "an octal file mode like 0755",
	`^/`:                              "an absolute path (starting with /)",
	`^(file:///|nats://).+`:           "a file:/// or nats:// URI",
	`^(file:///|https?://|nats://).+`: "a file:///, http(s):// or nats:// URI",
}

// describe is re's description, a pattern it failed told in words where it is known.
func describe(re gojsonschema.ResultError) string {
	if re.Type() == "pattern" {
		if p, ok := re.Details()["pattern"].(fmt.Stringer); ok {
			if words, ok := inWords[p.String()]; ok {
				return fmt.Sprintf("%v is not %s", re.Value(), words)
			}
		}
	}
	return re.Description()
}

// MaxMembers bounds the members of any one array or object of a document, MaxTokens the
// values and keys of the whole of it, and MaxErrors the problems an error names. A start
// request of 256 KiB whose 131,072 array items were each wrong cost the node 0.6 s of CPU
// and 177 MB in gojsonschema, and an error of 9.7 MB (a review's tenant sent five a
// second and held a node's two cores); one within these bounds costs tens of ms.
const (
	MaxMembers = 4096
	MaxTokens  = 16384
	MaxErrors  = 20
)

// validating holds the validations running in this process to one per CPU: a node's
// requests in flight (64 of a verb per namespace) cannot each hold their document's
// errors at once.
var validating = make(chan struct{}, runtime.GOMAXPROCS(0))

// repeatedKey refuses a key an object has already (top: the start request's own, where
// one differing only in case is the same field to Go's decoding), and records it. Readers
// of a repeated key disagree about it: the schema check and a map take the last, Go's
// decoding into a struct all of them, and a review's walk hid another namespace's sealed
// value behind an "environment" that came first.
func repeatedKey(keys map[string]bool, key string, top bool) error {
	k := key
	if top {
		k = strings.ToUpper(strings.ToLower(key)) // as encoding/json folds: "ſ" is "s", "K" "k"
	}
	if keys[k] {
		return &ValidationError{Fields: []string{fmt.Sprintf("start_request: key %q appears twice in one object", key)}}
	}
	keys[k] = true
	return nil
}

// shape refuses, before any schema sees it, a document with an array or object of more
// than MaxMembers members, or more than MaxTokens values and keys in all: a pass over its
// tokens, linear in its bytes. It refuses a repeated key too (repeatedKey).
func shape(doc []byte) error {
	dec := json.NewDecoder(bytes.NewReader(doc))
	type level struct {
		tokens, per int             // per: tokens per member (an object's: key and value)
		keys        map[string]bool // an object's keys so far
	}
	var open []level
	for total := 0; ; total++ {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &ValidationError{Fields: []string{"start_request: is not valid JSON: " + err.Error()}}
		}
		if total > MaxTokens {
			return &ValidationError{Fields: []string{fmt.Sprintf("start_request: more than %d values and keys", MaxTokens)}}
		}
		d, delim := tok.(json.Delim)
		if delim && (d == '}' || d == ']') {
			open = open[:len(open)-1]
			continue
		}
		if n := len(open); n > 0 {
			if key, ok := tok.(string); ok && open[n-1].keys != nil && open[n-1].tokens%2 == 0 {
				if err := repeatedKey(open[n-1].keys, key, n == 1); err != nil {
					return err
				}
			}
			if open[n-1].tokens++; open[n-1].tokens > MaxMembers*open[n-1].per {
				return &ValidationError{Fields: []string{fmt.Sprintf("start_request: an array or object of more than %d members", MaxMembers)}}
			}
		}
		if delim && d == '{' {
			open = append(open, level{per: 2, keys: map[string]bool{}})
		} else if delim && d == '[' {
			open = append(open, level{per: 1})
		}
	}
}
