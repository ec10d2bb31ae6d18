package v1

import (
	"errors"
	"testing"
)

func TestValidateToken(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"default", true},
		{"hello-exec_1", true},
		{"", false},
		{"a.b", false},
		{"a*", false},
		{">", false},
		{"a b", false},
		{"tab\there", false},
		{"nl\n", false},
	}
	for _, tt := range tests {
		err := ValidateToken("name", tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateToken(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidToken) {
			t.Errorf("ValidateToken(%q) error %v is not ErrInvalidToken", tt.in, err)
		}
	}
}

func TestParseControlSubject(t *testing.T) {
	ns, id, err := ParseControlSubject(ControlSubject("default", VerbStop, "abc"))
	if err != nil || ns != "default" || id != "abc" {
		t.Fatalf("got %q %q %v", ns, id, err)
	}
	ns, id, err = ParseControlSubject(ControlSubject("x", VerbList))
	if err != nil || ns != "x" || id != "" {
		t.Fatalf("got %q %q %v", ns, id, err)
	}
	if _, _, err := ParseControlSubject("foo.bar"); err == nil {
		t.Fatal("want error for foreign subject")
	}
}

func TestAsError(t *testing.T) {
	e := AsError(ValidateToken("namespace", "a.b"))
	if e.Code != 400 || e.ErrorCode != CodeInvalidToken {
		t.Fatalf("got %+v", e)
	}
	if !IsNotFound(NotFound("workload %s", "x")) {
		t.Fatal("NotFound is not a not-found")
	}
	if e := AsError(nil); e == nil || e.Code != 0 {
		t.Fatalf("AsError(nil) = %+v", e)
	}
}

func TestValidateTriggerSubject(t *testing.T) {
	for s, ok := range map[string]bool{
		"orders.new": true, "orders.*": true, "orders.>": true, "a": true,
		"": false, "orders..new": false, "orders.>.x": false, "or*ders": false, "a b": false,
		"$NEX.SVC.v1.x": false, "$SYS.ACCOUNT": false, "_INBOX.x": false,
	} {
		if err := ValidateTriggerSubject(s); (err == nil) != ok {
			t.Errorf("ValidateTriggerSubject(%q) = %v, want ok=%v", s, err, ok)
		}
	}
}
