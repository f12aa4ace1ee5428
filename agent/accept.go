package agent

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// rejection is why a change from a peer was refused; Reason labels
// strata_gossip_rejected_total.
type rejection struct {
	reason string
	err    error
}

func (r *rejection) Error() string  { return r.err.Error() }
func (r *rejection) Unwrap() error  { return r.err }
func (r *rejection) Reason() string { return r.reason }

// acceptRegional checks a regional change received from a peer against the
// contract before it is merged, as the API checks a write: the table
// exists, every field is declared, the field bytes decode strictly (no
// unknown fields at any depth, each value of its field's type), the fields
// present pass their protovalidate rules, and the key fields agree with
// the row key (a key field the change does not carry is read from the key
// and must pass its rules too, so no peer creates a row under a key the API
// would refuse).
//
// A change may carry only some fields (a patch), so rules on absent fields
// and whole-message rules are left to the writer's node, which validated
// the whole row. They are not checked even on a change that carries every
// field: fields merge last-writer-wins one by one, so two valid concurrent
// patches can make a row that breaks a whole-message rule, and refusing it
// would keep the replicas that hold it and those that do not apart for
// good. A deleted row carries no fields; its key is not checked, so a
// delete of any key the API accepted reaches every replica.
func acceptRegional(c *contracts.Contract) func(store.Change, string) error {
	return func(ch store.Change, from string) error {
		sch, ok := c.Table(ch.Table)
		if !ok {
			return &rejection{"unknown_table", fmt.Errorf("table %q is not in this node's contract", ch.Table)}
		}
		if !ch.Row.Alive() {
			return nil
		}
		fields := make([]contracts.FieldValue, len(ch.Row.Fields))
		checked := map[string]bool{} // top-level fields whose rules apply
		for i, f := range ch.Row.Fields {
			fd := sch.Desc.Fields().ByNumber(protowire.Number(f.Num))
			if fd == nil {
				return &rejection{"unknown_field", fmt.Errorf("%s: field number %d is not in the contract", ch.Table, f.Num)}
			}
			checked[string(fd.Name())] = true
			fields[i] = contracts.FieldValue{Num: protowire.Number(f.Num), Value: f.Value}
		}
		// Join checks each value holds only its own field number, then
		// decodes strictly.
		m, err := sch.Join(fields)
		if err != nil {
			return &rejection{"decode", err}
		}
		if err := fillKeyFields(sch, m.ProtoReflect(), ch.Key, checked); err != nil {
			return &rejection{"key", fmt.Errorf("%s/%s: %w", ch.Table, ch.Key, err)}
		}
		if err := sch.CheckKey(m, ch.Key); err != nil {
			return &rejection{"key", fmt.Errorf("%s/%s: %w", ch.Table, ch.Key, err)}
		}
		for _, kf := range sch.Key {
			checked[string(kf.Name())] = true
		}
		if err := sch.Validate(m); err != nil {
			if ve, ok := err.(*contracts.ValidationError); ok {
				for _, v := range ve.Violations {
					top, _, _ := strings.Cut(v.Field, ".")
					top, _, _ = strings.Cut(top, "[")
					if checked[top] {
						return &rejection{"validate", fmt.Errorf("%s/%s: %s", ch.Table, ch.Key, v)}
					}
				}
				return nil
			}
			return &rejection{"validate", err}
		}
		return nil
	}
}

// fillKeyFields sets each key field that the change does not carry (by
// name in carried) from its part of key, so that CheckKey and the field rules can judge the key. A part that
// does not parse as its field's type is an error; one that parses to a
// different text (such as "007" for an integer) is caught by CheckKey.
func fillKeyFields(sch *contracts.Schema, m protoreflect.Message, key string, carried map[string]bool) error {
	parts := []string{key}
	if len(sch.Key) > 1 {
		parts = strings.Split(key, contracts.KeySeparator)
		if len(parts) != len(sch.Key) {
			return fmt.Errorf("key has %d parts, the table's key has %d", len(parts), len(sch.Key))
		}
	}
	for i, kf := range sch.Key {
		if carried[string(kf.Name())] {
			continue // a carried key field, even empty, must match as is
		}
		part := parts[i]
		var v protoreflect.Value
		var err error
		switch kf.Kind() {
		case protoreflect.StringKind:
			v = protoreflect.ValueOfString(part)
		case protoreflect.BoolKind:
			var b bool
			b, err = strconv.ParseBool(part)
			v = protoreflect.ValueOfBool(b)
		case protoreflect.EnumKind:
			if ev := kf.Enum().Values().ByName(protoreflect.Name(part)); ev != nil {
				v = protoreflect.ValueOfEnum(ev.Number())
			} else {
				var n int64
				n, err = strconv.ParseInt(part, 10, 32)
				v = protoreflect.ValueOfEnum(protoreflect.EnumNumber(n))
			}
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			var n int64
			n, err = strconv.ParseInt(part, 10, 32)
			v = protoreflect.ValueOfInt32(int32(n))
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			var n int64
			n, err = strconv.ParseInt(part, 10, 64)
			v = protoreflect.ValueOfInt64(n)
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
			var n uint64
			n, err = strconv.ParseUint(part, 10, 32)
			v = protoreflect.ValueOfUint32(uint32(n))
		case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			var n uint64
			n, err = strconv.ParseUint(part, 10, 64)
			v = protoreflect.ValueOfUint64(n)
		default:
			return fmt.Errorf("key field %s has kind %s", kf.Name(), kf.Kind())
		}
		if err != nil {
			return fmt.Errorf("key field %s: %q is not a %s", kf.Name(), part, kf.Kind())
		}
		m.Set(kf, v)
	}
	return nil
}
