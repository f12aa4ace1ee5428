package cluster

import (
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"strings"
	"testing"
)

// TestMessageTypesAreDistinct: every msgType constant of the package has
// its own first byte. Features add message types in their own files; two
// that picked the same number (state transfer and the push path both took
// 32 once) make a node hand one feature's messages to the other's decoder.
func TestMessageTypesAreDistinct(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	// The constants need no imports: check the package without them,
	// ignoring the errors of everything that does.
	conf := types.Config{Importer: emptyImporter{}, Error: func(error) {}}
	pkg, _ := conf.Check("cluster", fset, files, nil)
	msgTypeObj := pkg.Scope().Lookup("msgType")
	if msgTypeObj == nil {
		t.Fatal("no msgType in the package")
	}
	byValue := map[int64]string{}
	n := 0
	for _, name := range pkg.Scope().Names() {
		c, ok := pkg.Scope().Lookup(name).(*types.Const)
		if !ok || !types.Identical(c.Type(), msgTypeObj.Type()) {
			continue
		}
		n++
		v, _ := constant.Int64Val(c.Val())
		if other, dup := byValue[v]; dup {
			t.Errorf("message types %s and %s are both %d", other, name, v)
		}
		byValue[v] = name
	}
	if n < 5 {
		t.Fatalf("found %d message types, want every msgType constant of the package", n)
	}
}

// emptyImporter gives every import as an empty package.
type emptyImporter struct{}

func (emptyImporter) Import(path string) (*types.Package, error) {
	return types.NewPackage(path, path[strings.LastIndex(path, "/")+1:]), nil
}
