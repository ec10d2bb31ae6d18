package v1_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The environment names of nexlets and workloads are spelled in this package only: the
// rest of nex uses the constants (struct tags, which cannot, and tests aside), so a
// third-party nexlet that reads them here gives its workloads what native gives.
func TestEnvNamesLiveHere(t *testing.T) {
	names := []string{v1.EnvNodeID, v1.EnvNexletID, v1.EnvWorkloadID, v1.EnvWorkloadName, v1.EnvNamespace,
		v1.EnvNATSCreds, v1.EnvInboxPrefix, v1.EnvTriggerSubject, v1.EnvNATSURL}
	root := filepath.Join("..", "..", "..")
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || path == filepath.Join(root, "pkg", "api", "v1")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		checked++
		tags := map[*ast.BasicLit]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			if fld, ok := n.(*ast.Field); ok && fld.Tag != nil {
				tags[fld.Tag] = true
			}
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING || tags[lit] {
				return true
			}
			s, _ := strconv.Unquote(lit.Value)
			// every subject, and the node's inbox prefix, is built in subjects.go
			if strings.Contains(s, "$NEX.") || strings.Contains(s, "_NEXNODE_") {
				t.Errorf("%s spells the subject %q: build it with a function of pkg/api/v1/subjects.go", path, s)
			}
			for _, name := range names {
				if s == name || strings.HasPrefix(s, name+"=") {
					t.Errorf("%s spells %q: use v1's constant", path, s)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked %d Go files: the walk missed the repository", checked)
	}
}
