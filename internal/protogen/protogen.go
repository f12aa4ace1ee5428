// Package protogen generates Go types for a strata contract without protoc:
// it compiles the .proto files with the contracts package (protocompile) and
// runs protoc-gen-go's generator as a library.
//
// # Why not protoc
//
// Reducer authors need Go types for their contract's messages, and strata
// already carries a protobuf compiler. Driving protoc-gen-go in process means
// one `strata reducer gen` (or `go generate`) instead of installing protoc
// and a plugin at matching versions.
package protogen

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/strata-state/strata/contracts"
)

// File is one generated Go file.
type File struct {
	// Name is the path of the file relative to the output root, e.g.
	// "fleet/v1/regional.pb.go" (protoc's paths=source_relative).
	Name string
	// Content is the formatted Go source.
	Content []byte
}

// Options tune Generate.
type Options struct {
	// Include lists more files of the contract's closure to generate, by
	// import path, besides the contract's own files: e.g.
	// "strata/v1/options.proto" to generate strata's annotations too.
	// Default: none.
	Include []string
	// GoPackages maps an import path to the Go import path of its package
	// (protoc-gen-go's M option), for files without a go_package option.
	GoPackages map[string]string
}

// Generate compiles the contract made of files, rooted at fsys (see
// contracts.Compile), and returns the Go files protoc-gen-go generates for
// files and opts.Include, with paths relative to the contract root. Imported
// files are not generated: their Go packages must exist (strata's options,
// protovalidate's rules and the well-known types do).
func Generate(ctx context.Context, fsys fs.FS, files []string, opts Options) ([]File, error) {
	c, err := contracts.Compile(ctx, fsys, files)
	if err != nil {
		return nil, err
	}
	set := c.FileDescriptorSet()
	gen := slices.Concat(files, opts.Include)
	for _, name := range gen {
		if !slices.ContainsFunc(set.File, func(f *descriptorpb.FileDescriptorProto) bool { return f.GetName() == name }) {
			return nil, fmt.Errorf("protogen: %s is not part of the contract", name)
		}
	}
	params := []string{"paths=source_relative"}
	for file, pkg := range opts.GoPackages {
		params = append(params, "M"+file+"="+pkg)
	}
	slices.Sort(params[1:])
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: gen,
		Parameter:      proto.String(strings.Join(params, ",")),
		ProtoFile:      set.File,
	}
	plugin, err := protogen.Options{}.New(req)
	if err != nil {
		return nil, fmt.Errorf("protogen: %w", err)
	}
	for _, f := range plugin.Files {
		if f.Generate {
			gengo.GenerateFile(plugin, f)
		}
	}
	plugin.SupportedFeatures = gengo.SupportedFeatures
	plugin.SupportedEditionsMinimum = gengo.SupportedEditionsMinimum
	plugin.SupportedEditionsMaximum = gengo.SupportedEditionsMaximum
	resp := plugin.Response()
	if resp.Error != nil {
		return nil, fmt.Errorf("protogen: %s", resp.GetError())
	}
	out := make([]File, 0, len(resp.File))
	for _, f := range resp.File {
		out = append(out, File{Name: f.GetName(), Content: []byte(f.GetContent())})
	}
	return out, nil
}

// WriteFiles writes files under dir, creating directories as needed, and
// leaves a file whose content is unchanged untouched (so its modification
// time stays, and build caches stay warm).
func WriteFiles(dir string, files []File) error {
	for _, f := range files {
		name := filepath.Join(dir, filepath.FromSlash(f.Name))
		if old, err := os.ReadFile(name); err == nil && string(old) == string(f.Content) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(name, f.Content, 0o644); err != nil {
			return err
		}
	}
	return nil
}
