package funclen

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/attestload/attestload/internal/sharedtest"
)

// allowed lists the functions that were over MaxLines when this test was written, as "dir/file.go Name" (methods
// as "Type.Name"). Split a function and remove its entry; the test fails on an entry that is no longer needed, so
// the list only shrinks. Never add to it.
var allowed = map[string]bool{}

func TestNoLongFunctions(t *testing.T) {
	root := sharedtest.RepoRoot(t)
	long := longFunctions(t, root)
	for _, f := range long {
		if !allowed[f.key] {
			t.Errorf("%s is %d lines, over %d: split it into named steps", f.key, f.lines, MaxLines)
		}
	}
	for key := range allowed {
		if !slices.ContainsFunc(long, func(f longFunc) bool { return f.key == key }) {
			t.Errorf("%s is no longer over %d lines (or is gone): remove it from the allow-list", key, MaxLines)
		}
	}
}

// The walk must see long functions, methods of generic types, and skip test files and testdata.
func TestLongFunctionsFound(t *testing.T) {
	dir := t.TempDir()
	body := strings.Repeat("\t_ = 1\n", MaxLines-2)
	write := func(name, src string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module x\n")
	write("a/a.go", "package a\n\nfunc fits() {\n"+body+"}\n\nfunc long() {\n"+body+"\t_ = 2\n}\n\n"+
		"type g[T any] struct{}\n\nfunc (*g[T]) m() {\n"+body+"\t_ = 2\n}\n")
	write("a/a_test.go", "package a\n\nfunc longTest() {\n"+body+"\t_ = 2\n}\n")
	write("a/testdata/b.go", "package b\n\nfunc longData() {\n"+body+"\t_ = 2\n}\n")
	var got []string
	for _, f := range longFunctions(t, dir) {
		got = append(got, f.key)
	}
	want := []string{"a/a.go long", "a/a.go g.m"}
	if !slices.Equal(got, want) {
		t.Errorf("long functions %q, want %q", got, want)
	}
}

type longFunc struct {
	key   string
	lines int
}

// longFunctions parses every non-test .go file under root (but testdata and hidden directories) and returns the
// functions over MaxLines lines.
func longFunctions(t *testing.T, root string) []longFunc {
	t.Helper()
	var out []longFunc
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
			if n > MaxLines {
				out = append(out, longFunc{key: filepath.ToSlash(rel) + " " + funcName(fd), lines: n})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// funcName is Name for a function and Type.Name for a method.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	typ := fd.Recv.List[0].Type
	if star, ok := typ.(*ast.StarExpr); ok {
		typ = star.X
	}
	switch g := typ.(type) {
	case *ast.IndexExpr:
		typ = g.X
	case *ast.IndexListExpr:
		typ = g.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}
