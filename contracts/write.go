package contracts

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/dynamicpb"
)

// Write is one global write, as CheckWrite sees it: a record value (or a
// delete) for one key of one region, with what the caller knows about the
// writer and the region's budgets. Everything CheckWrite needs is in it:
// the pipeline reads no clock and no store.
type Write struct {
	// Record is the record type, e.g. "app_placements".
	Record string
	// Key is the record's key within its region, e.g. "web"; composite
	// keys join their parts with KeySeparator.
	Key string
	// Region is the region that owns the record: part of its identity in
	// the global tier.
	Region string
	// Writer is the region of whoever makes the write: this node's region
	// for a reducer's output and for an API write, the origin node's region
	// (from membership) for a change received from a peer. It must equal
	// Region: a region writes only its own records.
	Writer string
	// Value is the record's protobuf wire encoding, as stored and sent to
	// peers. It is ignored for a delete.
	Value []byte
	// Delete marks a delete of the key: there is no value to check, only
	// the record type, the key's form, the region and the rate.
	Delete bool
	// Count is the number of records of this type Region holds once this
	// write is applied (a new key counts, an update does not add one). It
	// is checked against the record's max_per_region; it is not checked
	// for deletes.
	Count int
	// Budget is Region's write budget for this record type; nil means no
	// rate limit. A write that reaches the rate step takes a token even if
	// the leak guard rejects it next: a reducer that keeps trying to leak
	// spends its own budget.
	Budget *Budget
	// Now is the current time, for Budget.
	Now time.Time
	// Leaks holds the regional_only values of the reducer's input rows,
	// for a reducer's output; nil (no dynamic leak check) for API writes and
	// peer changes, which have no input rows.
	Leaks *LeakSet
}

// Stable ids of the pipeline's rules, in pipeline order. They appear in
// RejectError.Rule, in logs and, through RejectError.Reason, as the reason
// label of the rejection metric: never change one.
const (
	// RuleUnknownRecord: the contract has no record type of that name.
	RuleUnknownRecord = "unknown_record"
	// RuleDecode: the value is not a valid encoding of the record (bad
	// wire format, invalid UTF-8 in a string, nesting too deep).
	RuleDecode = "decode"
	// RuleUnknownField: the value holds a field the contract does not
	// declare, at any depth, or a declared field with the wrong wire type.
	RuleUnknownField = "unknown_field"
	// RuleValidate prefixes the id of the broken protovalidate rule, as in
	// "validate:string.pattern"; "validate:error" is a rule that failed to
	// evaluate.
	RuleValidate = "validate"
	// RuleKeyMismatch: the key fields of the value do not spell Write.Key,
	// or the key is malformed (empty part, wrong number of parts).
	RuleKeyMismatch = "key_mismatch"
	// RuleWrongRegion: the writer's region is not the owning region.
	RuleWrongRegion = "wrong_region"
	// RuleTooLarge: the encoded value is larger than the record's
	// max_bytes.
	RuleTooLarge = "too_large"
	// RuleTooMany: the region would hold more records of the type than its
	// max_per_region.
	RuleTooMany = "too_many"
	// RuleRate: the region's write budget for the record type is spent.
	RuleRate = "rate"
	// RuleLeak: a string or bytes value of the record equals the value of a
	// regional_only field of the reducer's input.
	RuleLeak = "leak"
)

// ErrRejected is matched by every *RejectError, for errors.Is.
var ErrRejected = errors.New("contracts: global write rejected")

// RejectError is a global write that CheckWrite turned down: which record,
// which rule and, when one is at fault, which field. It never quotes the
// value of a field, which may be regional data.
type RejectError struct {
	// Record, Key and Region identify the write (Record may not exist in
	// the contract, for RuleUnknownRecord).
	Record, Key, Region string
	// Rule is the id of the broken rule: one of the Rule constants, or
	// RuleValidate + ":" + the protovalidate rule id.
	Rule string
	// Field is the path of the field at fault with proto names, e.g.
	// "app" or "spec.ports[0]"; for an unknown field the path of the
	// message holding it and "#" and the number, e.g. "#9" or "spec.#9".
	// Empty when the record as a whole is at fault.
	Field string
	// Detail says what is wrong, in one line, without the value.
	Detail string
	// Err is the underlying error, when there is one: a *DecodeError, a
	// *ValidationError (with every violation) or a *KeyError.
	Err error
}

// Error returns e.g. `contracts: record app_placements/web of region ord
// rejected [leak]: field "app": equals the value of regional_only field
// machines.id of an input row`.
func (e *RejectError) Error() string {
	var b strings.Builder
	b.WriteString("contracts: record ")
	b.WriteString(e.Record)
	if e.Key != "" {
		b.WriteByte('/')
		b.WriteString(e.Key)
	}
	if e.Region != "" {
		b.WriteString(" of region ")
		b.WriteString(e.Region)
	}
	b.WriteString(" rejected [")
	b.WriteString(e.Rule)
	b.WriteString("]: ")
	if e.Field != "" {
		b.WriteString("field \"")
		b.WriteString(e.Field)
		b.WriteString("\": ")
	}
	b.WriteString(e.Detail)
	return b.String()
}

// Reason returns the rule without the protovalidate rule id ("validate"
// for "validate:string.pattern"): a label with a small, fixed set of values,
// for metrics.
func (e *RejectError) Reason() string {
	rule, _, _ := strings.Cut(e.Rule, ":")
	return rule
}

// Unwrap returns the underlying error, or nil.
func (e *RejectError) Unwrap() error { return e.Err }

// Is reports whether target is ErrRejected.
func (e *RejectError) Is(target error) bool { return target == ErrRejected }

// CheckWrite runs w through the validation pipeline that every global write
// passes, from a reducer, from the API or from a peer, and returns nil or a
// *RejectError for the first rule it breaks. The steps, in order:
//
//  1. the record type is in the contract (RuleUnknownRecord);
//  2. the value decodes strictly: no unknown field at any depth
//     (RuleDecode, RuleUnknownField);
//  3. protovalidate's rules hold (RuleValidate);
//  4. the key fields equal Key (RuleKeyMismatch);
//  5. the owning region is the writer's (RuleWrongRegion);
//  6. the encoded size is at most the record's max_bytes (RuleTooLarge);
//  7. Count is at most the record's max_per_region (RuleTooMany) and the
//     region's Budget has a token at Now (RuleRate);
//  8. the leak guard: no string or bytes value equals one in Leaks
//     (RuleLeak).
//
// A delete runs steps 1, 4 (the key's form only), 5 and 7 (rate only).
//
// CheckWrite is pure apart from taking a token from w.Budget: it reads no
// clock and does no I/O. It is safe for concurrent use.
func (c *Contract) CheckWrite(w Write) error {
	s, ok := c.byRecord[w.Record]
	if !ok {
		return reject(&w, RuleUnknownRecord, "", nil, "the contract has no record type %q", w.Record)
	}
	if w.Delete {
		return s.checkDelete(&w)
	}

	walker := wireWalker{types: c.types}
	if w.Leaks.Len() > 0 {
		walker.leaks = w.Leaks
	}
	if _, ok := walker.walk(s.wire, w.Value, 0, 0); !ok {
		found := &walker.found
		de := &DecodeError{Schema: s.Name, Field: fieldPath(found.errPath), Err: found.err}
		if errors.Is(found.err, ErrUnknownField) {
			return reject(&w, RuleUnknownField, found.unknownName(), de, "%s", causeText(found.err))
		}
		return reject(&w, RuleDecode, fieldPath(found.errPath), de, "%s", causeText(found.err))
	}

	m := s.message()
	defer s.release(m)
	if err := s.unmarshal(w.Value, m); err != nil {
		return reject(&w, RuleDecode, "", err, "%s", causeText(errors.Unwrap(err)))
	}
	if err := s.Validate(m); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return reject(&w, RuleValidate+":error", "", err, "%s", causeText(errors.Unwrap(err)))
		}
		v := ve.Violations[0]
		reason := v.Message
		if n := len(ve.Violations); n > 1 {
			reason = fmt.Sprintf("%s (and %d more)", reason, n-1)
		}
		return reject(&w, RuleValidate+":"+v.Rule, v.Field, ve, "%s", reason)
	}
	if err := s.CheckKey(m, w.Key); err != nil {
		return rejectKey(&w, err)
	}
	if err := s.checkLimits(&w); err != nil {
		return err
	}
	if walker.found.leak != nil {
		return reject(&w, RuleLeak, fieldPath(walker.found.leak), nil,
			"equals the value of regional_only field %s of an input row", walker.found.leakFrom)
	}
	return nil
}

// checkDelete runs the steps of the pipeline that apply to a delete.
func (s *Schema) checkDelete(w *Write) error {
	if err := s.checkKeyForm(w.Key); err != nil {
		return rejectKey(w, err)
	}
	if err := s.checkRegion(w); err != nil {
		return err
	}
	if w.Budget != nil && !w.Budget.Allow(w.Now) {
		return reject(w, RuleRate, "", nil, "region %s has spent its write budget for %s", w.Region, s.Name)
	}
	return nil
}

// checkLimits runs steps 5 to 7 of the pipeline.
func (s *Schema) checkLimits(w *Write) error {
	if err := s.checkRegion(w); err != nil {
		return err
	}
	if s.MaxBytes > 0 && len(w.Value) > s.MaxBytes {
		return reject(w, RuleTooLarge, "", nil, "%d bytes encoded, max_bytes is %d", len(w.Value), s.MaxBytes)
	}
	if s.MaxPerRegion > 0 && w.Count > s.MaxPerRegion {
		return reject(w, RuleTooMany, "", nil, "region %s would hold %d records, max_per_region is %d",
			w.Region, w.Count, s.MaxPerRegion)
	}
	if w.Budget != nil && !w.Budget.Allow(w.Now) {
		return reject(w, RuleRate, "", nil, "region %s has spent its write budget for %s", w.Region, s.Name)
	}
	return nil
}

// checkRegion checks that the writer owns the record.
func (s *Schema) checkRegion(w *Write) error {
	switch {
	case w.Region == "":
		return reject(w, RuleWrongRegion, "", nil, "the write names no owning region")
	case w.Region != w.Writer:
		return reject(w, RuleWrongRegion, "", nil, "written by region %q, but the record belongs to region %q; a region writes only its own records",
			w.Writer, w.Region)
	}
	return nil
}

// checkKeyForm returns a *KeyError unless key has one non-empty part per
// key field.
func (s *Schema) checkKeyForm(key string) error {
	parts := []string{key}
	if len(s.Key) > 1 {
		parts = strings.Split(key, KeySeparator)
		if len(parts) != len(s.Key) {
			return &KeyError{Schema: s.Name, Reason: fmt.Sprintf("%q has %d parts, want %d (%s)",
				key, len(parts), len(s.Key), s.keyNames())}
		}
	}
	for i, p := range parts {
		if p == "" {
			return &KeyError{Schema: s.Name, Field: string(s.Key[i].Name()), Reason: "is empty"}
		}
	}
	return nil
}

// rejectKey turns a key check's error into a RuleKeyMismatch rejection.
func rejectKey(w *Write, err error) error {
	var ke *KeyError
	if errors.As(err, &ke) {
		return reject(w, RuleKeyMismatch, ke.Field, err, "%s", ke.Reason)
	}
	return reject(w, RuleKeyMismatch, "", err, "%s", causeText(err))
}

func reject(w *Write, rule, field string, err error, format string, args ...any) *RejectError {
	return &RejectError{
		Record: w.Record, Key: w.Key, Region: w.Region,
		Rule: rule, Field: field, Err: err,
		Detail: fmt.Sprintf(format, args...),
	}
}

// message returns an empty message of the schema's type from its pool.
func (s *Schema) message() *dynamicpb.Message {
	if m, ok := s.pool.Get().(*dynamicpb.Message); ok {
		return m
	}
	return dynamicpb.NewMessage(s.Desc)
}

// release clears m and puts it back in the schema's pool. Clearing keeps
// the message's maps, which is what makes reuse pay. It clears by field
// descriptor rather than with Range: Range asks every field for its
// presence, which is slow on the compiler's descriptors.
func (s *Schema) release(m *dynamicpb.Message) {
	fields := s.Desc.Fields()
	for i := range fields.Len() {
		m.Clear(fields.Get(i))
	}
	if len(m.GetUnknown()) > 0 {
		m.SetUnknown(nil)
	}
	s.pool.Put(m)
}
