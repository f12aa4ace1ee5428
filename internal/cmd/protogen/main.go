// Command protogen generates Go types for a strata contract, in place of
// protoc and its plugins:
//
//	go run ./internal/cmd/protogen [-dir ROOT] [-out DIR] [-include FILE]... FILE.proto...
//	go run ./internal/cmd/protogen -lite -package NAME [-importpath PATH] [-dir ROOT] -out DIR FILE.proto...
//
// Without -lite it writes protoc-gen-go's types (FILE.pb.go, with
// paths=source_relative under DIR, default ROOT). With -lite it writes the
// reflection-free types that reducers use (package litegen), all into the
// one package directory DIR.
//
// The repository's generated code comes from the go:generate lines in
// contracts/fleet/v1/generate.go, plugins/fleetv1/generate.go and
// sdk/wkt/generate.go. Reducer authors use `strata reducer gen`, which
// runs the -lite generator.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strata-state/strata/internal/litegen"
	"github.com/strata-state/strata/internal/protogen"
)

type listFlag []string

func (l *listFlag) String() string     { return fmt.Sprint(*l) }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	dir := flag.String("dir", ".", "contract import root")
	out := flag.String("out", "", "output directory (default: -dir)")
	lite := flag.Bool("lite", false, "generate reducer (lite) types")
	pkg := flag.String("package", "", "Go package name, with -lite")
	importPath := flag.String("importpath", "", "Go import path of the package, with -lite")
	var include listFlag
	flag.Var(&include, "include", "also generate this file of the contract's imports (repeatable)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: protogen [-lite -package NAME] [-dir ROOT] [-out DIR] [-include FILE]... FILE.proto...")
		os.Exit(2)
	}
	if *out == "" {
		*out = *dir
	}
	ctx := context.Background()
	var err error
	if *lite {
		var files []litegen.File
		files, err = litegen.Generate(ctx, os.DirFS(*dir), flag.Args(), litegen.Options{Package: *pkg, ImportPath: *importPath})
		for _, f := range files {
			if err == nil {
				err = protogen.WriteFiles(*out, []protogen.File{{Name: filepath.Base(f.Name), Content: f.Content}})
			}
		}
	} else {
		var files []protogen.File
		files, err = protogen.Generate(ctx, os.DirFS(*dir), flag.Args(), protogen.Options{Include: include})
		if err == nil {
			err = protogen.WriteFiles(*out, files)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "protogen:", err)
		os.Exit(1)
	}
}
