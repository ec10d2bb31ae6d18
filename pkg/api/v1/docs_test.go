package v1

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestAPIDocComplete checks docs/api-v1.md against the code: every verb the code serves,
// every event type, and every error code with its status are in it.
func TestAPIDocComplete(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/api-v1.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	f, err := parser.ParseFile(token.NewFileSet(), "subjects.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	verbs := 0
	for _, decl := range f.Decls {
		g, ok := decl.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Verb") && !strings.HasPrefix(name.Name, "Nexlet") {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					continue
				}
				verb, _ := strconv.Unquote(lit.Value)
				verbs++
				if !strings.Contains(text, "."+verb+"`") && !strings.Contains(text, "."+verb+".<") {
					t.Errorf("docs/api-v1.md has no subject for %s (%s)", name.Name, verb)
				}
			}
		}
	}
	if verbs < 15 {
		t.Fatalf("found only %d verbs in subjects.go", verbs)
	}
	for _, s := range []string{".REGISTER`", ".HEARTBEAT.<nexlet_id>`", ".ANNOUNCE`", "$NEX.HIST.<ns>.logs.<wid>", "$NEX.FEED.<ns>.logs.<wid>", "$NEX.FEED.<ns>.event.<wid>", "$NEX.FEED.system.event.<node_id>",
		HeaderNodeID, HeaderPeers, HeaderExitCode, HeaderError, HeaderAck, HeaderStream, HeaderContinued, HeaderContinuedLines, HeaderEnd, HeaderEncoding} {
		if !strings.Contains(text, s) {
			t.Errorf("docs/api-v1.md does not mention %s", s)
		}
	}
	for _, typ := range EventTypes {
		if !strings.Contains(text, "`"+typ+"`") {
			t.Errorf("docs/api-v1.md does not list event type %s", typ)
		}
	}
	for code, statuses := range Statuses {
		for _, st := range statuses {
			if !strings.Contains(text, "| "+strconv.Itoa(st)+" | `"+code+"` |") {
				t.Errorf("docs/api-v1.md has no row for %d %s", st, code)
			}
		}
	}
}

// TestAuthorizationTableInDocs checks that docs/api-v1.md prints every row of the
// authorization table as the code has it, and that the table covers every control verb.
func TestAuthorizationTableInDocs(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/api-v1.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Authorization {
		row := "| `" + r.Subject + "` | " + r.Who + " | " + r.Scope + " |"
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/api-v1.md lacks the row %s", row)
		}
	}
	for _, verb := range []string{VerbAuction, VerbDeploy, VerbRelease, VerbStop, VerbInfo, VerbClone, VerbList, VerbPing, VerbLameduck, VerbGroup, VerbGroups, VerbSecretPut, VerbSecretRm, VerbSecretList, VerbSecretKey, VerbUsage, VerbBundleBucket} {
		found := false
		for _, r := range Authorization {
			found = found || strings.Contains(r.Subject, ".control."+verb)
		}
		if !found {
			t.Errorf("control verb %s has no row in the authorization table", verb)
		}
	}
	for _, ns := range []string{"a", "default"} {
		if err := Authorize(VerbLameduck, ns); err == nil || AsError(err).Code != 403 {
			t.Errorf("LAMEDUCK from namespace %s: %v", ns, err)
		}
	}
	if err := Authorize(VerbLameduck, SystemNamespace); err != nil {
		t.Errorf("LAMEDUCK from system: %v", err)
	}
}
