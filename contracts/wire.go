package contracts

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The strict unknown-field check runs on the wire bytes, before they are
// decoded.
//
// # Why not walk the decoded message
//
// A decoded dynamicpb message keeps unknown fields per message, so finding
// them means ranging over every field at every depth through protoreflect,
// which cost as much as the decoding itself. The wire walk visits each tag
// once, looks field numbers up in tables built when the contract is
// compiled, and also serves the dynamic leak guard (every string and bytes
// value of a record passes through it) at no extra cost.

// wireMsg is what the wire walk needs to know about one message type.
type wireMsg struct {
	desc protoreflect.MessageDescriptor
	// dense holds the fields with numbers below len(dense), by number;
	// sparse the others.
	dense  []*wireField
	sparse map[protowire.Number]*wireField
	// mapEntry is set for the synthetic entry message of a map field: its
	// key and value fields do not appear in field paths.
	mapEntry bool
	// hasExt is set when the message declares extension ranges.
	hasExt bool
}

// wireField is one field of a wireMsg.
type wireField struct {
	fd   protoreflect.FieldDescriptor
	wire protowire.Type // expected wire type of one value
	// packable fields (repeated scalars) also accept BytesType.
	packable bool
	// text is set for string and bytes fields: their values are checked by
	// the leak guard.
	text bool
	// msg is the message of a message, group or map field (the map entry
	// for a map).
	msg *wireMsg
}

// denseLimit bounds the dense lookup table of a wireMsg.
const denseLimit = 64

// wireTables builds the wireMsg of md and of every message reachable from
// it, memoized in seen (recursive types point back into the table).
func wireTables(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]*wireMsg) *wireMsg {
	if wm, ok := seen[md.FullName()]; ok {
		return wm
	}
	wm := &wireMsg{desc: md, mapEntry: md.IsMapEntry(), hasExt: md.ExtensionRanges().Len() > 0}
	seen[md.FullName()] = wm
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		wf := &wireField{fd: fd, wire: wireType(fd.Kind())}
		wf.packable = fd.IsList() && wf.wire != protowire.BytesType && wf.wire != protowire.StartGroupType
		wf.text = fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind
		if sub := fd.Message(); sub != nil {
			wf.msg = wireTables(sub, seen)
		}
		if n := fd.Number(); n < denseLimit {
			if int(n) >= len(wm.dense) {
				wm.dense = append(wm.dense, make([]*wireField, int(n)+1-len(wm.dense))...)
			}
			wm.dense[n] = wf
		} else {
			if wm.sparse == nil {
				wm.sparse = map[protowire.Number]*wireField{}
			}
			wm.sparse[n] = wf
		}
	}
	return wm
}

// field returns the field numbered n, or nil.
func (wm *wireMsg) field(n protowire.Number) *wireField {
	if n >= 0 && int(n) < len(wm.dense) {
		return wm.dense[n]
	}
	return wm.sparse[n]
}

// wireType returns the wire type of one value of kind k.
func wireType(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.BoolKind, protoreflect.EnumKind,
		protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Uint32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		return protowire.VarintType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	}
	return protowire.BytesType // string, bytes, message
}

// wireProblem is what the wire walk found: the first unknown field or
// malformed value, and the first leaked value.
type wireProblem struct {
	// err is set for an unknown field (wrapping ErrUnknownField) or bytes
	// that are not protobuf wire format; errPath leads to the message
	// holding the field, innermost last; unknown is the number of the
	// unknown field, or 0.
	err     error
	errPath []protoreflect.FieldDescriptor
	unknown protowire.Number
	// leak is set to the path of the first string or bytes value found in
	// the leak set, innermost last; leakFrom names the regional_only field
	// the value came from.
	leak     []protoreflect.FieldDescriptor
	leakFrom string
}

// wireWalker walks encoded messages strictly, and looks text values up in a
// leak set when one is given.
type wireWalker struct {
	types extensionFinder // resolves extension fields
	leaks *LeakSet        // nil or empty: no leak check
	path  []protoreflect.FieldDescriptor
	found wireProblem
}

// errNotWire wraps problems with the encoding itself.
var errNotWire = errors.New("not protobuf wire format")

// walk checks b, an encoding of wm's message. When group is non-zero, b is
// the body of a group field numbered group, and walk returns the length
// consumed, end tag included. It stops at the first error, which it
// records in w.found.err; leaks are recorded and the walk goes on.
func (w *wireWalker) walk(wm *wireMsg, b []byte, group protowire.Number, depth int) (int, bool) {
	if depth > protowire.DefaultRecursionLimit {
		return w.fail(errors.New("exceeded maximum recursion depth"))
	}
	off := 0
	for off < len(b) {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return w.fail(fmt.Errorf("%w: %w", errNotWire, protowire.ParseError(n)))
		}
		off += n
		if typ == protowire.EndGroupType {
			if group == 0 || num != group {
				return w.fail(fmt.Errorf("%w: unexpected end of group %d", errNotWire, num))
			}
			return off, true
		}
		wf := wm.field(num)
		if wf == nil && wm.hasExt && wm.desc.ExtensionRanges().Has(num) && w.knownExtension(wm, num) {
			// Extensions of contract messages are rare; known ones are
			// accepted as the decoder accepts them, and not walked.
			vn := protowire.ConsumeFieldValue(num, typ, b[off:])
			if vn < 0 {
				return w.fail(fmt.Errorf("%w: %w", errNotWire, protowire.ParseError(vn)))
			}
			off += vn
			continue
		}
		if wf == nil {
			w.found.unknown = num
			return w.fail(fmt.Errorf("%w number %d in %s", ErrUnknownField, num, wm.desc.FullName()))
		}
		if typ != wf.wire && (!wf.packable || typ != protowire.BytesType) {
			// The decoder would keep a value of the wrong wire type as an
			// unknown field.
			w.found.unknown = num
			return w.fail(fmt.Errorf("%w number %d in %s: wire type %d does not match field %s (%s)",
				ErrUnknownField, num, wm.desc.FullName(), typ, wf.fd.Name(), wf.fd.Kind()))
		}
		switch {
		case typ == protowire.StartGroupType:
			w.push(wm, wf)
			gn, ok := w.walk(wf.msg, b[off:], num, depth+1)
			if !ok {
				return 0, false
			}
			w.pop(wm)
			off += gn
		case typ == protowire.BytesType && (wf.msg != nil || wf.text):
			v, vn := protowire.ConsumeBytes(b[off:])
			if vn < 0 {
				return w.fail(fmt.Errorf("%w: %w", errNotWire, protowire.ParseError(vn)))
			}
			off += vn
			if wf.msg != nil {
				w.push(wm, wf)
				if _, ok := w.walk(wf.msg, v, 0, depth+1); !ok {
					return 0, false
				}
				w.pop(wm)
			} else if w.leaks != nil && w.found.leak == nil {
				if from, hit := w.leaks.lookup(v); hit {
					w.push(wm, wf)
					w.found.leak = append([]protoreflect.FieldDescriptor(nil), w.path...)
					w.found.leakFrom = from
					w.pop(wm)
				}
			}
		default:
			vn := protowire.ConsumeFieldValue(num, typ, b[off:])
			if vn < 0 {
				return w.fail(fmt.Errorf("%w: %w", errNotWire, protowire.ParseError(vn)))
			}
			off += vn
		}
	}
	if group != 0 {
		return w.fail(fmt.Errorf("%w: group %d is not closed", errNotWire, group))
	}
	return off, true
}

// push enters field wf of wm; the fields of a map entry are not part of
// paths.
func (w *wireWalker) push(wm *wireMsg, wf *wireField) {
	if !wm.mapEntry {
		w.path = append(w.path, wf.fd)
	}
}

func (w *wireWalker) pop(wm *wireMsg) {
	if !wm.mapEntry {
		w.path = w.path[:len(w.path)-1]
	}
}

func (w *wireWalker) fail(err error) (int, bool) {
	w.found.err = err
	w.found.errPath = append([]protoreflect.FieldDescriptor(nil), w.path...)
	return 0, false
}

// strictWire checks that b encodes only fields s's contract declares, at
// any depth, with wire types that match them. It returns a *DecodeError or
// nil.
func (s *Schema) strictWire(b []byte) error {
	w := wireWalker{types: s.c.types}
	if _, ok := w.walk(s.wire, b, 0, 0); ok {
		return nil
	}
	return &DecodeError{Schema: s.Name, Field: fieldPath(w.found.errPath), Err: w.found.err}
}

// knownExtension reports whether num is an extension of wm's message that
// the contract declares.
func (w *wireWalker) knownExtension(wm *wireMsg, num protowire.Number) bool {
	if w.types == nil {
		return false
	}
	_, err := w.types.FindExtensionByNumber(wm.desc.FullName(), num)
	return err == nil
}

// extensionFinder is the part of protoregistry.ExtensionTypeResolver the
// walk needs.
type extensionFinder interface {
	FindExtensionByNumber(protoreflect.FullName, protoreflect.FieldNumber) (protoreflect.ExtensionType, error)
}

// unknownName formats the field at fault in an unknown-field problem as the
// path to the message holding it and "#number", e.g. "spec.#9"; for other
// problems it is the path alone.
func (p *wireProblem) unknownName() string {
	path := fieldPath(p.errPath)
	if p.unknown == 0 {
		return path
	}
	num := "#" + strconv.Itoa(int(p.unknown))
	if path == "" {
		return num
	}
	return path + "." + num
}
