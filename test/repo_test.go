package test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestNoBuildOutputTracked runs the lint step's check against this checkout (it must
// pass) and against scratch repositories that track a binary or a large file (it must fail).
func TestNoBuildOutputTracked(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	script, _ := filepath.Abs("../scripts/check-tracked.sh")
	run := func(dir string) (string, error) {
		out, err := exec.Command("bash", script, dir).CombinedOutput()
		return string(out), err
	}
	if _, err := exec.Command("git", "-C", "..", "rev-parse", "--git-dir").Output(); err == nil {
		if out, err := run(".."); err != nil {
			t.Fatalf("this checkout tracks build output:\n%s", out)
		}
	}
	self, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip("no /bin/true to stand in for a binary")
	}
	cases := []struct {
		name, file string
		data       []byte
		mode       os.FileMode
		want       string
	}{
		{"elf", "nex", self, 0o755, "tracked executable binary: nex"},
		{"large", "data.json", bytes.Repeat([]byte("x"), 1<<20+1), 0o644, "tracked file over 1 MiB: data.json"},
		{"exec with NUL", "tool", []byte("#\x00\x01binary"), 0o755, "tracked executable binary: tool"},
		{"script", "run.sh", []byte("#!/bin/sh\necho ok\n"), 0o755, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			git := func(args ...string) {
				cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("git %v: %v\n%s", args, err, out)
				}
			}
			git("init", "-q")
			if err := os.WriteFile(filepath.Join(dir, c.file), c.data, c.mode); err != nil {
				t.Fatal(err)
			}
			git("add", c.file)
			out, err := run(dir)
			if c.want == "" {
				if err != nil {
					t.Fatalf("a script was refused:\n%s", out)
				}
				return
			}
			if err == nil || !strings.Contains(out, c.want) {
				t.Fatalf("want failure naming %q, got err=%v:\n%s", c.want, err, out)
			}
		})
	}
}

// TestFunctionLength: no non-test function is over 100 lines; one that grows past a
// screen is telling where a room of its own is.
func TestFunctionLength(t *testing.T) {
	fset := token.NewFileSet()
	eachGoFile(t, func(path, _ string) error {
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			if n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1; n > 100 {
				t.Errorf("%s: %s is %d lines long; the limit is 100", path, fd.Name.Name, n)
			}
		}
		return nil
	})
}

// eachGoFile calls fn with each non-test Go file of the repository (outside .git,
// testdata and node_modules) and its package's directory, relative to the root.
func eachGoFile(t *testing.T, fn func(path, pkg string) error) {
	t.Helper()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel("..", filepath.Dir(path))
		return fn(path, filepath.ToSlash(rel))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// typeCeilings would hold types over methodLimit methods, each with the most it may have
// (it may shrink, never grow).
var typeCeilings = map[string]int{} // none left: every type is under the limit

const methodLimit = 40

// TestTypeSizes: no type has over methodLimit methods (in its package's non-test files),
// but those in typeCeilings, each under its ceiling. A type that big does too much: its
// state and its lock are shared by too many things ("The control plane in rooms").
func TestTypeSizes(t *testing.T) {
	fset := token.NewFileSet()
	methods := map[string]int{}
	eachGoFile(t, func(path, pkg string) error {
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if fd, ok := decl.(*ast.FuncDecl); ok && fd.Recv != nil && len(fd.Recv.List) == 1 {
				methods[pkg+"."+receiverName(fd.Recv.List[0].Type)]++
			}
		}
		return nil
	})
	if methods["pkg/node.Node"] < 10 {
		t.Fatalf("counted %d methods of pkg/node.Node: the walk is broken", methods["pkg/node.Node"])
	}
	checkCeilings(t, methods, typeCeilings, methodLimit, "methods", "give part of what it does a type of its own")
}

// checkCeilings fails a count over limit, unless ceilings lists it (then over its
// ceiling), and a listed one that came under the limit (its ceiling should go).
func checkCeilings(t *testing.T, counts, ceilings map[string]int, limit int, unit, advice string) {
	t.Helper()
	for name, n := range counts {
		ceiling, listed := ceilings[name]
		switch {
		case !listed && n > limit:
			t.Errorf("%s has %d %s; the limit is %d: %s", name, n, unit, limit, advice)
		case listed && n > ceiling:
			t.Errorf("%s grew to %d %s, over its ceiling of %d: it may only shrink", name, n, unit, ceiling)
		case listed && n <= limit:
			t.Errorf("%s has %d %s, under the limit of %d: take it out of the ceilings", name, n, unit, limit)
		}
	}
}

// receiverName is the name of a method's receiver type (T of T, *T, T[K], *T[K]).
func receiverName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.StarExpr:
		return receiverName(x.X)
	case *ast.IndexExpr:
		return receiverName(x.X)
	case *ast.IndexListExpr:
		return receiverName(x.X)
	case *ast.Ident:
		return x.Name
	}
	return "?"
}

// packageCeilings would hold packages over packageLimit lines, each with the most it may
// have (it may shrink, never grow); "The control plane in rooms" brought the last three
// (pkg/runtime/native, pkg/node, cmd/nex) under the limit.
var packageCeilings = map[string]int{} // none left: every package is under the limit

const packageLimit = 2000

// TestPackageSizes: no package is over packageLimit lines (its non-test files, as wc -l
// counts), but those in packageCeilings, each under its ceiling.
func TestPackageSizes(t *testing.T) {
	lines := map[string]int{}
	eachGoFile(t, func(path, pkg string) error {
		b, err := os.ReadFile(path)
		lines[pkg] += bytes.Count(b, []byte("\n"))
		return err
	})
	checkCeilings(t, lines, packageCeilings, packageLimit, "lines", "split it into rooms (ARCHITECTURE.md)")
}

// TestDocLinks: every relative link in README.md, ARCHITECTURE.md, CONTRIBUTING.md and docs/ points at a file that exists.
func TestDocLinks(t *testing.T) {
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md", "../ARCHITECTURE.md", "../CONTRIBUTING.md")
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", f, target)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d links checked", checked)
	}
}

// TestImportsPointOneWay holds the import rules of "The control plane in rooms": the
// daemon does not link a nexlet's runtime, the NATS connection package does not know the
// service layer, and the process helpers do not know how connections are made.
func TestImportsPointOneWay(t *testing.T) {
	rules := []struct{ pkg, not string }{
		{"internal/daemon", "pkg/runtime/native"},
		{"pkg/natsconn", "internal/svc"},
		{"internal/proc", "pkg/natsconn"},
		{"cmd/nex", "pkg/node"},
	}
	rooms, err := os.ReadDir("../pkg/node")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rooms { // the node's rooms lie below it, never above it
		if d.IsDir() && d.Name() != "testdata" {
			rules = append(rules, struct{ pkg, not string }{"pkg/node/" + d.Name(), "pkg/node"})
		}
	}
	parts, err := os.ReadDir("../pkg/runtime/native")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range parts { // the daemon links no part of the native runtime either
		if d.IsDir() && d.Name() != "testdata" {
			rules = append(rules, struct{ pkg, not string }{"internal/daemon", "pkg/runtime/native/" + d.Name()})
		}
	}
	if len(rules) < 20 {
		t.Fatalf("only %d rules: the rooms of pkg/node were not found", len(rules))
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-deps", "../"+r.pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", r.pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == "github.com/nexrun/nex/"+r.not {
				t.Errorf("%s imports %s (directly or through another package)", r.pkg, r.not)
			}
		}
	}
}
