package litegen

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file writes the StrataMerge, StrataUnmarshal, StrataSize and
// StrataAppend methods of a message.

// tagBytes returns the encoded tag of field num with wire type t, as a Go
// list of byte literals.
func tagBytes(num protoreflect.FieldNumber, t int) (string, int) {
	v := uint64(num)<<3 | uint64(t)
	var parts []string
	for v >= 0x80 {
		parts = append(parts, fmt.Sprintf("0x%02x", byte(v)|0x80))
		v >>= 7
	}
	parts = append(parts, fmt.Sprintf("0x%02x", byte(v)))
	return strings.Join(parts, ", "), len(parts)
}

func wireTypeNum(k protoreflect.Kind) int {
	switch wireType(k) {
	case "wire.Fixed32Type":
		return 5
	case "wire.Fixed64Type":
		return 1
	case "wire.BytesType":
		return 2
	}
	return 0
}

// consume returns the wire function that reads one value of kind k.
func consume(k protoreflect.Kind) string {
	switch wireType(k) {
	case "wire.Fixed32Type":
		return "wire.ConsumeFixed32"
	case "wire.Fixed64Type":
		return "wire.ConsumeFixed64"
	case "wire.BytesType":
		return "wire.ConsumeBytes"
	}
	return "wire.ConsumeVarint"
}

// fromWire converts the raw value x of kind k (as consume returns it) to
// the field's Go value.
func fromWire(gf *protogen.GeneratedFile, f *protogen.Field, x string) string {
	switch f.Desc.Kind() {
	case protoreflect.BoolKind:
		return x + " != 0"
	case protoreflect.EnumKind:
		return gf.QualifiedGoIdent(f.Enum.GoIdent) + "(int32(" + x + "))"
	case protoreflect.Int32Kind, protoreflect.Sfixed32Kind:
		return "int32(" + x + ")"
	case protoreflect.Int64Kind, protoreflect.Sfixed64Kind:
		return "int64(" + x + ")"
	case protoreflect.Uint32Kind:
		return "uint32(" + x + ")"
	case protoreflect.Sint32Kind:
		return "int32(" + gf.QualifiedGoIdent(wirePkg.Ident("DecodeZigZag")) + "(" + x + " & 0xffffffff))"
	case protoreflect.Sint64Kind:
		return gf.QualifiedGoIdent(wirePkg.Ident("DecodeZigZag")) + "(" + x + ")"
	case protoreflect.FloatKind:
		return gf.QualifiedGoIdent(mathPkg.Ident("Float32frombits")) + "(" + x + ")"
	case protoreflect.DoubleKind:
		return gf.QualifiedGoIdent(mathPkg.Ident("Float64frombits")) + "(" + x + ")"
	case protoreflect.StringKind:
		return gf.QualifiedGoIdent(wirePkg.Ident("String")) + "(" + x + ")"
	}
	return x // uint64, fixed32, fixed64, bytes
}

// appendValue returns the statement that appends the Go value v of field
// f (one element for lists and maps) to b.
func appendValue(gf *protogen.GeneratedFile, f *protogen.Field, v string) string {
	w := func(name string) string { return gf.QualifiedGoIdent(wirePkg.Ident(name)) }
	switch f.Desc.Kind() {
	case protoreflect.BoolKind:
		return "b = " + w("AppendVarint") + "(b, " + w("EncodeBool") + "(" + v + "))"
	case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return "b = " + w("AppendVarint") + "(b, " + w("EncodeZigZag") + "(int64(" + v + ")))"
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
		return "b = " + w("AppendFixed32") + "(b, uint32(" + v + "))"
	case protoreflect.FloatKind:
		return "b = " + w("AppendFixed32") + "(b, " + gf.QualifiedGoIdent(mathPkg.Ident("Float32bits")) + "(" + v + "))"
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return "b = " + w("AppendFixed64") + "(b, uint64(" + v + "))"
	case protoreflect.DoubleKind:
		return "b = " + w("AppendFixed64") + "(b, " + gf.QualifiedGoIdent(mathPkg.Ident("Float64bits")) + "(" + v + "))"
	case protoreflect.StringKind:
		return "b = " + w("AppendString") + "(b, " + v + ")"
	case protoreflect.BytesKind:
		return "b = " + w("AppendBytes") + "(b, " + v + ")"
	case protoreflect.MessageKind:
		return "b = " + w("AppendVarint") + "(b, uint64(" + v + ".StrataSize()))\nb = " + v + ".StrataAppend(b)"
	}
	return "b = " + w("AppendVarint") + "(b, uint64(" + v + "))"
}

// sizeValue returns the expression of the encoded length of the Go value v
// of field f, without its tag.
func sizeValue(gf *protogen.GeneratedFile, f *protogen.Field, v string) string {
	w := func(name string) string { return gf.QualifiedGoIdent(wirePkg.Ident(name)) }
	switch f.Desc.Kind() {
	case protoreflect.BoolKind:
		return "1"
	case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return w("SizeVarint") + "(" + w("EncodeZigZag") + "(int64(" + v + ")))"
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return "4"
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return "8"
	case protoreflect.StringKind, protoreflect.BytesKind:
		return w("SizeBytes") + "(len(" + v + "))"
	case protoreflect.MessageKind:
		return w("SizeBytes") + "(" + v + ".StrataSize())"
	}
	return w("SizeVarint") + "(uint64(" + v + "))"
}

// nonZero returns the condition under which a proto3 field without
// presence is encoded.
func nonZero(gf *protogen.GeneratedFile, f *protogen.Field, v string) string {
	switch f.Desc.Kind() {
	case protoreflect.BoolKind:
		return v
	case protoreflect.StringKind:
		return v + ` != ""`
	case protoreflect.BytesKind:
		return "len(" + v + ") > 0"
	case protoreflect.FloatKind:
		return gf.QualifiedGoIdent(mathPkg.Ident("Float32bits")) + "(" + v + ") != 0"
	case protoreflect.DoubleKind:
		return gf.QualifiedGoIdent(mathPkg.Ident("Float64bits")) + "(" + v + ") != 0"
	}
	return v + " != 0"
}

func packable(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind, protoreflect.GroupKind:
		return false
	}
	return true
}

func (g *generator) unmarshal(gf *protogen.GeneratedFile, m *protogen.Message) {
	name := strconv.Quote(string(m.Desc.FullName()))
	fe := gf.QualifiedGoIdent(wirePkg.Ident("FieldError"))
	fail := func(num string) string {
		return "return &" + fe + "{Message: " + name + ", Field: " + num + ", Err: err}"
	}
	gf.P("// StrataUnmarshal decodes the protobuf encoding b into m, replacing its")
	gf.P("// contents. Strings and bytes fields alias b. Unknown fields are skipped.")
	gf.P("func (m *", m.GoIdent, ") StrataUnmarshal(b []byte) error {")
	var spares []*protogen.Field
	for _, f := range m.Fields {
		if spared(f) {
			spares = append(spares, f)
		}
	}
	for i, f := range spares {
		gf.P("s", i, " := m.", fieldName(f))
		gf.P("if s", i, " == nil {")
		gf.P("s", i, " = m.", spareName(f))
		gf.P("}")
	}
	gf.P("*m = ", m.GoIdent, "{}")
	for i, f := range spares {
		gf.P("m.", spareName(f), " = s", i)
	}
	gf.P("if b = m.strataFast(b); len(b) == 0 {")
	gf.P("return nil")
	gf.P("}")
	gf.P("return m.strataSlow(b)")
	gf.P("}")
	gf.P()
	gf.P("// StrataMerge decodes the protobuf encoding b into m, merging with its")
	gf.P("// contents as protobuf does. Strings and bytes fields alias b.")
	gf.P("func (m *", m.GoIdent, ") StrataMerge(b []byte) error {")
	gf.P("if b = m.strataFast(b); len(b) == 0 {")
	gf.P("return nil")
	gf.P("}")
	gf.P("return m.strataSlow(b)")
	gf.P("}")
	gf.P()
	gf.P("// strataSlow decodes b field by field, in any order.")
	gf.P("func (m *", m.GoIdent, ") strataSlow(b []byte) error {")
	gf.P("for len(b) > 0 {")
	gf.P("num, typ, n, err := ", wirePkg.Ident("ConsumeTag"), "(b)")
	gf.P("if err != nil {")
	gf.P(fail("0"))
	gf.P("}")
	gf.P("b = b[n:]")
	gf.P("switch {")
	for _, f := range m.Fields {
		num := strconv.Itoa(int(f.Desc.Number()))
		fn := "m." + fieldName(f)
		k := f.Desc.Kind()
		switch {
		case f.Desc.IsMap():
			key, val := f.Message.Fields[0], f.Message.Fields[1]
			gf.P("case num == ", num, " && typ == ", wirePkg.Ident("BytesType"), ":")
			gf.P("v, n, err := ", wirePkg.Ident("ConsumeBytes"), "(b)")
			gf.P("if err != nil {", fail(num), "}")
			gf.P("b = b[n:]")
			gf.P("var mk ", scalarType(gf, key))
			gf.P("var mv ", elemType(gf, val))
			gf.P("for len(v) > 0 {")
			gf.P("enum, etyp, n, err := ", wirePkg.Ident("ConsumeTag"), "(v)")
			gf.P("if err != nil {", fail(num), "}")
			gf.P("v = v[n:]")
			gf.P("switch {")
			gf.P("case enum == 1 && etyp == ", wireType(key.Desc.Kind()), ":")
			gf.P("x, n, err := ", consume(key.Desc.Kind()), "(v)")
			gf.P("if err != nil {", fail(num), "}")
			gf.P("v = v[n:]")
			gf.P("mk = ", fromWire(gf, key, "x"))
			gf.P("case enum == 2 && etyp == ", wireType(val.Desc.Kind()), ":")
			gf.P("x, n, err := ", consume(val.Desc.Kind()), "(v)")
			gf.P("if err != nil {", fail(num), "}")
			gf.P("v = v[n:]")
			if val.Message != nil {
				gf.P("mv = new(", val.Message.GoIdent, ")")
				gf.P("if err := mv.StrataMerge(x); err != nil {", fail(num), "}")
			} else {
				gf.P("mv = ", fromWire(gf, val, "x"))
			}
			gf.P("default:")
			gf.P("n, err := ", wirePkg.Ident("Skip"), "(v, etyp)")
			gf.P("if err != nil {", fail(num), "}")
			gf.P("v = v[n:]")
			gf.P("}")
			gf.P("}")
			if val.Message != nil {
				gf.P("if mv == nil {")
				gf.P("mv = new(", val.Message.GoIdent, ")")
				gf.P("}")
			}
			gf.P("if ", fn, " == nil {")
			gf.P(fn, " = map[", scalarType(gf, key), "]", elemType(gf, val), "{}")
			gf.P("}")
			gf.P(fn, "[mk] = mv")
			continue
		case f.Desc.IsList() && packable(k):
			gf.P("case num == ", num, " && typ == ", wirePkg.Ident("BytesType"), ":")
			gf.P("v, n, err := ", wirePkg.Ident("ConsumeBytes"), "(b)")
			gf.P("if err != nil {", fail(num), "}")
			gf.P("b = b[n:]")
			gf.P("for len(v) > 0 {")
			gf.P("x, n, err := ", consume(k), "(v)")
			gf.P("if err != nil {", fail(num), "}")
			gf.P("v = v[n:]")
			gf.P(fn, " = append(", fn, ", ", fromWire(gf, f, "x"), ")")
			gf.P("}")
		}
		gf.P("case num == ", num, " && typ == ", wireType(k), ":")
		gf.P("v, n, err := ", consume(k), "(b)")
		gf.P("if err != nil {", fail(num), "}")
		gf.P("b = b[n:]")
		switch {
		case f.Message != nil && f.Desc.IsList():
			gf.P("e := new(", f.Message.GoIdent, ")")
			gf.P("if err := e.StrataMerge(v); err != nil {", fail(num), "}")
			gf.P(fn, " = append(", fn, ", e)")
		case f.Message != nil:
			gf.P("if err := m.", takeName(f), "(v); err != nil {", fail(num), "}")
			clearSiblings(gf, f)
		case f.Desc.IsList():
			gf.P(fn, " = append(", fn, ", ", fromWire(gf, f, "v"), ")")
		case f.Desc.HasPresence():
			gf.P("x := ", fromWire(gf, f, "v"))
			gf.P(fn, " = &x")
			clearSiblings(gf, f)
		default:
			gf.P(fn, " = ", fromWire(gf, f, "v"))
		}
	}
	gf.P("default:")
	gf.P("n, err := ", wirePkg.Ident("Skip"), "(b, typ)")
	gf.P("if err != nil {", fail("num"), "}")
	gf.P("b = b[n:]")
	gf.P("}")
	gf.P("}")
	gf.P("return nil")
	gf.P("}")
	gf.P()
}

// fast writes strataFast: the decoding of the fields as every protobuf
// encoder writes them (in number order, each once, in their shortest
// form), as straight-line code. Under wazero with timeouts on, every loop
// iteration and taken branch of a guest costs a check; a loop with a
// switch over field numbers costs several per field. strataFast stops at
// the first field it does not expect, and StrataMerge's loop decodes the
// rest.
func (g *generator) fast(gf *protogen.GeneratedFile, m *protogen.Message) {
	gf.P("// strataFast decodes the leading fields of b that are in number order,")
	gf.P("// each in one flat if without else, and returns the rest of b. A field")
	gf.P("// it cannot take (a long length, a bad varint) stops it: no later field")
	gf.P("// has that tag.")
	gf.P("func (m *", m.GoIdent, ") strataFast(b []byte) []byte {")
	gf.P("i := 0")
	fields := append([]*protogen.Field(nil), m.Fields...)
	sortByNumber(fields)
	for _, f := range fields {
		if f.Desc.IsList() || f.Desc.IsMap() || f.Desc.Number() >= 16 || (f.Oneof != nil && !f.Oneof.Desc.IsSynthetic()) {
			continue
		}
		k := f.Desc.Kind()
		tag, _ := tagBytes(f.Desc.Number(), wireTypeNum(k))
		fn := "m." + fieldName(f)
		set := func(v string) {
			if f.Desc.HasPresence() && f.Message == nil {
				gf.P("x := ", v)
				gf.P(fn, " = &x")
			} else {
				gf.P(fn, " = ", v)
			}
		}
		gf.P("// ", f.Desc.Name())
		switch wireTypeNum(k) {
		case 2:
			gf.P("if i+1 < len(b) && b[i] == ", tag, " && b[i+1] < 0x80 && i+2+int(b[i+1]) <= len(b) {")
			gf.P("n := int(b[i+1])")
			switch {
			case f.Message != nil && flat(f.Message):
				// A small message of scalars (a Timestamp, a Duration):
				// decoded inline into a local, then stored once.
				gf.P("done := false")
				gf.P("if ", fn, " == nil {")
				gf.P("var t ", f.Message.GoIdent)
				gf.P("sub, j := b[i+2:i+2+n], 0")
				for _, sf := range sortedFields(f.Message) {
					g.flatField(gf, sf)
				}
				gf.P("if j == len(sub) {")
				gf.P("x := m.", spareName(f))
				gf.P("if x == nil {")
				gf.P("x = new(", f.Message.GoIdent, ")")
				gf.P("} else {")
				gf.P("m.", spareName(f), " = nil")
				gf.P("}")
				gf.P("*x = t")
				gf.P(fn, " = x")
				gf.P("done = true")
				gf.P("}")
				gf.P("}")
				gf.P("if !done && m.", takeName(f), "(b[i+2:i+2+n]) != nil {")
				gf.P("return b[i:]")
				gf.P("}")
			case f.Message != nil:
				gf.P("if m.", takeName(f), "(b[i+2:i+2+n]) != nil {")
				gf.P("return b[i:]")
				gf.P("}")
			case k == protoreflect.StringKind:
				set(gf.QualifiedGoIdent(wirePkg.Ident("StringAt")) + "(b, i+2, n)")
			default:
				set("b[i+2 : i+2+n : i+2+n]")
			}
			gf.P("i += 2 + n")
			gf.P("}")
		case 0:
			// One byte inline (enums, bools, small numbers); longer
			// varints through a call.
			gf.P("if i+1 < len(b) && b[i] == ", tag, " && b[i+1] < 0x80 {")
			gf.P("v := uint64(b[i+1])")
			set(fromWire(gf, f, "v"))
			gf.P("i += 2")
			gf.P("}")
			if is64(k) {
				c, v := varint5("b", "i")
				gf.P("if i+5 < len(b) && b[i] == ", tag, " && ", c, " {")
				gf.P("v := ", v)
				set(fromWire(gf, f, "v"))
				gf.P("i += 6")
				gf.P("}")
			}
			gf.P("if i+1 < len(b) && b[i] == ", tag, " {")
			gf.P("if v, n := ", wirePkg.Ident("Varint"), "(b[i+1:]); n > 0 {")
			set(fromWire(gf, f, "v"))
			gf.P("i += 1 + n")
			gf.P("}")
			gf.P("}")
		case 5:
			gf.P("if i+4 < len(b) && b[i] == ", tag, " {")
			gf.P("v := uint32(b[i+1]) | uint32(b[i+2])<<8 | uint32(b[i+3])<<16 | uint32(b[i+4])<<24")
			set(fromWire(gf, f, "v"))
			gf.P("i += 5")
			gf.P("}")
		case 1:
			gf.P("if i+8 < len(b) && b[i] == ", tag, " {")
			gf.P("v := uint64(b[i+1]) | uint64(b[i+2])<<8 | uint64(b[i+3])<<16 | uint64(b[i+4])<<24 | uint64(b[i+5])<<32 | uint64(b[i+6])<<40 | uint64(b[i+7])<<48 | uint64(b[i+8])<<56")
			set(fromWire(gf, f, "v"))
			gf.P("i += 9")
			gf.P("}")
		}
	}
	gf.P("return b[i:]")
	gf.P("}")
	gf.P()
}

// flat reports whether m has only singular scalar fields numbered below
// 16, so that a parent can decode it inline.
func flat(m *protogen.Message) bool {
	for _, f := range m.Fields {
		if f.Desc.IsList() || f.Desc.IsMap() || f.Message != nil || f.Desc.Number() >= 16 || f.Oneof != nil {
			return false
		}
	}
	return true
}

func sortedFields(m *protogen.Message) []*protogen.Field {
	fields := append([]*protogen.Field(nil), m.Fields...)
	sortByNumber(fields)
	return fields
}

// flatField decodes field f of a flat message from sub at j into t.
func (g *generator) flatField(gf *protogen.GeneratedFile, f *protogen.Field) {
	k := f.Desc.Kind()
	tag, _ := tagBytes(f.Desc.Number(), wireTypeNum(k))
	fn := "t." + fieldName(f)
	set := func(v string) {
		if f.Desc.HasPresence() {
			gf.P("x := ", v)
			gf.P(fn, " = &x")
		} else {
			gf.P(fn, " = ", v)
		}
	}
	switch wireTypeNum(k) {
	case 2:
		gf.P("if j+1 < len(sub) && sub[j] == ", tag, " && sub[j+1] < 0x80 && j+2+int(sub[j+1]) <= len(sub) {")
		gf.P("n := int(sub[j+1])")
		if k == protoreflect.StringKind {
			set(gf.QualifiedGoIdent(wirePkg.Ident("StringAt")) + "(sub, j+2, n)")
		} else {
			set("sub[j+2 : j+2+n : j+2+n]")
		}
		gf.P("j += 2 + n")
		gf.P("}")
	case 0:
		gf.P("if j+1 < len(sub) && sub[j] == ", tag, " && sub[j+1] < 0x80 {")
		gf.P("v := uint64(sub[j+1])")
		set(fromWire(gf, f, "v"))
		gf.P("j += 2")
		gf.P("}")
		if is64(k) {
			c, v := varint5("sub", "j")
			gf.P("if j+5 < len(sub) && sub[j] == ", tag, " && ", c, " {")
			gf.P("v := ", v)
			set(fromWire(gf, f, "v"))
			gf.P("j += 6")
			gf.P("}")
		}
		gf.P("if j+1 < len(sub) && sub[j] == ", tag, " {")
		gf.P("if v, n := ", wirePkg.Ident("Varint"), "(sub[j+1:]); n > 0 {")
		set(fromWire(gf, f, "v"))
		gf.P("j += 1 + n")
		gf.P("}")
		gf.P("}")
	case 5:
		gf.P("if j+4 < len(sub) && sub[j] == ", tag, " {")
		gf.P("v := uint32(sub[j+1]) | uint32(sub[j+2])<<8 | uint32(sub[j+3])<<16 | uint32(sub[j+4])<<24")
		set(fromWire(gf, f, "v"))
		gf.P("j += 5")
		gf.P("}")
	case 1:
		gf.P("if j+8 < len(sub) && sub[j] == ", tag, " {")
		gf.P("v := uint64(sub[j+1]) | uint64(sub[j+2])<<8 | uint64(sub[j+3])<<16 | uint64(sub[j+4])<<24 | uint64(sub[j+5])<<32 | uint64(sub[j+6])<<40 | uint64(sub[j+7])<<48 | uint64(sub[j+8])<<56")
		set(fromWire(gf, f, "v"))
		gf.P("j += 9")
		gf.P("}")
	}
}

// varint5 returns the statement checking for a 5-byte varint at x[at+1:]
// and its value expression: the length of Unix times in seconds (int64
// fields of Timestamps), decoded inline without a call.
func varint5(x, at string) (cond, val string) {
	c := x + "[" + at + "+1]&" + x + "[" + at + "+2]&" + x + "[" + at + "+3]&" + x + "[" + at + "+4]&0x80 != 0 && " + x + "[" + at + "+5] < 0x80"
	v := "uint64(" + x + "[" + at + "+1]&0x7f) | uint64(" + x + "[" + at + "+2]&0x7f)<<7 | uint64(" + x + "[" + at + "+3]&0x7f)<<14 | uint64(" + x + "[" + at + "+4]&0x7f)<<21 | uint64(" + x + "[" + at + "+5])<<28"
	return c, v
}

func is64(k protoreflect.Kind) bool {
	return k == protoreflect.Int64Kind || k == protoreflect.Uint64Kind || k == protoreflect.Sint64Kind
}

// clearSiblings clears the other members of f's oneof, if it is in one:
// the last member on the wire wins, as in protobuf.
func clearSiblings(gf *protogen.GeneratedFile, f *protogen.Field) {
	if f.Oneof == nil || f.Oneof.Desc.IsSynthetic() {
		return
	}
	for _, o := range f.Oneof.Fields {
		if o != f {
			gf.P("m.", fieldName(o), " = nil")
		}
	}
}

func takeName(f *protogen.Field) string { return "strataMerge" + f.GoName }

// take writes, per singular message field, the method that merges an
// occurrence of the field into its message, taking the spare message (or
// allocating one) when the field is not set yet.
func (g *generator) take(gf *protogen.GeneratedFile, m *protogen.Message) {
	for _, f := range m.Fields {
		if !spared(f) {
			continue
		}
		fn := "m." + fieldName(f)
		gf.P("// ", takeName(f), " merges the encoding b into ", fn, ", reusing the spare message.")
		gf.P("func (m *", m.GoIdent, ") ", takeName(f), "(b []byte) error {")
		gf.P("if ", fn, " != nil {")
		gf.P("return ", fn, ".StrataMerge(b)")
		gf.P("}")
		gf.P("if m.", spareName(f), " != nil {")
		gf.P(fn, ", m.", spareName(f), " = m.", spareName(f), ", nil")
		gf.P("return ", fn, ".StrataUnmarshal(b)")
		gf.P("}")
		gf.P(fn, " = new(", f.Message.GoIdent, ")")
		gf.P("return ", fn, ".StrataMerge(b)")
		gf.P("}")
		gf.P()
	}
}

func (g *generator) size(gf *protogen.GeneratedFile, m *protogen.Message) {
	gf.P("// StrataSize returns the length of m's protobuf encoding.")
	gf.P("func (m *", m.GoIdent, ") StrataSize() int {")
	gf.P("if m == nil {")
	gf.P("return 0")
	gf.P("}")
	gf.P("n := 0")
	for _, f := range m.Fields {
		fn := "m." + fieldName(f)
		k := f.Desc.Kind()
		_, tl := tagBytes(f.Desc.Number(), wireTypeNum(k))
		tag := strconv.Itoa(tl)
		switch {
		case f.Desc.IsMap():
			key, val := f.Message.Fields[0], f.Message.Fields[1]
			_, tl := tagBytes(f.Desc.Number(), 2)
			gf.P("for k, v := range ", fn, " {")
			gf.P("_, _ = k, v")
			gf.P("e := 2 + ", sizeValue(gf, key, "k"), " + ", sizeValue(gf, val, "v"))
			gf.P("n += ", tl, " + ", wirePkg.Ident("SizeBytes"), "(e)")
			gf.P("}")
		case f.Desc.IsList() && packable(k):
			_, tl := tagBytes(f.Desc.Number(), 2)
			gf.P("if len(", fn, ") > 0 {")
			gf.P("p := 0")
			gf.P("for _, v := range ", fn, " {")
			gf.P("_ = v")
			gf.P("p += ", sizeValue(gf, f, "v"))
			gf.P("}")
			gf.P("n += ", tl, " + ", wirePkg.Ident("SizeBytes"), "(p)")
			gf.P("}")
		case f.Desc.IsList():
			gf.P("for _, v := range ", fn, " {")
			gf.P("n += ", tag, " + ", sizeValue(gf, f, "v"))
			gf.P("}")
		case f.Message != nil || f.Desc.HasPresence():
			v := fn
			if f.Message == nil {
				v = "*" + fn
			}
			gf.P("if ", fn, " != nil {")
			gf.P("n += ", tag, " + ", sizeValue(gf, f, v))
			gf.P("}")
		default:
			gf.P("if ", nonZero(gf, f, fn), " {")
			gf.P("n += ", tag, " + ", sizeValue(gf, f, fn))
			gf.P("}")
		}
	}
	gf.P("return n")
	gf.P("}")
	gf.P()
}

func (g *generator) marshal(gf *protogen.GeneratedFile, m *protogen.Message) {
	gf.P("// StrataAppend appends m's protobuf encoding to b: fields in number")
	gf.P("// order (oneof members last, as protobuf-go writes them), map entries")
	gf.P("// sorted by key, so equal messages encode equally.")
	gf.P("func (m *", m.GoIdent, ") StrataAppend(b []byte) []byte {")
	gf.P("if m == nil {")
	gf.P("return b")
	gf.P("}")
	fields := append([]*protogen.Field(nil), m.Fields...)
	sortByNumber(fields)
	for _, f := range fields {
		fn := "m." + fieldName(f)
		k := f.Desc.Kind()
		tag, _ := tagBytes(f.Desc.Number(), wireTypeNum(k))
		switch {
		case f.Desc.IsMap():
			key, val := f.Message.Fields[0], f.Message.Fields[1]
			tag, _ := tagBytes(f.Desc.Number(), 2)
			ktag, _ := tagBytes(1, wireTypeNum(key.Desc.Kind()))
			vtag, _ := tagBytes(2, wireTypeNum(val.Desc.Kind()))
			gf.P("if len(", fn, ") > 0 {")
			gf.P("keys := make([]", scalarType(gf, key), ", 0, len(", fn, "))")
			gf.P("for k := range ", fn, " {")
			gf.P("keys = append(keys, k)")
			gf.P("}")
			if key.Desc.Kind() == protoreflect.BoolKind {
				gf.P(slicesPkg.Ident("SortFunc"), "(keys, func(a, b bool) int {")
				gf.P("if a == b {")
				gf.P("return 0")
				gf.P("}")
				gf.P("if b {")
				gf.P("return -1")
				gf.P("}")
				gf.P("return 1")
				gf.P("})")
			} else {
				gf.P(slicesPkg.Ident("Sort"), "(keys)")
			}
			gf.P("for _, k := range keys {")
			gf.P("v := ", fn, "[k]")
			gf.P("b = append(b, ", tag, ")")
			gf.P("b = ", wirePkg.Ident("AppendVarint"), "(b, uint64(2 + ", sizeValue(gf, key, "k"), " + ", sizeValue(gf, val, "v"), "))")
			gf.P("b = append(b, ", ktag, ")")
			gf.P(appendValue(gf, key, "k"))
			gf.P("b = append(b, ", vtag, ")")
			gf.P(appendValue(gf, val, "v"))
			gf.P("}")
			gf.P("}")
		case f.Desc.IsList() && packable(k):
			tag, _ := tagBytes(f.Desc.Number(), 2)
			gf.P("if len(", fn, ") > 0 {")
			gf.P("p := 0")
			gf.P("for _, v := range ", fn, " {")
			gf.P("_ = v")
			gf.P("p += ", sizeValue(gf, f, "v"))
			gf.P("}")
			gf.P("b = append(b, ", tag, ")")
			gf.P("b = ", wirePkg.Ident("AppendVarint"), "(b, uint64(p))")
			gf.P("for _, v := range ", fn, " {")
			gf.P(appendValue(gf, f, "v"))
			gf.P("}")
			gf.P("}")
		case f.Desc.IsList():
			gf.P("for _, v := range ", fn, " {")
			gf.P("b = append(b, ", tag, ")")
			gf.P(appendValue(gf, f, "v"))
			gf.P("}")
		case f.Message != nil || f.Desc.HasPresence():
			v := fn
			if f.Message == nil {
				v = "*" + fn
			}
			gf.P("if ", fn, " != nil {")
			gf.P("b = append(b, ", tag, ")")
			gf.P(appendValue(gf, f, v))
			gf.P("}")
		default:
			gf.P("if ", nonZero(gf, f, fn), " {")
			gf.P("b = append(b, ", tag, ")")
			gf.P(appendValue(gf, f, fn))
			gf.P("}")
		}
	}
	gf.P("return b")
	gf.P("}")
	gf.P()
}

// sortByNumber sorts fields in the order protobuf-go writes them: fields
// outside oneofs first, by number; then the members of each oneof, oneofs
// in declaration order, members by number.
func sortByNumber(fields []*protogen.Field) {
	inOneof := func(f *protogen.Field) bool { return f.Oneof != nil && !f.Oneof.Desc.IsSynthetic() }
	less := func(x, y *protogen.Field) bool {
		if inOneof(x) != inOneof(y) {
			return !inOneof(x)
		}
		if inOneof(x) && x.Oneof != y.Oneof {
			return x.Oneof.Desc.Index() < y.Oneof.Desc.Index()
		}
		return x.Desc.Number() < y.Desc.Number()
	}
	for i := 1; i < len(fields); i++ {
		for j := i; j > 0 && less(fields[j], fields[j-1]); j-- {
			fields[j], fields[j-1] = fields[j-1], fields[j]
		}
	}
}
