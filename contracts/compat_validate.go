package contracts

import (
	"fmt"
	"slices"
	"strings"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Tightened protovalidate rules are found by flattening the rules of a
// field (or message) into leaves named by path, such as "string.max_len" or
// "repeated.items.string.pattern", and comparing the leaves of the old and
// new version one by one:
//
//   - a rule added is tighter, except a bool set to false and an ignore
//     setting (which loosens);
//   - a lower bound (gt, gte, min_*) raised or an upper bound (lt, lte,
//     max_*) lowered is tighter, as is a bound that became strict;
//   - a bool rule turned on, an `in` list that lost values and a `not_in`
//     list that gained some are tighter; so is a weaker ignore setting;
//   - any other change of value (pattern, const, a CEL expression) may be
//     tighter, and is reported as changed;
//   - a rule removed is looser, and not reported (except ignore).
//
// Examples (the `example` fields) are skipped: they check nothing.

// validateExtNumber is the number of protovalidate's option extensions
// (buf.validate.field, buf.validate.message), for source positions.
const validateExtNumber = 1159

// fieldRules returns the buf.validate.field rules of f, or nil.
func fieldRules(f protoreflect.FieldDescriptor) proto.Message {
	return rulesOption(f.Options(), validate.E_Field.TypeDescriptor().Number(), &validate.FieldRules{})
}

// messageRules returns the buf.validate.message rules of md, or nil.
func messageRules(md protoreflect.MessageDescriptor) proto.Message {
	return rulesOption(md.Options(), validate.E_Message.TypeDescriptor().Number(), &validate.MessageRules{})
}

// rulesOption decodes extension num of opts into into, or returns nil when
// it is not set or cannot be read.
func rulesOption(opts proto.Message, num protoreflect.FieldNumber, into proto.Message) proto.Message {
	set := false
	err := scanOption(opts, num, func(typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		b, n := protowire.ConsumeBytes(v)
		if n < 0 {
			return protowire.ParseError(n)
		}
		set = true
		return proto.UnmarshalOptions{Merge: true, AllowPartial: true}.Unmarshal(b, into)
	})
	if err != nil || !set {
		return nil
	}
	return into
}

// ruleLeaf is one flattened rule.
type ruleLeaf struct {
	text  string  // the value as shown
	num   float64 // for numbers, bounds, timestamps and durations
	isNum bool
	on    bool // for bools: the value
	isOn  bool
	list  []string // for repeated scalars (in, not_in)
	incl  bool     // for a bound: gte or lte rather than gt or lt
}

// flattenRules adds the leaves of rules message m under prefix to out.
func flattenRules(m protoreflect.Message, prefix string, out map[string]ruleLeaf) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		switch {
		case name == "example":
		case name == "cel" && fd.IsList():
			list := v.List()
			for i := range list.Len() {
				r, ok := list.Get(i).Message().Interface().(*validate.Rule)
				if !ok {
					continue
				}
				key := fmt.Sprintf("%scel[%s]", prefix, cmpOr(r.GetId(), r.GetExpression()))
				out[key] = ruleLeaf{text: fmt.Sprintf("%q", r.GetExpression())}
			}
		case fd.IsList():
			list := v.List()
			leaf := ruleLeaf{}
			for i := range list.Len() {
				leaf.list = append(leaf.list, scalarText(fd, list.Get(i)))
			}
			leaf.text = "[" + strings.Join(leaf.list, ", ") + "]"
			out[prefix+name] = leaf
		case fd.Message() != nil && isTimeLike(fd.Message()):
			sub := v.Message()
			secs := sub.Get(sub.Descriptor().Fields().ByName("seconds")).Int()
			nanos := sub.Get(sub.Descriptor().Fields().ByName("nanos")).Int()
			out[boundKey(prefix, name)] = ruleLeaf{
				text: fmt.Sprintf("%ds", secs) + nanosText(nanos), num: float64(secs)*1e9 + float64(nanos),
				isNum: true, incl: strings.HasSuffix(name, "e"),
			}
		case fd.Message() != nil:
			flattenRules(v.Message(), prefix+name+".", out)
		default:
			leaf := ruleLeaf{text: scalarText(fd, v), incl: name == "lte" || name == "gte"}
			switch fd.Kind() {
			case protoreflect.BoolKind:
				leaf.on, leaf.isOn = v.Bool(), true
			case protoreflect.FloatKind, protoreflect.DoubleKind:
				leaf.num, leaf.isNum = v.Float(), true
			case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind,
				protoreflect.Sfixed32Kind, protoreflect.Sfixed64Kind:
				leaf.num, leaf.isNum = float64(v.Int()), true
			case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
				leaf.num, leaf.isNum = float64(v.Uint()), true
			case protoreflect.EnumKind:
				leaf.num, leaf.isNum = float64(v.Enum()), true
			}
			out[boundKey(prefix, name)] = leaf
		}
		return true
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// boundKey names a lt/lte leaf "<prefix>upper" and a gt/gte leaf
// "<prefix>lower", so that a switch between the strict and the inclusive
// form compares as one bound; other leaves keep their name.
func boundKey(prefix, name string) string {
	switch name {
	case "lt", "lte":
		return prefix + "upper"
	case "gt", "gte":
		return prefix + "lower"
	}
	return prefix + name
}

func isTimeLike(md protoreflect.MessageDescriptor) bool {
	n := md.FullName()
	return n == "google.protobuf.Timestamp" || n == "google.protobuf.Duration"
}

func nanosText(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("+%dns", n)
}

// scalarText formats one scalar value of field fd.
func scalarText(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return fmt.Sprintf("%q", v.String())
	case protoreflect.BytesKind:
		return fmt.Sprintf("%q", v.Bytes())
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
	}
	return fmt.Sprint(v.Interface())
}

// validateChanges lists the ways the rules new are tighter than old (either
// may be nil), e.g. `string.max_len 63 → 32`, sorted by rule path.
func validateChanges(old, new proto.Message) []string {
	if new == nil {
		return nil
	}
	o, n := map[string]ruleLeaf{}, map[string]ruleLeaf{}
	if old != nil {
		flattenRules(old.ProtoReflect(), "", o)
	}
	flattenRules(new.ProtoReflect(), "", n)
	var out []string
	for _, key := range sortedKeys(n) {
		nl := n[key]
		ol, had := o[key]
		base := key[strings.LastIndexByte(key, '.')+1:]
		shown := showKey(key, nl)
		switch {
		case !had && base == "ignore":
			// Ignoring more loosens.
		case !had && nl.isOn && !nl.on:
		case !had:
			out = append(out, fmt.Sprintf("added %s %s", shown, nl.text))
		case base == "ignore":
			if nl.num < ol.num {
				out = append(out, fmt.Sprintf("%s %s → %s", shown, ol.text, nl.text))
			}
		case base == "lower" && nl.isNum:
			if nl.num > ol.num || nl.num == ol.num && !nl.incl && ol.incl {
				out = append(out, fmt.Sprintf("%s %s → %s", showKey(key, ol), ol.text, nl.text)+boundNote(key, ol, nl))
			}
		case base == "upper" && nl.isNum:
			if nl.num < ol.num || nl.num == ol.num && !nl.incl && ol.incl {
				out = append(out, fmt.Sprintf("%s %s → %s", showKey(key, ol), ol.text, nl.text)+boundNote(key, ol, nl))
			}
		case strings.HasPrefix(base, "min_") && nl.isNum:
			if nl.num > ol.num {
				out = append(out, fmt.Sprintf("%s %s → %s", shown, ol.text, nl.text))
			}
		case strings.HasPrefix(base, "max_") && nl.isNum:
			if nl.num < ol.num {
				out = append(out, fmt.Sprintf("%s %s → %s", shown, ol.text, nl.text))
			}
		case nl.isOn:
			if nl.on && !ol.on {
				out = append(out, fmt.Sprintf("added %s true", shown))
			}
		case base == "in":
			if lost := missingFrom(ol.list, nl.list); len(lost) > 0 {
				out = append(out, fmt.Sprintf("%s no longer allows %s", shown, strings.Join(lost, ", ")))
			}
		case base == "not_in":
			if gained := missingFrom(nl.list, ol.list); len(gained) > 0 {
				out = append(out, fmt.Sprintf("%s now rejects %s", shown, strings.Join(gained, ", ")))
			}
		case nl.text != ol.text:
			out = append(out, fmt.Sprintf("%s changed from %s to %s", shown, ol.text, nl.text))
		}
	}
	for _, key := range sortedKeys(o) {
		if _, kept := n[key]; !kept && strings.HasSuffix(key, "ignore") && o[key].num > 0 {
			out = append(out, fmt.Sprintf("removed %s %s", key, o[key].text))
		}
	}
	return out
}

// showKey turns the normalized name of a bound back into the rule's own
// name (lt, lte, gt, gte) for display.
func showKey(key string, l ruleLeaf) string {
	prefix, base := "", key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		prefix, base = key[:i+1], key[i+1:]
	}
	switch base {
	case "upper":
		if l.incl {
			return prefix + "lte"
		}
		return prefix + "lt"
	case "lower":
		if l.incl {
			return prefix + "gte"
		}
		return prefix + "gt"
	}
	return key
}

// boundNote names the new form of a bound that switched between strict and
// inclusive.
func boundNote(key string, o, n ruleLeaf) string {
	if o.incl == n.incl {
		return ""
	}
	return " (now " + showKey(key, n)[strings.LastIndexByte(showKey(key, n), '.')+1:] + ")"
}

// missingFrom returns the elements of a not in b.
func missingFrom(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
