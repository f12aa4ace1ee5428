package contracts

import (
	"errors"
	"fmt"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
)

// Validate checks m, which must be of the schema's type, against the
// protovalidate rules of its contract (buf.validate options). A broken rule
// is a *ValidationError listing every violation with its field path and rule
// id. Any other error (a CEL expression failing at run time) is returned
// wrapped. Validate does not check keys (see CheckKey) or unknown fields
// (see DecodeBinary).
func (s *Schema) Validate(m proto.Message) error {
	if err := s.checkType(message(m)); err != nil {
		return err
	}
	err := s.c.validator.Validate(m)
	if err == nil {
		return nil
	}
	var pv *protovalidate.ValidationError
	if !errors.As(err, &pv) {
		return fmt.Errorf("contracts: validate %s: %w", s.Name, err)
	}
	ve := &ValidationError{Schema: s.Name, Violations: make([]Violation, len(pv.Violations))}
	for i, v := range pv.Violations {
		ve.Violations[i] = Violation{
			Field:   protovalidate.FieldPathString(v.Proto.GetField()),
			Rule:    v.Proto.GetRuleId(),
			Message: v.Proto.GetMessage(),
		}
	}
	return ve
}
