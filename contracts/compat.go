package contracts

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Rule ids of the compatibility check. They are part of `strata contract
// check`'s output: never change one (docs/CONTRACT_CHECK.md lists them).
const (
	compatMessageDelete   = "MESSAGE_NO_DELETE"
	compatEnumDelete      = "ENUM_NO_DELETE"
	compatTableDelete     = "TABLE_NO_DELETE"
	compatRecordDelete    = "RECORD_NO_DELETE"
	compatKey             = "KEY_SAME"
	compatLimit           = "RECORD_LIMIT_TIGHTENED"
	compatFieldDelete     = "FIELD_NO_DELETE"
	compatFieldNumber     = "FIELD_SAME_NUMBER"
	compatFieldType       = "FIELD_SAME_TYPE"
	compatFieldCard       = "FIELD_SAME_CARDINALITY"
	compatFieldJSONName   = "FIELD_SAME_JSON_NAME"
	compatFieldName       = "FIELD_SAME_NAME"
	compatFieldOneof      = "FIELD_SAME_ONEOF"
	compatEnumValueDelete = "ENUM_VALUE_NO_DELETE"
	compatEnumValueName   = "ENUM_VALUE_SAME_NAME"
	compatReservedRange   = "RESERVED_RANGE_NO_DELETE"
	compatReservedName    = "RESERVED_NAME_NO_DELETE"
	compatValidate        = "VALIDATE_TIGHTENED"
	compatRegionalOnly    = "REGIONAL_ONLY_ADDED"
)

// Compare reports what changed from old to new, two versions of a contract
// given as compiled files (each version's files and, optionally, their
// dependencies; the files strata, protobuf and protovalidate provide are not
// compared), that would break a reader or writer of old. Messages and enums
// are matched by full name, tables and records by name, fields and enum
// values by number. It reports, as errors:
//
//   - MESSAGE_NO_DELETE, ENUM_NO_DELETE, TABLE_NO_DELETE, RECORD_NO_DELETE:
//     a message, enum, table or record that is gone;
//   - KEY_SAME: a table or record whose key fields changed;
//   - FIELD_NO_DELETE, ENUM_VALUE_NO_DELETE: a field or enum value deleted
//     without reserving both its number and its name;
//   - FIELD_SAME_NUMBER: a field that kept its name but changed number;
//   - FIELD_SAME_TYPE: a field whose type changed; the message says
//     whether the change breaks the wire encoding, JSON, or both;
//   - FIELD_SAME_NAME: a field renamed (protojson accepts the proto name
//     on input);
//   - FIELD_SAME_CARDINALITY: singular, repeated and map changed;
//   - FIELD_SAME_JSON_NAME: a field whose JSON name changed (a rename,
//     unless json_name keeps the old one);
//   - FIELD_SAME_ONEOF: a field moved into, out of or between oneofs;
//   - ENUM_VALUE_SAME_NAME: an enum value renamed (JSON carries the name);
//   - RESERVED_RANGE_NO_DELETE, RESERVED_NAME_NO_DELETE: reserved numbers
//     or names no longer reserved;
//
// and, as warnings:
//
//   - VALIDATE_TIGHTENED: protovalidate rules of an existing field or
//     message added or tightened: old writers may now be rejected;
//   - RECORD_LIMIT_TIGHTENED: a record's max_per_region or max_bytes
//     lowered or newly set;
//   - REGIONAL_ONLY_ADDED: a field newly marked regional_only: records
//     carrying its values are now rejected as leaks.
//
// Each finding points into new, or into old (Finding.Old) for something
// deleted, and carries a one-line fix hint. Findings are sorted.
func Compare(old, new []protoreflect.FileDescriptor) []Finding {
	o, n := newVersion(old), newVersion(new)
	c := &comparer{old: o, new: n, removed: map[protoreflect.FullName]bool{}}
	c.schemas()
	c.messages()
	c.enums()
	SortFindings(c.out)
	return c.out
}

// version is one side of a comparison.
type version struct {
	msgs    map[protoreflect.FullName]protoreflect.MessageDescriptor
	enums   map[protoreflect.FullName]protoreflect.EnumDescriptor
	order   []protoreflect.FullName // messages then enums, in file order
	schemas map[string]schemaDecl
	// regionalOnly is the regional_only option as this version declares
	// it; nil when it imports no strata options.
	regionalOnly protoreflect.ExtensionDescriptor
}

// schemaDecl is a table or record as declared by a message's options.
type schemaDecl struct {
	kind         Kind
	name         string
	md           protoreflect.MessageDescriptor
	ext          protoreflect.ExtensionDescriptor
	key          []string
	maxPerRegion uint64
	maxBytes     uint64
}

func newVersion(files []protoreflect.FileDescriptor) *version {
	v := &version{
		msgs:    map[protoreflect.FullName]protoreflect.MessageDescriptor{},
		enums:   map[protoreflect.FullName]protoreflect.EnumDescriptor{},
		schemas: map[string]schemaDecl{},
	}
	all := closure(files)
	reg := new(protoregistry.Files)
	for _, fd := range all {
		_ = reg.RegisterFile(fd) // a conflict leaves the first: enough to find the options
	}
	opts := findOptions(reg)
	v.regionalOnly = opts.regionalOnly
	for _, fd := range all {
		if providedFile(fd.Path()) {
			continue
		}
		eachMessage(fd, func(md protoreflect.MessageDescriptor) {
			v.msgs[md.FullName()] = md
			v.order = append(v.order, md.FullName())
			for _, d := range []schemaDecl{{kind: KindTable, ext: opts.table}, {kind: KindRecord, ext: opts.record}} {
				opt, err := messageOption(md.Options(), d.ext)
				if err != nil || opt == nil {
					continue
				}
				d.md = md
				d.name = stringField(opt, "name")
				d.key = stringsField(opt, "key")
				d.maxPerRegion = uintField(opt, "max_per_region")
				d.maxBytes = uintField(opt, "max_bytes")
				if _, dup := v.schemas[d.name]; d.name != "" && !dup {
					v.schemas[d.name] = d
				}
			}
		})
		eachEnum(fd, func(ed protoreflect.EnumDescriptor) {
			v.enums[ed.FullName()] = ed
			v.order = append(v.order, ed.FullName())
		})
	}
	return v
}

// comparer collects the findings of one comparison.
type comparer struct {
	old, new *version
	out      []Finding
	// removed holds old messages and enums already reported as deleted
	// (directly or as a table or record), so their nested declarations
	// are not reported again.
	removed map[protoreflect.FullName]bool
	// pairs are old and new messages compared field by field: same full
	// name, or the messages of one table or record.
	pairs [][2]protoreflect.MessageDescriptor
}

func (c *comparer) add(rule string, sev Severity, element string, at Diagnostic, old bool, hint, format string, args ...any) {
	f := finding(rule, sev, at, old)
	f.Element = element
	f.Message = fmt.Sprintf(format, args...)
	f.Hint = hint
	c.out = append(c.out, f)
}

// optionAt returns the position of element sub of a table or record option.
func (d schemaDecl) optionAt(sub ...int32) Diagnostic {
	return position(d.md, append([]int32{messageOptionsField, int32(d.ext.Number())}, sub...))
}

// schemas compares tables and records by name.
func (c *comparer) schemas() {
	paired := map[protoreflect.FullName]bool{}
	for _, name := range sortedKeys(c.old.schemas) {
		od := c.old.schemas[name]
		nd, ok := c.new.schemas[name]
		if !ok || nd.kind != od.kind {
			rule := compatTableDelete
			if od.kind == KindRecord {
				rule = compatRecordDelete
			}
			what := "was removed"
			switch {
			case ok:
				what = fmt.Sprintf("is now a %s (%s)", nd.kind, nd.md.FullName())
			case c.new.msgs[od.md.FullName()] != nil:
				what = fmt.Sprintf("was removed (message %s no longer declares it)", od.md.FullName())
			default:
				c.removed[od.md.FullName()] = true
			}
			c.add(rule, SeverityError, name, od.optionAt(optNameField), true,
				fmt.Sprintf("restore %s %q; to retire one, first remove every writer and reader of it (reducers, API clients) in a release of its own", od.kind, name),
				"%s %q (%s) %s: its writers and readers break", od.kind, name, od.md.FullName(), what)
			continue
		}
		if od.md.FullName() != nd.md.FullName() {
			c.pairs = append(c.pairs, [2]protoreflect.MessageDescriptor{od.md, nd.md})
			paired[od.md.FullName()] = true
		}
		okeys, nkeys := keyNumbers(od), keyNumbers(nd)
		if !slices.Equal(okeys, nkeys) {
			c.add(compatKey, SeverityError, name, nd.optionAt(optKeyField), false,
				fmt.Sprintf("restore key [%s]; a different key needs a new %s with a new name", strings.Join(od.key, ", "), od.kind),
				"%s %q changed its key from [%s] to [%s]: every existing key changes meaning",
				od.kind, name, strings.Join(od.key, ", "), strings.Join(nd.key, ", "))
		}
		if od.kind == KindRecord {
			c.limit(od, nd, "max_per_region", od.maxPerRegion, nd.maxPerRegion, 3, "records per region")
			c.limit(od, nd, "max_bytes", od.maxBytes, nd.maxBytes, 4, "bytes per record")
		}
	}
	for _, name := range c.old.order {
		if om, ok := c.old.msgs[name]; ok && !paired[name] {
			if nm, ok := c.new.msgs[name]; ok {
				c.pairs = append(c.pairs, [2]protoreflect.MessageDescriptor{om, nm})
			}
		}
	}
}

// limit reports a record limit lowered, or set where there was none.
func (c *comparer) limit(od, nd schemaDecl, option string, o, n uint64, field int32, unit string) {
	if n == 0 || (o != 0 && n >= o) {
		return
	}
	was := "no limit"
	if o != 0 {
		was = fmt.Sprint(o)
	}
	c.add(compatLimit, SeverityWarning, od.name, nd.optionAt(field), false,
		fmt.Sprintf("check that no region is above %d %s before rolling out, or keep %s", n, unit, was),
		"record %q lowered %s from %s to %d: writes above it will be rejected", od.name, option, was, n)
}

// keyNumbers returns the field numbers of d's key, 0 for a name that is not
// a field.
func keyNumbers(d schemaDecl) []protoreflect.FieldNumber {
	nums := make([]protoreflect.FieldNumber, len(d.key))
	for i, name := range d.key {
		if f := d.md.Fields().ByName(protoreflect.Name(name)); f != nil {
			nums[i] = f.Number()
		}
	}
	return nums
}

// messages reports deleted messages and compares the pairs.
func (c *comparer) messages() {
	for _, name := range c.old.order {
		om, ok := c.old.msgs[name]
		if !ok || c.new.msgs[name] != nil || c.removed[name] || c.parentRemoved(om) {
			if ok && c.new.msgs[name] == nil {
				c.removed[name] = true
			}
			continue
		}
		c.removed[name] = true
		paired := slices.ContainsFunc(c.pairs, func(p [2]protoreflect.MessageDescriptor) bool { return p[0] == om })
		if paired {
			continue // the message of a table or record, which moved
		}
		c.add(compatMessageDelete, SeverityError, string(name), position(om, nil), true,
			fmt.Sprintf("restore message %s; mark it `option deprecated = true;` rather than deleting it", om.Name()),
			"message %s was deleted: readers of the old contract still use it", name)
	}
	for _, p := range c.pairs {
		c.message(p[0], p[1])
	}
}

// parentRemoved reports whether the message or enum d is nested in a
// message already reported as deleted.
func (c *comparer) parentRemoved(d protoreflect.Descriptor) bool {
	for p := d.Parent(); p != nil; p = p.Parent() {
		if md, ok := p.(protoreflect.MessageDescriptor); ok && c.removed[md.FullName()] {
			return true
		}
	}
	return false
}

// message compares two versions of one message.
func (c *comparer) message(o, n protoreflect.MessageDescriptor) {
	ofields := o.Fields()
	for i := range ofields.Len() {
		of := ofields.Get(i)
		nf := n.Fields().ByNumber(of.Number())
		if nf != nil {
			c.field(of, nf)
			continue
		}
		if moved := n.Fields().ByName(of.Name()); moved != nil {
			c.add(compatFieldNumber, SeverityError, string(of.FullName()), position(moved, []int32{fieldNumberField}), false,
				fmt.Sprintf("give %s back number %d; to replace the field, reserve %d and %q and add a field with a new name", of.Name(), of.Number(), of.Number(), of.Name()),
				"field %q of %s moved from number %d to %d: values written as %d are lost, and old readers ignore %d",
				of.Name(), o.FullName(), of.Number(), moved.Number(), of.Number(), moved.Number())
			continue
		}
		numOK := n.ReservedRanges().Has(of.Number())
		nameOK := n.ReservedNames().Has(of.Name())
		if numOK && nameOK {
			continue
		}
		var missing []string
		var fix []string
		if !numOK {
			missing = append(missing, "number")
			fix = append(fix, fmt.Sprintf("reserved %d;", of.Number()))
		}
		if !nameOK {
			missing = append(missing, "name")
			fix = append(fix, fmt.Sprintf("reserved %q;", of.Name()))
		}
		c.add(compatFieldDelete, SeverityError, string(of.FullName()), position(of, nil), true,
			fmt.Sprintf("add `%s` to message %s so that no new field reuses %s", strings.Join(fix, " "), n.Name(), itsWhat(missing)),
			"field %d %q of %s was deleted without reserving its %s",
			of.Number(), of.Name(), o.FullName(), strings.Join(missing, " and "))
	}
	c.reservedFields(o, n)
	if changes := validateChanges(messageRules(o), messageRules(n)); len(changes) > 0 {
		c.add(compatValidate, SeverityWarning, string(n.FullName()), optionPosition(n, []int32{messageOptionsField, validateExtNumber}), false,
			"records from writers of the old contract may now be rejected: upgrade every writer first, then tighten",
			"protovalidate rules of message %s tightened: %s", n.FullName(), strings.Join(changes, "; "))
	}
}

// field compares two versions of one field (same number).
func (c *comparer) field(o, n protoreflect.FieldDescriptor) {
	where := fmt.Sprintf("field %d %q of %s", o.Number(), n.Name(), n.ContainingMessage().FullName())
	if oc, nc := cardinalityName(o), cardinalityName(n); oc != nc {
		c.add(compatFieldCard, SeverityError, string(n.FullName()), position(n, []int32{fieldLabelField}), false, replaceHint(o, n),
			"%s changed from %s to %s: old and new readers decode it differently", where, oc, nc)
	} else if ot, nt := fieldType(o), fieldType(n); ot != nt {
		at := position(n, []int32{fieldTypeNameField})
		if n.Message() == nil && n.Enum() == nil {
			at = position(n, []int32{fieldTypeField})
		}
		c.add(compatFieldType, SeverityError, string(n.FullName()), at, false, replaceHint(o, n),
			"%s changed type from %s to %s: %s", where, ot, nt, typeChange(o, n))
	}
	if o.Name() != n.Name() {
		c.add(compatFieldName, SeverityError, string(n.FullName()), position(n, []int32{fieldNameField}), false,
			fmt.Sprintf("restore the name %q; to rename a field, add one with the new name and a new number, and reserve %d and %q", o.Name(), o.Number(), o.Name()),
			"%s was renamed from %q: JSON readers accept a field by its proto name as well as its JSON name, so clients that send %q break", where, o.Name(), o.Name())
	}
	if o.JSONName() != n.JSONName() {
		what := "changed its JSON name"
		hint := fmt.Sprintf("restore the JSON name with [json_name = %q]", o.JSONName())
		if o.Name() != n.Name() {
			what = fmt.Sprintf("was renamed from %q, which changes its JSON name", o.Name())
			hint = fmt.Sprintf("restore the name %q", o.Name())
		}
		c.add(compatFieldJSONName, SeverityError, string(n.FullName()), position(n, nil), false, hint,
			"%s %s from %q to %q: JSON clients of the old contract break", where, what, o.JSONName(), n.JSONName())
	}
	if oo, no := oneofName(o), oneofName(n); oo != no {
		var what, hint string
		switch {
		case oo == "":
			what, hint = fmt.Sprintf("moved into oneof %s", no), "move it back out of the oneof, or add a new field in the oneof and reserve this one"
		case no == "":
			what, hint = fmt.Sprintf("moved out of oneof %s", oo), fmt.Sprintf("move it back into oneof %s, or add a new field and reserve this one", oo)
		default:
			what, hint = fmt.Sprintf("moved from oneof %s to oneof %s", oo, no), fmt.Sprintf("move it back into oneof %s", oo)
		}
		c.add(compatFieldOneof, SeverityError, string(n.FullName()), position(n, nil), false, hint,
			"%s %s: setting it now clears other fields, or no longer does", where, what)
	}
	if !c.old.isRegionalOnly(o) && c.new.isRegionalOnly(n) {
		c.add(compatRegionalOnly, SeverityWarning, string(n.FullName()), optionPosition(n, []int32{fieldOptionsField, int32(c.new.regionalOnly.Number())}), false,
			"check that no reducer copies this field's values into a record, then roll out the contract before the reducers that depend on it",
			"%s is now regional_only: records that carry one of its values will be rejected as leaks", where)
	}
	if changes := validateChanges(fieldRules(o), fieldRules(n)); len(changes) > 0 {
		c.add(compatValidate, SeverityWarning, string(n.FullName()), optionPosition(n, []int32{fieldOptionsField, validateExtNumber}), false,
			"records from writers of the old contract may now be rejected: upgrade every writer first, then tighten",
			"protovalidate rules of %s tightened: %s", where, strings.Join(changes, "; "))
	}
}

// isRegionalOnly reports whether f is marked regional_only in v.
func (v *version) isRegionalOnly(f protoreflect.FieldDescriptor) bool {
	if v.regionalOnly == nil {
		return false
	}
	on, err := boolOption(f.Options(), v.regionalOnly)
	return err == nil && on
}

// cardinalityName returns "singular", "repeated" or "map".
func cardinalityName(f protoreflect.FieldDescriptor) string {
	switch {
	case f.IsMap():
		return "map"
	case f.IsList():
		return "repeated"
	}
	return "singular"
}

// fieldType names f's type, with map key and value types for a map.
func fieldType(f protoreflect.FieldDescriptor) string {
	if f.IsMap() {
		return fmt.Sprintf("map<%s, %s>", typeName(f.MapKey()), typeName(f.MapValue()))
	}
	return typeName(f)
}

// oneofName returns the name of f's real (not synthetic) oneof, or "".
func oneofName(f protoreflect.FieldDescriptor) string {
	if od := f.ContainingOneof(); od != nil && !od.IsSynthetic() {
		return string(od.Name())
	}
	return ""
}

// reservedFields reports reserved numbers and names of o that n no longer
// reserves.
func (c *comparer) reservedFields(o, n protoreflect.MessageDescriptor) {
	ranges := o.ReservedRanges()
	for i := range ranges.Len() {
		r := ranges.Get(i) // [start, end)
		if gaps := uncovered(int64(r[0]), int64(r[1])-1, fieldRanges(n.ReservedRanges())); len(gaps) > 0 {
			c.add(compatReservedRange, SeverityError, string(o.FullName()), position(o, []int32{messageReservedRanges, int32(i)}), true,
				fmt.Sprintf("keep `reserved %s;` in message %s: numbers of deleted fields must never be reused", rangeText(int64(r[0]), int64(r[1])-1, maxFieldNumber), n.Name()),
				"message %s no longer reserves %s", o.FullName(), gapsText(gaps, maxFieldNumber))
		}
	}
	names := o.ReservedNames()
	for i := range names.Len() {
		if name := names.Get(i); !n.ReservedNames().Has(name) {
			c.add(compatReservedName, SeverityError, string(o.FullName()), position(o, []int32{messageReservedNames, int32(i)}), true,
				fmt.Sprintf("keep `reserved %q;` in message %s: names of deleted fields must never be reused", name, n.Name()),
				"message %s no longer reserves the name %q", o.FullName(), name)
		}
	}
}

// fieldRanges returns rs as inclusive intervals.
func fieldRanges(rs protoreflect.FieldRanges) [][2]int64 {
	out := make([][2]int64, rs.Len())
	for i := range out {
		r := rs.Get(i) // [start, end)
		out[i] = [2]int64{int64(r[0]), int64(r[1]) - 1}
	}
	return out
}

// enumRanges returns rs as inclusive intervals (they already are).
func enumRanges(rs protoreflect.EnumRanges) [][2]int64 {
	out := make([][2]int64, rs.Len())
	for i := range out {
		r := rs.Get(i)
		out[i] = [2]int64{int64(r[0]), int64(r[1])}
	}
	return out
}

// covered reports whether x is in one of the inclusive intervals.
func covered(ivs [][2]int64, x int64) bool {
	return slices.ContainsFunc(ivs, func(iv [2]int64) bool { return iv[0] <= x && x <= iv[1] })
}

// uncovered returns the parts of [lo, hi] that no interval of ivs covers,
// all inclusive, in order.
func uncovered(lo, hi int64, ivs [][2]int64) [][2]int64 {
	ivs = slices.Clone(ivs)
	slices.SortFunc(ivs, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	var gaps [][2]int64
	next := lo // the first number not yet known to be covered
	for _, iv := range ivs {
		if iv[1] < next || iv[0] > hi {
			continue
		}
		if iv[0] > next {
			gaps = append(gaps, [2]int64{next, iv[0] - 1})
		}
		next = max(next, iv[1]+1)
		if next > hi {
			return gaps
		}
	}
	return append(gaps, [2]int64{next, hi})
}

// itsWhat returns "its number", "its name" or "its number and name".
func itsWhat(missing []string) string { return "its " + strings.Join(missing, " and ") }

// Largest field and enum value numbers, written "max" in reserved ranges.
const (
	maxFieldNumber = 536870911
	maxEnumNumber  = 2147483647
)

// rangeText formats an inclusive range as a reserved statement writes it.
func rangeText(lo, hi, maxNum int64) string {
	switch {
	case lo == hi:
		return fmt.Sprint(lo)
	case hi == maxNum:
		return fmt.Sprintf("%d to max", lo)
	}
	return fmt.Sprintf("%d to %d", lo, hi)
}

func gapsText(gaps [][2]int64, maxNum int64) string {
	parts := make([]string, len(gaps))
	for i, g := range gaps {
		parts[i] = rangeText(g[0], g[1], maxNum)
	}
	word := "number"
	if len(gaps) > 1 || gaps[0][0] != gaps[0][1] {
		word = "numbers"
	}
	return word + " " + strings.Join(parts, ", ")
}

// enums reports deleted enums and compares the others value by value.
func (c *comparer) enums() {
	for _, name := range c.old.order {
		oe, ok := c.old.enums[name]
		if !ok {
			continue
		}
		ne, ok := c.new.enums[name]
		if !ok {
			if !c.parentRemoved(oe) {
				c.add(compatEnumDelete, SeverityError, string(name), position(oe, nil), true,
					fmt.Sprintf("restore enum %s; mark it `option deprecated = true;` rather than deleting it", oe.Name()),
					"enum %s was deleted: readers of the old contract still use it", name)
			}
			continue
		}
		c.enum(oe, ne)
	}
}

// enum compares two versions of one enum.
func (c *comparer) enum(o, n protoreflect.EnumDescriptor) {
	values := o.Values()
	for i := range values.Len() {
		ov := values.Get(i)
		if values.ByNumber(ov.Number()) != ov {
			continue // an alias: the first name of a number is its JSON name
		}
		nv := n.Values().ByNumber(ov.Number())
		if nv != nil {
			if nv.Name() != ov.Name() {
				c.add(compatEnumValueName, SeverityError, valueName(n, nv), position(nv, nil), false,
					fmt.Sprintf("restore the name %s; add the new name as an alias with option allow_alias if needed", ov.Name()),
					"value %d of enum %s was renamed from %s to %s: JSON carries enum values by name", ov.Number(), o.FullName(), ov.Name(), nv.Name())
			}
			continue
		}
		numOK := covered(enumRanges(n.ReservedRanges()), int64(ov.Number()))
		nameOK := n.ReservedNames().Has(ov.Name())
		if numOK && nameOK {
			continue
		}
		var missing, fix []string
		if !numOK {
			missing = append(missing, "number")
			fix = append(fix, fmt.Sprintf("reserved %d;", ov.Number()))
		}
		if !nameOK {
			missing = append(missing, "name")
			fix = append(fix, fmt.Sprintf("reserved %q;", ov.Name()))
		}
		c.add(compatEnumValueDelete, SeverityError, valueName(o, ov), position(ov, nil), true,
			fmt.Sprintf("add `%s` to enum %s so that no new value reuses %s", strings.Join(fix, " "), n.Name(), itsWhat(missing)),
			"value %s = %d of enum %s was deleted without reserving its %s", ov.Name(), ov.Number(), o.FullName(), strings.Join(missing, " and "))
	}
	ranges := o.ReservedRanges()
	for i := range ranges.Len() {
		r := ranges.Get(i) // inclusive
		if gaps := uncovered(int64(r[0]), int64(r[1]), enumRanges(n.ReservedRanges())); len(gaps) > 0 {
			c.add(compatReservedRange, SeverityError, string(o.FullName()), position(o, []int32{enumReservedRanges, int32(i)}), true,
				fmt.Sprintf("keep `reserved %s;` in enum %s: numbers of deleted values must never be reused", rangeText(int64(r[0]), int64(r[1]), maxEnumNumber), n.Name()),
				"enum %s no longer reserves %s", o.FullName(), gapsText(gaps, maxEnumNumber))
		}
	}
	names := o.ReservedNames()
	for i := range names.Len() {
		if name := names.Get(i); !n.ReservedNames().Has(name) {
			c.add(compatReservedName, SeverityError, string(o.FullName()), position(o, []int32{enumReservedNames, int32(i)}), true,
				fmt.Sprintf("keep `reserved %q;` in enum %s: names of deleted values must never be reused", name, n.Name()),
				"enum %s no longer reserves the name %q", o.FullName(), name)
		}
	}
}

// valueName is the name by which a finding names value v of enum e:
// "fleet.v1.MachineState.MACHINE_STATE_STOPPED" (protobuf scopes enum
// values beside their enum, which would not say which enum).
func valueName(e protoreflect.EnumDescriptor, v protoreflect.EnumValueDescriptor) string {
	return string(e.FullName()) + "." + string(v.Name())
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// optionPosition is position(d, sub) for an option: when the option has no
// location of its own (it is set through sub-fields, as in
// `(buf.validate.field).string.ip = true`), it is the first location below
// it.
func optionPosition(d protoreflect.Descriptor, sub []int32) Diagnostic {
	p := descriptorPath(d)
	if p == nil {
		return position(d, sub)
	}
	p = append(p, sub...)
	locs := d.ParentFile().SourceLocations()
	if loc := locs.ByPath(p); len(loc.Path) > 0 {
		return position(d, sub)
	}
	best := Diagnostic{}
	for i := range locs.Len() {
		loc := locs.Get(i)
		if len(loc.Path) <= len(p) || !slices.Equal(loc.Path[:len(p)], p) {
			continue
		}
		line, col := loc.StartLine+1, loc.StartColumn+1
		if best.Line == 0 || line < best.Line || line == best.Line && col < best.Col {
			best = Diagnostic{File: d.ParentFile().Path(), Line: line, Col: col}
		}
	}
	if best.Line == 0 {
		return position(d, sub)
	}
	return best
}
