package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"slices"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// DecodeJSON decodes protojson b (field names in lowerCamelCase or as in the
// .proto file, enum values by name or number) into a new message of the
// schema's type. A key the contract does not declare, at any depth, is an
// error. Errors are *DecodeError, naming the field when protojson's error
// does. DecodeJSON does not validate: call Validate.
func (s *Schema) DecodeJSON(b []byte) (*dynamicpb.Message, error) {
	m := dynamicpb.NewMessage(s.Desc)
	err := protojson.UnmarshalOptions{Resolver: s.c.types}.Unmarshal(b, m)
	if err != nil {
		return nil, &DecodeError{Schema: s.Name, Field: jsonErrorField(err), Err: err}
	}
	return m, nil
}

// protojsonFieldErrors match protojson messages that name a field; the
// first group is the name as the client wrote it, or its JSON name.
var protojsonFieldErrors = []*regexp.Regexp{
	regexp.MustCompile(`unknown field "([^"]*)"`),
	regexp.MustCompile(`duplicate field "([^"]*)"`),
	regexp.MustCompile(`invalid value for \w+ field (\w+):`),
	regexp.MustCompile(`error parsing "([^"]*)", oneof`),
}

// jsonErrorField digs the field name out of a protojson error, best
// effort: protojson has no typed errors. The result is "" when no pattern
// matches.
func jsonErrorField(err error) string {
	msg := err.Error()
	for _, re := range protojsonFieldErrors {
		if m := re.FindStringSubmatch(msg); m != nil {
			return m[1]
		}
	}
	return ""
}

// DecodeBinary decodes the protobuf wire bytes b into a new message of the
// schema's type, strictly: a field number the contract does not declare, at
// any depth (nested messages, list elements, map values), is an error
// wrapping ErrUnknownField, where protobuf would keep it silently. Errors are
// *DecodeError. DecodeBinary does not validate: call Validate.
func (s *Schema) DecodeBinary(b []byte) (*dynamicpb.Message, error) {
	if err := s.strictWire(b); err != nil {
		return nil, err
	}
	m := dynamicpb.NewMessage(s.Desc)
	if err := s.unmarshal(b, m); err != nil {
		return nil, err
	}
	return m, nil
}

// unmarshal decodes b, which passed strictWire, into m. Initialization is
// checked only when the message has required fields (proto2): for proto3
// the check is a walk over every field that finds nothing.
func (s *Schema) unmarshal(b []byte, m *dynamicpb.Message) error {
	opts := proto.UnmarshalOptions{Resolver: s.c.types, AllowPartial: !s.required, Merge: true}
	if err := opts.Unmarshal(b, m); err != nil {
		return &DecodeError{Schema: s.Name, Err: err}
	}
	return nil
}

// JSONFieldNumbers returns the numbers of the top-level fields named in the
// JSON object b, by JSON name or proto name, sorted and without duplicates.
// It is what a PATCH needs: `{"healthy": false}` names field healthy even
// though the decoded message cannot tell false from absent, and a key whose
// value is null is named too (protojson reads null as the default). A key the
// schema does not declare is a *DecodeError wrapping ErrUnknownField and
// naming the key. Values are checked to be JSON, not decoded: use
// DecodeJSON for that.
func (s *Schema) JSONFieldNumbers(b []byte) ([]protowire.Number, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	fail := func(field string, err error) ([]protowire.Number, error) {
		return nil, &DecodeError{Schema: s.Name, Field: field, Err: err}
	}
	tok, err := dec.Token()
	if err != nil {
		return fail("", err)
	}
	if tok != json.Delim('{') {
		return fail("", errors.New("not a JSON object"))
	}
	var nums []protowire.Number
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail("", err)
		}
		key, _ := tok.(string) // object keys are always strings
		num, ok := s.byJSON[key]
		if !ok {
			return fail(key, ErrUnknownField)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fail(key, err)
		}
		nums = append(nums, num)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return fail("", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail("", errors.New("data after the JSON object"))
	}
	slices.Sort(nums)
	return slices.Compact(nums), nil
}
