// Package litegen generates the Go types that reducers use for a strata
// contract: plain structs with reflection-free protobuf encoding on top of
// package sdk/wire, and methods naming their table or record.
//
// # Why not protoc-gen-go's types
//
// Inside a reducer, protobuf-go's runtime made modules of 7 MB that loaded
// in over 100 ms from the compilation cache, and decoded about 4 µs per row
// under wazero with timeouts on, far beyond strata's budgets (100 ms to
// ready, 150 ms for 100,000 rows). These types cost a few hundred bytes of
// code per message, and decode strings without copying (see sdk/wire).
// protoc-gen-go's types remain the choice outside reducers.
//
// # What is supported
//
// proto3 files: every scalar type, enums, strings, bytes, messages,
// repeated fields (packed or not), maps, `optional` fields (as pointers),
// oneofs (each member a pointer field; decoding one clears the others), and
// the well-known types of package sdk/wkt (Timestamp, Duration, Empty,
// FieldMask and the wrappers). Other well-known types are reported as
// unsupported.
package litegen

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/strata-state/strata/contracts"
)

// WKTImportPath is the Go package of the well-known types' lite versions.
const WKTImportPath = "github.com/strata-state/strata/sdk/wkt"

// wktFiles are the well-known types the lite generator supports.
var wktFiles = []string{
	"google/protobuf/timestamp.proto",
	"google/protobuf/duration.proto",
	"google/protobuf/empty.proto",
	"google/protobuf/field_mask.proto",
	"google/protobuf/wrappers.proto",
}

// WKTFiles returns the well-known type files that sdk/wkt holds.
func WKTFiles() []string { return slices.Clone(wktFiles) }

// Options tune Generate.
type Options struct {
	// Package is the Go package name of the generated files. Required.
	Package string
	// ImportPath is the Go import path of the generated package. It only
	// needs to be right when generating sdk/wkt itself; default
	// "strata.invalid/contract".
	ImportPath string
}

// File is one generated Go file.
type File struct {
	// Name is the file name, e.g. "fleet_v1_regional.strata.go".
	Name string
	// Content is the formatted Go source.
	Content []byte
}

// Generate compiles the contract made of files, rooted at fsys (see
// contracts.Compile), and returns the lite Go types of every message and
// enum of the contract's own files (the files given and those they import,
// except strata's options, protovalidate's rules and google/protobuf
// files), all in one Go package.
func Generate(ctx context.Context, fsys fs.FS, files []string, opts Options) ([]File, error) {
	if opts.Package == "" {
		return nil, fmt.Errorf("litegen: no Go package name")
	}
	if opts.ImportPath == "" {
		opts.ImportPath = "strata.invalid/contract"
	}
	c, err := contracts.Compile(ctx, fsys, files)
	if err != nil {
		return nil, err
	}
	meta := map[protoreflect.FullName]*contracts.Schema{}
	for _, s := range slices.Concat(c.Tables(), c.Records()) {
		meta[s.Desc.FullName()] = s
	}
	set := c.FileDescriptorSet()
	var gen, params []string
	wkt := opts.ImportPath == WKTImportPath
	for _, f := range set.File {
		name := f.GetName()
		switch {
		case wkt && slices.Contains(wktFiles, name):
			gen = append(gen, name)
			params = append(params, "M"+name+"="+WKTImportPath+";wkt")
		case slices.Contains(wktFiles, name):
			params = append(params, "M"+name+"="+WKTImportPath+";wkt")
		case strings.HasPrefix(name, "google/protobuf/"), name == contracts.OptionsFile, strings.HasPrefix(name, "buf/validate/"):
			params = append(params, "M"+name+"=strata.invalid/unsupported/"+strings.TrimSuffix(name, ".proto"))
		default:
			if wkt {
				return nil, fmt.Errorf("litegen: %s: only well-known types go to %s", name, WKTImportPath)
			}
			gen = append(gen, name)
			params = append(params, "M"+name+"="+opts.ImportPath+";"+opts.Package)
		}
	}
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: gen,
		Parameter:      proto.String(strings.Join(params, ",")),
		ProtoFile:      set.File,
	}
	plugin, err := protogen.Options{}.New(req)
	if err != nil {
		return nil, fmt.Errorf("litegen: %w", err)
	}
	g := &generator{meta: meta}
	var out []File
	for _, f := range plugin.Files {
		if !f.Generate {
			continue
		}
		if f.Desc.Syntax() != protoreflect.Proto3 {
			return nil, fmt.Errorf("litegen: %s: only proto3 files are supported", f.Desc.Path())
		}
		name := strings.ReplaceAll(strings.TrimSuffix(f.Desc.Path(), ".proto"), "/", "_") + ".strata.go"
		if wkt {
			name = path.Base(strings.TrimSuffix(f.Desc.Path(), ".proto")) + ".strata.go"
		}
		gf := plugin.NewGeneratedFile(name, f.GoImportPath)
		if err := g.file(gf, f); err != nil {
			return nil, err
		}
		content, err := gf.Content()
		if err != nil {
			return nil, fmt.Errorf("litegen: %s: %w", name, err)
		}
		out = append(out, File{Name: name, Content: content})
	}
	return out, nil
}

const (
	wirePkg    = protogen.GoImportPath("github.com/strata-state/strata/sdk/wire")
	mathPkg    = protogen.GoImportPath("math")
	strconvPkg = protogen.GoImportPath("strconv")
	slicesPkg  = protogen.GoImportPath("slices")
)

type generator struct {
	meta map[protoreflect.FullName]*contracts.Schema
}

func (g *generator) file(gf *protogen.GeneratedFile, f *protogen.File) error {
	gf.P("// Code generated by strata reducer gen. DO NOT EDIT.")
	gf.P("// source: ", f.Desc.Path())
	gf.P()
	gf.P("package ", f.GoPackageName)
	gf.P()
	for _, e := range f.Enums {
		g.enum(gf, e)
	}
	for _, m := range f.Messages {
		if err := g.message(gf, m); err != nil {
			return err
		}
	}
	return nil
}

func (g *generator) enum(gf *protogen.GeneratedFile, e *protogen.Enum) {
	leading(gf, e.Comments, e.GoIdent.GoName+" is the enum "+string(e.Desc.FullName())+".")
	gf.P("type ", e.GoIdent, " int32")
	gf.P()
	gf.P("const (")
	for _, v := range e.Values {
		gf.P(v.Comments.Leading, v.GoIdent, " ", e.GoIdent, " = ", v.Desc.Number())
	}
	gf.P(")")
	gf.P()
	gf.P("// String returns the name of the value, or its number when it has none.")
	gf.P("func (x ", e.GoIdent, ") String() string {")
	gf.P("switch x {")
	seen := map[protoreflect.EnumNumber]bool{}
	for _, v := range e.Values {
		if seen[v.Desc.Number()] {
			continue
		}
		seen[v.Desc.Number()] = true
		gf.P("case ", v.Desc.Number(), ":")
		gf.P("return ", strconv.Quote(string(v.Desc.Name())))
	}
	gf.P("}")
	gf.P("return ", strconvPkg.Ident("Itoa"), "(int(x))")
	gf.P("}")
	gf.P()
}

// leading writes the comments of a declaration, or def when it has none.
func leading(gf *protogen.GeneratedFile, c protogen.CommentSet, def string) {
	if c.Leading != "" {
		gf.P(strings.TrimSuffix(c.Leading.String(), "\n"))
	} else {
		gf.P("// ", def)
	}
}

// reserved are the method names of generated messages, which fields must
// not take.
var reserved = []string{"StrataMerge", "StrataUnmarshal", "StrataAppend", "StrataSize", "StrataTable", "StrataRecord", "StrataKey", "Reset"}

func fieldName(f *protogen.Field) string {
	if slices.Contains(reserved, f.GoName) {
		return f.GoName + "_"
	}
	return f.GoName
}

func (g *generator) message(gf *protogen.GeneratedFile, m *protogen.Message) error {
	if m.Desc.IsMapEntry() {
		return nil
	}
	for _, e := range m.Enums {
		g.enum(gf, e)
	}
	for _, f := range m.Fields {
		if f.Desc.IsExtension() {
			continue
		}
		for _, md := range []protoreflect.MessageDescriptor{f.Desc.Message(), mapValueMessage(f.Desc)} {
			if md == nil || md.IsMapEntry() {
				continue
			}
			if strings.HasPrefix(string(md.FullName()), "google.protobuf.") && !slices.Contains(wktFiles, md.ParentFile().Path()) {
				return fmt.Errorf("litegen: %s.%s: well-known type %s is not supported", m.Desc.FullName(), f.Desc.Name(), md.FullName())
			}
		}
	}

	leading(gf, m.Comments, m.GoIdent.GoName+" is the message "+string(m.Desc.FullName())+".")
	gf.P("type ", m.GoIdent, " struct {")
	for _, f := range m.Fields {
		gf.P(f.Comments.Leading, fieldName(f), " ", goType(gf, f))
	}
	for _, f := range m.Fields {
		if spared(f) {
			gf.P(spareName(f), " ", goType(gf, f), " // reused by StrataUnmarshal")
		}
	}
	gf.P("}")
	gf.P()

	g.meta1(gf, m)
	g.unmarshal(gf, m)
	g.fast(gf, m)
	g.take(gf, m)
	g.size(gf, m)
	g.marshal(gf, m)

	for _, nested := range m.Messages {
		if err := g.message(gf, nested); err != nil {
			return err
		}
	}
	return nil
}

// spared reports whether field f is a singular message field, whose
// message StrataUnmarshal keeps for reuse: under wazero with timeouts on,
// an allocation costs more than decoding a small message.
func spared(f *protogen.Field) bool {
	return f.Message != nil && !f.Desc.IsList() && !f.Desc.IsMap()
}

// spareName is the unexported field holding f's spare message.
func spareName(f *protogen.Field) string { return "strataSpare" + f.GoName }

func mapValueMessage(fd protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if fd.IsMap() {
		return fd.MapValue().Message()
	}
	return nil
}

// meta1 writes the StrataTable or StrataRecord and StrataKey methods.
func (g *generator) meta1(gf *protogen.GeneratedFile, m *protogen.Message) {
	s := g.meta[m.Desc.FullName()]
	if s == nil {
		return
	}
	name := m.GoIdent.GoName
	if s.Kind == contracts.KindTable {
		gf.P("// StrataTable returns ", strconv.Quote(s.Name), ", the contract's table of ", name, " rows.")
		gf.P("func (*", m.GoIdent, ") StrataTable() string { return ", strconv.Quote(s.Name), " }")
	} else {
		gf.P("// StrataRecord returns ", strconv.Quote(s.Name), ", the contract's record of ", name, " messages.")
		gf.P("func (*", m.GoIdent, ") StrataRecord() string { return ", strconv.Quote(s.Name), " }")
	}
	gf.P()
	var keys []string
	for _, k := range s.Key {
		keys = append(keys, string(k.Name()))
	}
	gf.P("// StrataKey returns the key of m, from its fields ", strings.Join(keys, ", "), ", as the contract computes it.")
	gf.P("func (m *", m.GoIdent, ") StrataKey() string {")
	var parts []string
	for _, k := range s.Key {
		var f *protogen.Field
		for _, ff := range m.Fields {
			if ff.Desc.Number() == k.Number() {
				f = ff
			}
		}
		v := "m." + fieldName(f)
		switch f.Desc.Kind() {
		case protoreflect.StringKind:
			parts = append(parts, v)
		case protoreflect.BoolKind:
			parts = append(parts, gf.QualifiedGoIdent(strconvPkg.Ident("FormatBool"))+"("+v+")")
		case protoreflect.EnumKind:
			parts = append(parts, v+".String()")
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
			protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			parts = append(parts, gf.QualifiedGoIdent(strconvPkg.Ident("FormatInt"))+"(int64("+v+"), 10)")
		default:
			parts = append(parts, gf.QualifiedGoIdent(strconvPkg.Ident("FormatUint"))+"(uint64("+v+"), 10)")
		}
	}
	gf.P("return ", strings.Join(parts, " + "+strconv.Quote(contracts.KeySeparator)+" + "))
	gf.P("}")
	gf.P()
}

// goType returns the Go type of field f.
func goType(gf *protogen.GeneratedFile, f *protogen.Field) string {
	if f.Desc.IsMap() {
		return "map[" + scalarType(gf, f.Message.Fields[0]) + "]" + elemType(gf, f.Message.Fields[1])
	}
	t := elemType(gf, f)
	switch {
	case f.Desc.IsList():
		return "[]" + t
	case f.Desc.HasPresence() && f.Desc.Message() == nil:
		return "*" + t
	}
	return t
}

// elemType is the Go type of one value of f: messages are pointers.
func elemType(gf *protogen.GeneratedFile, f *protogen.Field) string {
	if f.Message != nil {
		return "*" + gf.QualifiedGoIdent(f.Message.GoIdent)
	}
	return scalarType(gf, f)
}

func scalarType(gf *protogen.GeneratedFile, f *protogen.Field) string {
	switch f.Desc.Kind() {
	case protoreflect.BoolKind:
		return "bool"
	case protoreflect.EnumKind:
		return gf.QualifiedGoIdent(f.Enum.GoIdent)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return "int32"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "uint32"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return "int64"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "uint64"
	case protoreflect.FloatKind:
		return "float32"
	case protoreflect.DoubleKind:
		return "float64"
	case protoreflect.StringKind:
		return "string"
	case protoreflect.BytesKind:
		return "[]byte"
	}
	panic("litegen: unexpected kind " + f.Desc.Kind().String())
}

// wireType is the wire type of one value of kind k.
func wireType(k protoreflect.Kind) string {
	switch k {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return "wire.Fixed32Type"
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return "wire.Fixed64Type"
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind, protoreflect.GroupKind:
		return "wire.BytesType"
	}
	return "wire.VarintType"
}
