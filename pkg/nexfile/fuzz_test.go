package nexfile

import "testing"

func FuzzParse(f *testing.F) {
	for _, s := range []string{guideYAML, `{"name":"x","type":"native","lifecycle":"job","start_request":{"uri":"file:///bin/true"}}`,
		"name: [", "- a", "start_request: null", "tags: {a: 1}", "name: x\nname: y", "\t", "&a [*a, *a]", "!!binary aGVsbG8="} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		nf, err := Parse(b)
		if err != nil {
			return
		}
		// whatever parses can be turned into a definition or a clear error, without panics
		_, _ = Definition(nf, Overrides{})
	})
}
