package contracts

import (
	"errors"
	"strings"
)

// Sentinel errors. Typed errors below wrap them where they apply, so callers
// can test with errors.Is and still read the details with errors.As.
var (
	// ErrUnknownField is wrapped by a *DecodeError for a field the
	// contract does not declare: an unknown JSON key, or an unknown field
	// number at any depth of a binary message.
	ErrUnknownField = errors.New("contracts: unknown field")
	// ErrWrongType is returned when a Schema method gets a message of
	// another type than the schema's.
	ErrWrongType = errors.New("contracts: wrong message type")
	// ErrNoFiles is returned by Compile when it is given no files.
	ErrNoFiles = errors.New("contracts: no files to compile")
)

// DecodeError reports bytes that do not decode as a schema's message.
type DecodeError struct {
	// Schema is the table or record name.
	Schema string
	// Field is the offending field when it is known, else empty. For JSON
	// it is the key as the client wrote it or the field's JSON name, without
	// the path to it (protojson does not report paths). For binary input it
	// is the dotted proto path of the message holding an unknown field
	// number, empty for the top-level message.
	Field string
	// Err is the cause.
	Err error
}

// Error returns e.g. `contracts: decode machines: field "colour": unknown field`.
func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString("contracts: decode ")
	b.WriteString(e.Schema)
	if e.Field != "" {
		b.WriteString(": field \"")
		b.WriteString(e.Field)
		b.WriteByte('"')
	}
	b.WriteString(": ")
	b.WriteString(causeText(e.Err))
	return b.String()
}

// Unwrap returns the cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// causeText is err's message without the package prefixes that the outer
// message already carries.
func causeText(err error) string {
	if err == nil {
		return "invalid"
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "contracts: ")
	// protojson and proto prefix "proto:" and a space or, on purpose
	// to deter matching, a non-breaking space.
	for _, p := range []string{"proto: ", "proto:\u00a0"} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// ValidationError reports a message that breaks its schema's protovalidate
// rules, with every violation found.
type ValidationError struct {
	// Schema is the table or record name.
	Schema string
	// Violations holds at least one violation.
	Violations []Violation
}

// Violation is one broken rule.
type Violation struct {
	// Field is the path of the field, with proto names and subscripts, e.g.
	// "private_ip", "spec.ports[0]", `labels["env"]`; empty for a rule on
	// the whole message.
	Field string
	// Rule is the protovalidate rule id, e.g. "string.ip", "required", or
	// the id of a CEL rule.
	Rule string
	// Message is the human-readable explanation, e.g. "must be a valid IP
	// address".
	Message string
}

// String returns e.g. "private_ip: must be a valid IP address [string.ip]".
func (v Violation) String() string {
	var b strings.Builder
	if v.Field != "" {
		b.WriteString(v.Field)
		b.WriteString(": ")
	}
	b.WriteString(v.Message)
	if v.Rule != "" {
		b.WriteString(" [")
		b.WriteString(v.Rule)
		b.WriteByte(']')
	}
	return b.String()
}

// Error returns e.g. `contracts: machines: invalid: private_ip: must be a
// valid IP address [string.ip]`, with violations separated by "; ".
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("contracts: ")
	b.WriteString(e.Schema)
	b.WriteString(": invalid: ")
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.String())
	}
	return b.String()
}

// KeyError reports a key that is not valid for a schema, or that does not
// match the key fields of a message.
type KeyError struct {
	// Schema is the table or record name.
	Schema string
	// Field is the proto name of the key field at fault; empty when the key
	// as a whole is at fault (e.g. a wrong number of parts).
	Field string
	// Reason says what is wrong.
	Reason string
}

// Error returns e.g. `contracts: machines: key field "id": message has
// "m1", key is "m2"`.
func (e *KeyError) Error() string {
	var b strings.Builder
	b.WriteString("contracts: ")
	b.WriteString(e.Schema)
	if e.Field != "" {
		b.WriteString(": key field \"")
		b.WriteString(e.Field)
		b.WriteString("\": ")
	} else {
		b.WriteString(": key: ")
	}
	b.WriteString(e.Reason)
	return b.String()
}
