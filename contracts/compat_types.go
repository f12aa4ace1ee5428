package contracts

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// A field's type may change only when both encodings strata serves keep
// reading old data: the binary wire format (between agents, and reducers'
// envelopes) and protojson (the HTTP API). No change of type keeps both, so
// every change is FIELD_SAME_TYPE, as with buf's WIRE_JSON category; the
// message says which of the two breaks, so that a reader knows what the
// change would cost.

// fieldNameField is FieldDescriptorProto.name, for positions.
const fieldNameField = 1

// wireClass groups the kinds that decode each other's binary encoding
// (protobuf's "Updating a message type"): the varint kinds, the zigzag
// kinds, the 32- and 64-bit fixed kinds, and string with bytes.
func wireClass(k protoreflect.Kind) string {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Uint32Kind,
		protoreflect.Uint64Kind, protoreflect.BoolKind, protoreflect.EnumKind:
		return "a varint"
	case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return "a zigzag varint"
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
		return "4 fixed bytes"
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return "8 fixed bytes"
	case protoreflect.FloatKind:
		return "a 4-byte float"
	case protoreflect.DoubleKind:
		return "an 8-byte float"
	case protoreflect.StringKind, protoreflect.BytesKind:
		return "length-delimited"
	}
	return k.String()
}

// jsonForm says how protojson writes a value of f, and over what range:
// two fields whose values are written alike, over the same range, read each
// other's JSON.
func jsonForm(f protoreflect.FieldDescriptor) (form, rng string) {
	switch f.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return "a JSON number", "signed 32-bit"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "a JSON number", "unsigned 32-bit"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return "a JSON string", "signed 64-bit"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "a JSON string", "unsigned 64-bit"
	case protoreflect.FloatKind:
		return "a JSON number", "32-bit float"
	case protoreflect.DoubleKind:
		return "a JSON number", "64-bit float"
	case protoreflect.BoolKind:
		return "true or false", ""
	case protoreflect.StringKind:
		return "a JSON string", "text"
	case protoreflect.BytesKind:
		return "a JSON string", "base64"
	case protoreflect.EnumKind:
		return "a JSON string", "names of " + string(f.Enum().FullName())
	}
	if f.Message() != nil {
		return "a JSON object", string(f.Message().FullName())
	}
	return f.Kind().String(), ""
}

// typeChange says which encodings a change of a field's type from o to n
// breaks, for the FIELD_SAME_TYPE message, e.g. "wire compatible, but not
// JSON compatible: uint32 is a JSON number, int64 a JSON string".
func typeChange(o, n protoreflect.FieldDescriptor) string {
	if o.IsMap() && n.IsMap() {
		if fieldType(o.MapKey()) != fieldType(n.MapKey()) {
			return "map key " + typeChange(o.MapKey(), n.MapKey())
		}
		return "map value " + typeChange(o.MapValue(), n.MapValue())
	}
	ot, nt := typeName(o), typeName(n)
	if o.Message() != nil || n.Message() != nil {
		return "a different message type: readers decode it by another schema, on the wire and in JSON"
	}
	wire := wireClass(o.Kind()) == wireClass(n.Kind())
	of, or := jsonForm(o)
	nf, nr := jsonForm(n)
	var why string
	switch {
	case of != nf:
		why = fmt.Sprintf("%s is %s, %s %s", ot, of, nt, nf)
	case or != nr:
		why = fmt.Sprintf("both are %s, but %s takes %s values and %s %s values", of, ot, or, nt, nr)
	}
	switch {
	case wire && why == "":
		return "wire and JSON compatible"
	case wire:
		return "wire compatible, but not JSON compatible: " + why
	case why == "":
		return fmt.Sprintf("JSON compatible, but not wire compatible: %s is %s on the wire, %s %s", ot, wireClass(o.Kind()), nt, wireClass(n.Kind()))
	}
	return fmt.Sprintf("neither wire nor JSON compatible: %s is %s on the wire, %s %s; in JSON %s", ot, wireClass(o.Kind()), nt, wireClass(n.Kind()), why)
}

// fieldDecl writes f as a .proto declaration, e.g. `repeated string zones
// = 4;` or `map<string, int32> labels = 8;`.
func fieldDecl(f protoreflect.FieldDescriptor) string {
	var b strings.Builder
	switch {
	case f.IsMap():
	case f.IsList():
		b.WriteString("repeated ")
	case f.HasOptionalKeyword() && f.ParentFile().Syntax() == protoreflect.Proto3:
		b.WriteString("optional ")
	}
	fmt.Fprintf(&b, "%s %s = %d;", fieldType(f), f.Name(), f.Number())
	return b.String()
}

// replaceHint is the fix of a field whose type or cardinality changed:
// restore it, or add the new form as a new field and reserve the old one.
func replaceHint(o, n protoreflect.FieldDescriptor) string {
	md := n.ContainingMessage()
	num := nextFieldNumber(md)
	var b strings.Builder
	switch {
	case n.IsMap():
	case n.IsList():
		b.WriteString("repeated ")
	}
	fmt.Fprintf(&b, "%s %s_v2 = %d;", fieldType(n), n.Name(), num)
	return fmt.Sprintf("restore it as `%s` or, to change it, add a new field such as `%s` and reserve this one with `reserved %d; reserved %q;` in message %s",
		fieldDecl(o), b.String(), o.Number(), n.Name(), md.Name())
}

// nextFieldNumber returns the lowest number above every field and reserved
// range of md that is free, skipping the range protobuf reserves for its
// own use.
func nextFieldNumber(md protoreflect.MessageDescriptor) protoreflect.FieldNumber {
	num := protoreflect.FieldNumber(1)
	fields := md.Fields()
	for i := range fields.Len() {
		num = max(num, fields.Get(i).Number()+1)
	}
	ranges := md.ReservedRanges()
	for i := range ranges.Len() {
		if end := ranges.Get(i)[1]; end <= maxFieldNumber {
			num = max(num, end) // end is exclusive
		}
	}
	for md.ReservedRanges().Has(num) || md.ExtensionRanges().Has(num) || (num >= 19000 && num <= 19999) {
		num++
	}
	return num
}
