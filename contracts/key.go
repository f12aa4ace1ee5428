package contracts

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// KeySeparator joins the parts of a composite key, in key field order:
// a table keyed by ["app", "id"] has keys like "web/m1".
const KeySeparator = "/"

// KeyOf returns the key of m, which must be of the schema's type, as text:
// a string as is, an integer in decimal, a bool as "true" or "false", an
// enum by value name (by number when the value has no name). The parts of a
// composite key are joined with KeySeparator. An empty part, or a part of a
// composite key that contains KeySeparator, is a *KeyError naming the field.
func (s *Schema) KeyOf(m protoreflect.Message) (string, error) {
	if err := s.checkType(m); err != nil {
		return "", err
	}
	if len(s.Key) == 1 {
		return s.keyPart(m, s.Key[0])
	}
	var b strings.Builder
	for i, kf := range s.Key {
		part, err := s.keyPart(m, kf)
		if err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteString(KeySeparator)
		}
		b.WriteString(part)
	}
	return b.String(), nil
}

// CheckKey returns a *KeyError naming the first key field whose value in m
// differs from its part of key, as in a PUT whose URL key and body disagree.
// m must be of the schema's type.
func (s *Schema) CheckKey(m protoreflect.Message, key string) error {
	if err := s.checkType(m); err != nil {
		return err
	}
	parts := []string{key}
	if len(s.Key) > 1 {
		parts = strings.Split(key, KeySeparator)
		if len(parts) != len(s.Key) {
			return &KeyError{Schema: s.Name, Reason: fmt.Sprintf("%q has %d parts, want %d (%s)",
				key, len(parts), len(s.Key), s.keyNames())}
		}
	}
	for i, kf := range s.Key {
		got, err := s.keyPart(m, kf)
		if err != nil {
			return err
		}
		if got != parts[i] {
			return &KeyError{Schema: s.Name, Field: string(kf.Name()),
				Reason: fmt.Sprintf("message has %q, key is %q", got, parts[i])}
		}
	}
	return nil
}

// keyNames returns the key field names joined like a key, e.g. "app/id".
func (s *Schema) keyNames() string {
	names := make([]string, len(s.Key))
	for i, kf := range s.Key {
		names[i] = string(kf.Name())
	}
	return strings.Join(names, KeySeparator)
}

// keyPart returns the text of key field kf in m.
func (s *Schema) keyPart(m protoreflect.Message, kf protoreflect.FieldDescriptor) (string, error) {
	// m may be built from another copy of the descriptors (generated
	// code): use m's own field descriptor, as Get panics on a foreign one.
	fd := m.Descriptor().Fields().ByNumber(kf.Number())
	if fd == nil || fd.Kind() != kf.Kind() || fd.Cardinality() == protoreflect.Repeated {
		return "", fmt.Errorf("%w: key field %s does not match the schema", ErrWrongType, kf.Name())
	}
	v := m.Get(fd)
	var text string
	switch fd.Kind() {
	case protoreflect.StringKind:
		text = v.String()
	case protoreflect.BoolKind:
		text = strconv.FormatBool(v.Bool())
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			text = string(ev.Name())
		} else {
			text = strconv.Itoa(int(v.Enum()))
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		text = strconv.FormatInt(v.Int(), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		text = strconv.FormatUint(v.Uint(), 10)
	default: // Compile admits no other kind
		return "", fmt.Errorf("%w: key field %s has kind %s", ErrWrongType, kf.Name(), fd.Kind())
	}
	switch {
	case text == "":
		return "", &KeyError{Schema: s.Name, Field: string(kf.Name()), Reason: "is empty"}
	case len(s.Key) > 1 && strings.Contains(text, KeySeparator):
		return "", &KeyError{Schema: s.Name, Field: string(kf.Name()),
			Reason: fmt.Sprintf("%q contains %q, which separates the parts of the key %s", text, KeySeparator, s.keyNames())}
	}
	return text, nil
}
