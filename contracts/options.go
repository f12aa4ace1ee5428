package contracts

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Full names of the declarations in OptionsFile.
const (
	tableExtName        protoreflect.FullName = "strata.v1.table"
	recordExtName       protoreflect.FullName = "strata.v1.record"
	regionalOnlyExtName protoreflect.FullName = "strata.v1.regional_only"
)

// strataOptions are the strata extensions as the contract compiled them.
// Any of them is nil when the contract does not import OptionsFile.
//
// # Why not proto.GetExtension
//
// The extensions are compiled at run time, so there is no generated Go type
// for them: protocompile stores them as dynamic extensions, and a descriptor
// that went through bytes holds them as unknown fields. proto.GetExtension
// with a generated type panics on either. Scanning the wire form of the
// options message by field number works for all of them.
type strataOptions struct {
	table, record, regionalOnly protoreflect.ExtensionDescriptor
}

func findOptions(files interface {
	FindDescriptorByName(protoreflect.FullName) (protoreflect.Descriptor, error)
}) strataOptions {
	ext := func(name protoreflect.FullName) protoreflect.ExtensionDescriptor {
		d, err := files.FindDescriptorByName(name)
		if err != nil {
			return nil
		}
		xd, _ := d.(protoreflect.ExtensionDescriptor)
		return xd
	}
	return strataOptions{
		table:        ext(tableExtName),
		record:       ext(recordExtName),
		regionalOnly: ext(regionalOnlyExtName),
	}
}

// messageOption returns the value of the message-typed extension xd on
// opts, or nil when it is not set. Repeated occurrences merge, as protobuf
// decoding does.
func messageOption(opts proto.Message, xd protoreflect.ExtensionDescriptor) (*dynamicpb.Message, error) {
	if xd == nil || xd.Message() == nil {
		return nil, nil
	}
	var out *dynamicpb.Message
	err := scanOption(opts, xd.Number(), func(typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		b, n := protowire.ConsumeBytes(v)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if out == nil {
			out = dynamicpb.NewMessage(xd.Message())
		}
		return proto.UnmarshalOptions{Merge: true}.Unmarshal(b, out)
	})
	return out, err
}

// boolOption reports whether the bool extension xd is set to true on opts.
func boolOption(opts proto.Message, xd protoreflect.ExtensionDescriptor) (bool, error) {
	if xd == nil {
		return false, nil
	}
	set := false
	err := scanOption(opts, xd.Number(), func(typ protowire.Type, v []byte) error {
		if typ != protowire.VarintType {
			return nil
		}
		x, n := protowire.ConsumeVarint(v)
		if n < 0 {
			return protowire.ParseError(n)
		}
		set = x != 0 // the last occurrence wins
		return nil
	})
	return set, err
}

// scanOption calls fn with the wire type and value bytes of every occurrence
// of field num in the encoded opts.
func scanOption(opts proto.Message, num protoreflect.FieldNumber, fn func(protowire.Type, []byte) error) error {
	if opts == nil || !opts.ProtoReflect().IsValid() {
		return nil
	}
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(opts)
	if err != nil {
		return err
	}
	for len(b) > 0 {
		n, typ, tagLen := protowire.ConsumeTag(b)
		if tagLen < 0 {
			return protowire.ParseError(tagLen)
		}
		valLen := protowire.ConsumeFieldValue(n, typ, b[tagLen:])
		if valLen < 0 {
			return protowire.ParseError(valLen)
		}
		if n == num {
			if err := fn(typ, b[tagLen:tagLen+valLen]); err != nil {
				return err
			}
		}
		b = b[tagLen+valLen:]
	}
	return nil
}

// stringField returns the string field name of an options message, or "".
// Options fields are read by name, so a contract's own (possibly older) copy
// of OptionsFile works as long as the names match.
func stringField(m *dynamicpb.Message, name protoreflect.Name) string {
	fd := m.Descriptor().Fields().ByName(name)
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return ""
	}
	return m.Get(fd).String()
}

// stringsField returns the repeated string field name of an options message.
func stringsField(m *dynamicpb.Message, name protoreflect.Name) []string {
	fd := m.Descriptor().Fields().ByName(name)
	if fd == nil || fd.Kind() != protoreflect.StringKind || !fd.IsList() {
		return nil
	}
	l := m.Get(fd).List()
	out := make([]string, l.Len())
	for i := range out {
		out[i] = l.Get(i).String()
	}
	return out
}

// uintField returns the unsigned integer field name of an options message,
// or 0.
func uintField(m *dynamicpb.Message, name protoreflect.Name) uint64 {
	fd := m.Descriptor().Fields().ByName(name)
	if fd == nil || fd.IsList() {
		return 0
	}
	switch fd.Kind() {
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
		return m.Get(fd).Uint()
	}
	return 0
}
