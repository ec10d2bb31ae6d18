package listing

import (
	"encoding/json"
	"testing"
)

func TestSplitArray(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{`[]`, nil, false},
		{` [ ] `, nil, false},
		{`[{"id":"a"}]`, []string{`{"id":"a"}`}, false},
		{`[{"id":"a","x":[1,{"y":"],\"}"}]} , {"id":"b"},3,"s,t"]`, []string{`{"id":"a","x":[1,{"y":"],\"}"}]}`, `{"id":"b"}`, `3`, `"s,t"`}, false},
		{`[{"id":"a"},`, nil, true},
		{`{"id":"a"}`, nil, true},
		{`[{"id":"a"}] trailing`, nil, true},
	} {
		got, err := splitArray([]byte(c.in))
		if (err != nil) != c.bad {
			t.Fatalf("%s: err %v", c.in, err)
		}
		if c.bad {
			continue
		}
		if len(got) != len(c.want) {
			t.Fatalf("%s: %d items %q", c.in, len(got), got)
		}
		for i := range got {
			if string(got[i]) != c.want[i] || !json.Valid(got[i]) {
				t.Fatalf("%s: item %d is %q, want %q", c.in, i, got[i], c.want[i])
			}
		}
		if id := itemID(json.RawMessage(`{"id":"a\"b","n":1}`)); id != `a"b` {
			t.Fatalf("itemID of an escaped ID: %q", id)
		}
	}
}
