package contracts

import (
	"cmp"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// FieldValue is one top-level field of a message in wire form: the unit the
// regional store versions and merges (last writer wins per field).
type FieldValue struct {
	// Num is the field number.
	Num protowire.Number
	// Value is the field's complete wire encoding, tags included, every
	// occurrence of a repeated field (or map) together, in order. The
	// concatenation of the Values of distinct fields is a valid encoding of
	// the message holding those fields. An empty Value stands for the
	// field at its default: proto3 writes nothing for a zero value.
	Value []byte
}

// Split encodes m, which must be of the schema's type, deterministically
// (map entries sorted) and cuts the encoding into one FieldValue per
// top-level field present, sorted by number. A field at its default is not
// present: for a whole-row write, fields in FieldNumbers that Split does not
// return are to be stored with an empty Value. The Values share one buffer;
// each is capped, so appending to one does not overwrite another. Unknown
// fields in m are an error wrapping ErrUnknownField.
func (s *Schema) Split(m proto.Message) ([]FieldValue, error) {
	if err := s.checkType(message(m)); err != nil {
		return nil, err
	}
	// proto3 has no required fields: skip the initialisation check.
	b, err := proto.MarshalOptions{Deterministic: true, AllowPartial: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("contracts: split %s: %w", s.Name, err)
	}
	out := make([]FieldValue, 0, len(s.numbers))
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return nil, fmt.Errorf("contracts: split %s: %w", s.Name, protowire.ParseError(n))
		}
		vn := protowire.ConsumeFieldValue(num, typ, b[off+n:])
		if vn < 0 {
			return nil, fmt.Errorf("contracts: split %s: %w", s.Name, protowire.ParseError(vn))
		}
		end := off + n + vn
		if _, known := slices.BinarySearch(s.numbers, num); !known {
			return nil, &DecodeError{Schema: s.Name, Err: fmt.Errorf("%w number %d in %s", ErrUnknownField, num, s.Desc.FullName())}
		}
		i := slices.IndexFunc(out, func(fv FieldValue) bool { return fv.Num == num })
		switch {
		case i < 0:
			out = append(out, FieldValue{Num: num, Value: b[off:end:end]})
		case i == len(out)-1 && sameEnd(out[i].Value, b[:off]):
			// The common case for repeated fields: occurrences in a row
			// extend the value in place.
			out[i].Value = b[off-len(out[i].Value) : end : end]
		default:
			v := make([]byte, 0, len(out[i].Value)+end-off)
			out[i].Value = append(append(v, out[i].Value...), b[off:end]...)
		}
		off = end
	}
	slices.SortFunc(out, func(a, b FieldValue) int { return cmp.Compare(a.Num, b.Num) })
	return out, nil
}

// sameEnd reports whether v is the tail of the buffer prefix b, i.e. v ends
// exactly where b ends in the same array.
func sameEnd(v, b []byte) bool {
	if len(v) == 0 || len(v) > len(b) {
		return false
	}
	tail := b[len(b)-len(v):]
	return &tail[0] == &v[0]
}

// Join reassembles a message from fields, as returned by Split or read back
// from the store, in any order. It checks that every number is a field of the
// schema, appears once and that each Value encodes only its own field; then
// it decodes the concatenation strictly, as DecodeBinary does. Errors are
// *DecodeError.
func (s *Schema) Join(fields []FieldValue) (*dynamicpb.Message, error) {
	order := make([]int, len(fields))
	size := 0
	for i, fv := range fields {
		order[i] = i
		size += len(fv.Value)
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(fields[a].Num, fields[b].Num) })

	buf := make([]byte, 0, size)
	for j, i := range order {
		fv := fields[i]
		if _, known := slices.BinarySearch(s.numbers, fv.Num); !known {
			return nil, &DecodeError{Schema: s.Name, Err: fmt.Errorf("%w number %d in %s", ErrUnknownField, fv.Num, s.Desc.FullName())}
		}
		name := string(s.Desc.Fields().ByNumber(fv.Num).Name())
		if j > 0 && fields[order[j-1]].Num == fv.Num {
			return nil, &DecodeError{Schema: s.Name, Field: name, Err: fmt.Errorf("field number %d given twice", fv.Num)}
		}
		if err := onlyField(fv); err != nil {
			return nil, &DecodeError{Schema: s.Name, Field: name, Err: err}
		}
		buf = append(buf, fv.Value...)
	}
	return s.DecodeBinary(buf)
}

// onlyField returns an error unless fv.Value is a well-formed encoding of
// field fv.Num alone.
func onlyField(fv FieldValue) error {
	for b := fv.Value; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if num != fv.Num {
			return fmt.Errorf("value holds field number %d, want only %d", num, fv.Num)
		}
		vn := protowire.ConsumeFieldValue(num, typ, b[n:])
		if vn < 0 {
			return protowire.ParseError(vn)
		}
		b = b[n+vn:]
	}
	return nil
}
