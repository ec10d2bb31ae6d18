package schema

import (
	"testing"

	"github.com/nexrun/nex/schemas"
)

func FuzzValidateNative(f *testing.F) {
	s, _ := schemas.StartRequest("native")
	for _, d := range []string{`{"uri":"file:///bin/true"}`, `{`, `[]`, `{"uri":5}`, `{"argv":[1,2]}`, `null`, `"x"`} {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		_ = Validate(s, doc)
	})
}
