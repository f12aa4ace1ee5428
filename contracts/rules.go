package contracts

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// namePattern is what a table or record name may look like: it appears in
// URL paths, reducer manifests and metric labels.
var namePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

// Field numbers inside TableOptions and RecordOptions, for positions.
const (
	optNameField = 1
	optKeyField  = 2
)

// Field numbers of descriptor.proto, for source paths.
const (
	filePackageField      = 2  // FileDescriptorProto.package
	fileMessagesField     = 4  // FileDescriptorProto.message_type
	fileEnumsField        = 5  // FileDescriptorProto.enum_type
	messageFieldsField    = 2  // DescriptorProto.field
	messageNestedField    = 3  // DescriptorProto.nested_type
	messageEnumsField     = 4  // DescriptorProto.enum_type
	messageOptionsField   = 7  // DescriptorProto.options
	messageOneofsField    = 8  // DescriptorProto.oneof_decl
	messageReservedRanges = 9  // DescriptorProto.reserved_range
	messageReservedNames  = 10 // DescriptorProto.reserved_name
	fieldTypeField        = 5  // FieldDescriptorProto.type
	fieldTypeNameField    = 6  // FieldDescriptorProto.type_name
	fieldLabelField       = 4  // FieldDescriptorProto.label
	fieldNumberField      = 3  // FieldDescriptorProto.number
	fieldJSONNameField    = 10 // FieldDescriptorProto.json_name
	fieldOptionsField     = 8  // FieldDescriptorProto.options
	enumValuesField       = 2  // EnumDescriptorProto.value
	enumReservedRanges    = 4  // EnumDescriptorProto.reserved_range
	enumReservedNames     = 5  // EnumDescriptorProto.reserved_name
	enumValueNameField    = 1  // EnumValueDescriptorProto.name
)

// Rule ids of strata's compile-time rules, as Diagnostic.Rule reports
// them. They are part of `strata contract check`'s output: never change
// one (docs/CONTRACT_CHECK.md lists them).
const (
	ruleCompile            = "COMPILE"                 // protobuf syntax, types, imports
	ruleOption             = "STRATA_OPTION"           // a strata option that cannot be read
	ruleName               = "SCHEMA_NAME"             // table or record name missing or malformed
	ruleNameUnique         = "SCHEMA_NAME_UNIQUE"      // two tables or records with one name
	ruleKey                = "SCHEMA_KEY"              // key missing, unknown, repeated or not scalar
	ruleTableOrRecord      = "SCHEMA_TABLE_OR_RECORD"  // a message both a table and a record
	ruleRecordRegionalOnly = "RECORD_NO_REGIONAL_ONLY" // a record reaches a regional_only field
	ruleRecordTable        = "RECORD_NO_TABLE_MESSAGE" // a record reaches a table's message
	ruleValidateCompile    = "VALIDATE_RULES_COMPILE"  // protovalidate rules that do not compile
)

// maxNesting bounds how deep the checks follow message fields; deeper
// contracts are unusual and their deep fields go unchecked.
const maxNesting = 32

// checker walks a contract's files, builds its schemas and collects every
// violation of strata's rules as a positioned Diagnostic.
type checker struct {
	c     *Contract
	opts  strataOptions
	diags []Diagnostic

	// tableMsgs maps the full name of each table's message to its schema.
	tableMsgs map[protoreflect.FullName]*Schema
	// badRecords are records with a bad name or key: left out of the
	// contract, but still checked for leaks so every problem is reported.
	badRecords []*Schema
}

// errorf records a problem breaking rule at descriptor d, at the sub-path
// of d's source location when there is one (e.g. inside its options), or at
// d itself.
func (ck *checker) errorf(rule string, d protoreflect.Descriptor, sub []int32, format string, args ...any) {
	diag := position(d, sub)
	diag.Rule = rule
	diag.Msg = fmt.Sprintf(format, args...)
	ck.diags = append(ck.diags, diag)
}

// position returns the source position of d, or of the element at sub-path
// sub under d; it falls back to the longest prefix of the path that has a
// location.
func position(d protoreflect.Descriptor, sub []int32) Diagnostic {
	fd := d.ParentFile()
	diag := Diagnostic{File: fd.Path()}
	p := descriptorPath(d)
	if p == nil {
		return diag
	}
	p = append(p, sub...)
	locs := fd.SourceLocations()
	for ; len(p) > 0; p = p[:len(p)-1] {
		if loc := locs.ByPath(p); len(loc.Path) > 0 {
			diag.Line, diag.Col = loc.StartLine+1, loc.StartColumn+1
			return diag
		}
	}
	return diag
}

// descriptorPath returns the source path of a message, a message's field or
// oneof, an enum or an enum value, or nil for other descriptors.
func descriptorPath(d protoreflect.Descriptor) protoreflect.SourcePath {
	switch d := d.(type) {
	case protoreflect.MessageDescriptor:
		switch parent := d.Parent().(type) {
		case protoreflect.FileDescriptor:
			return protoreflect.SourcePath{fileMessagesField, int32(d.Index())}
		case protoreflect.MessageDescriptor:
			if p := descriptorPath(parent); p != nil {
				return append(p, messageNestedField, int32(d.Index()))
			}
		}
	case protoreflect.FieldDescriptor:
		if d.IsExtension() {
			return nil
		}
		if p := descriptorPath(d.ContainingMessage()); p != nil {
			return append(p, messageFieldsField, int32(d.Index()))
		}
	case protoreflect.OneofDescriptor:
		if p := descriptorPath(d.Parent()); p != nil {
			return append(p, messageOneofsField, int32(d.Index()))
		}
	case protoreflect.EnumDescriptor:
		switch parent := d.Parent().(type) {
		case protoreflect.FileDescriptor:
			return protoreflect.SourcePath{fileEnumsField, int32(d.Index())}
		case protoreflect.MessageDescriptor:
			if p := descriptorPath(parent); p != nil {
				return append(p, messageEnumsField, int32(d.Index()))
			}
		}
	case protoreflect.EnumValueDescriptor:
		if p := descriptorPath(d.Parent()); p != nil {
			return append(p, enumValuesField, int32(d.Index()))
		}
	}
	return nil
}

// declaration is a message's strata option, as read from its descriptor.
type declaration struct {
	kind Kind
	ext  protoreflect.ExtensionDescriptor
	opt  *dynamicpb.Message
}

// file builds the schemas declared in fd and records its regional_only
// fields.
func (ck *checker) file(fd protoreflect.FileDescriptor) {
	msgs := fd.Messages()
	for i := range msgs.Len() {
		ck.message(msgs.Get(i))
	}
}

// message reads the options of md and of its fields, builds md's schema if
// it declares one, and recurses into nested messages.
func (ck *checker) message(md protoreflect.MessageDescriptor) {
	if md.IsMapEntry() {
		return
	}
	fields := md.Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		ro, err := boolOption(f.Options(), ck.opts.regionalOnly)
		if err != nil {
			ck.errorf(ruleOption, f, []int32{fieldOptionsField}, "cannot read option %s: %v", regionalOnlyExtName, err)
		}
		if ro {
			ck.c.regionalOnly[f.FullName()] = true
		}
	}

	var decls []declaration
	for _, d := range []declaration{{kind: KindTable, ext: ck.opts.table}, {kind: KindRecord, ext: ck.opts.record}} {
		opt, err := messageOption(md.Options(), d.ext)
		if err != nil {
			ck.errorf(ruleOption, md, []int32{messageOptionsField}, "cannot read option %s: %v", d.ext.FullName(), err)
			continue
		}
		if opt != nil {
			d.opt = opt
			decls = append(decls, d)
		}
	}
	switch len(decls) {
	case 1:
		ck.schema(md, decls[0])
	case 2:
		ck.errorf(ruleTableOrRecord, md, []int32{messageOptionsField, int32(ck.opts.record.Number())},
			"message %s is both a table and a record; a message is one or the other", md.FullName())
	}

	nested := md.Messages()
	for i := range nested.Len() {
		ck.message(nested.Get(i))
	}
}

// schema builds the Schema of md declared by d, checking its name and key.
func (ck *checker) schema(md protoreflect.MessageDescriptor, d declaration) {
	optPath := []int32{messageOptionsField, int32(d.ext.Number())}
	at := func(sub ...int32) []int32 { return append(slices.Clone(optPath), sub...) }
	s := &Schema{
		Name: stringField(d.opt, "name"),
		Kind: d.kind,
		Desc: md,
		c:    ck.c,
	}
	ok := true
	switch {
	case s.Name == "":
		ck.errorf(ruleName, md, at(optNameField), "%s %s: name is required", d.kind, md.FullName())
		ok = false
	case !namePattern.MatchString(s.Name):
		ck.errorf(ruleName, md, at(optNameField),
			"%s %s: name %q is not valid: use a letter, then letters, digits, '_' or '-', at most 64 characters",
			d.kind, md.FullName(), s.Name)
		ok = false
	}
	label := fmt.Sprintf("%s %q", d.kind, s.Name)
	if !ok {
		label = fmt.Sprintf("%s %s", d.kind, md.FullName())
	}

	key := stringsField(d.opt, "key")
	if len(key) == 0 {
		ck.errorf(ruleKey, md, at(), "%s: key is required: list the fields that identify a %s", label, d.kind.entry())
		ok = false
	}
	for i, name := range key {
		pos := at(optKeyField, int32(i))
		f := md.Fields().ByName(protoreflect.Name(name))
		switch {
		case f == nil:
			ck.errorf(ruleKey, md, pos, "%s: key field %q does not exist in %s", label, name, md.FullName())
		case slices.Index(key, name) < i:
			ck.errorf(ruleKey, md, pos, "%s: key field %q is listed twice", label, name)
		case f.IsList() || f.IsMap():
			ck.errorf(ruleKey, md, pos, "%s: key field %q is %s; a key field must be a singular string, integer, bool or enum field",
				label, name, cardinality(f))
		case !keyKinds[f.Kind()]:
			ck.errorf(ruleKey, md, pos, "%s: key field %q has type %s; a key field must be a singular string, integer, bool or enum field",
				label, name, typeName(f))
		default:
			s.Key = append(s.Key, f)
			continue
		}
		ok = false
	}
	if d.kind == KindRecord {
		s.MaxPerRegion = int(uintField(d.opt, "max_per_region"))
		s.MaxBytes = int(uintField(d.opt, "max_bytes"))
	}
	if !ok {
		if d.kind == KindRecord {
			ck.badRecords = append(ck.badRecords, s)
		}
		return
	}
	if d.kind == KindTable {
		ck.c.tables = append(ck.c.tables, s)
	} else {
		ck.c.records = append(ck.c.records, s)
	}
}

// keyKinds are the kinds a key field may have: values with one obvious,
// stable text form.
var keyKinds = map[protoreflect.Kind]bool{
	protoreflect.StringKind:   true,
	protoreflect.BoolKind:     true,
	protoreflect.EnumKind:     true,
	protoreflect.Int32Kind:    true,
	protoreflect.Sint32Kind:   true,
	protoreflect.Sfixed32Kind: true,
	protoreflect.Int64Kind:    true,
	protoreflect.Sint64Kind:   true,
	protoreflect.Sfixed64Kind: true,
	protoreflect.Uint32Kind:   true,
	protoreflect.Fixed32Kind:  true,
	protoreflect.Uint64Kind:   true,
	protoreflect.Fixed64Kind:  true,
}

func cardinality(f protoreflect.FieldDescriptor) string {
	if f.IsMap() {
		return "a map"
	}
	return "repeated"
}

func typeName(f protoreflect.FieldDescriptor) string {
	switch f.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return string(f.Message().FullName())
	case protoreflect.EnumKind:
		return string(f.Enum().FullName())
	}
	return f.Kind().String()
}

// contract runs the checks that span schemas: unique names and the static
// leak guard on records. It sorts the schemas by name.
func (ck *checker) contract() {
	all := slices.Concat(ck.c.tables, ck.c.records)
	seen := map[string]*Schema{}
	for _, s := range all {
		if prev, dup := seen[s.Name]; dup {
			ck.errorf(ruleNameUnique, s.Desc, []int32{messageOptionsField, int32(s.ext(ck.opts).Number()), optNameField},
				"%s name %q is already used by %s %s at %s; table and record names must be unique",
				s.Kind, s.Name, prev.Kind, prev.Desc.FullName(), position(prev.Desc, nil).where())
			continue
		}
		seen[s.Name] = s
	}

	ck.tableMsgs = map[protoreflect.FullName]*Schema{}
	for _, s := range ck.c.tables {
		ck.tableMsgs[s.Desc.FullName()] = s
	}
	for _, s := range slices.Concat(ck.c.records, ck.badRecords) {
		ck.record(s)
	}

	for _, s := range all {
		s.init()
	}
	byName := func(a, b *Schema) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(ck.c.tables, byName)
	slices.SortFunc(ck.c.records, byName)
}

// ext returns the option extension that declares s.
func (s *Schema) ext(o strataOptions) protoreflect.ExtensionDescriptor {
	if s.Kind == KindTable {
		return o.table
	}
	return o.record
}

// record checks the static leak guard on record s: no regional_only field
// and no table message, at any depth. Problems deeper than a top-level
// field are reported at the top-level field that leads to them.
func (ck *checker) record(s *Schema) {
	label := fmt.Sprintf("record %q", s.Name)
	if s.Name == "" {
		label = fmt.Sprintf("record %s", s.Desc.FullName())
	}
	fields := s.Desc.Fields()
	for i := range fields.Len() {
		top := fields.Get(i)
		walkFields(top, []protoreflect.MessageDescriptor{s.Desc}, func(path []protoreflect.FieldDescriptor) {
			f := path[len(path)-1]
			p := fieldPath(path)
			if ck.c.regionalOnly[f.FullName()] {
				if len(path) == 1 {
					ck.errorf(ruleRecordRegionalOnly, top, nil, "%s: field %q is marked regional_only; a record may not carry regional-only data", label, p)
				} else {
					ck.errorf(ruleRecordRegionalOnly, top, nil, "%s: field %q (%s) is marked regional_only; a record may not carry regional-only data",
						label, p, f.FullName())
				}
			}
			if md := messageOf(f); md != nil {
				if t, ok := ck.tableMsgs[md.FullName()]; ok {
					ck.errorf(ruleRecordTable, top, nil, "%s: field %q has type %s, the message of table %q; a record may not carry a table's rows",
						label, p, md.FullName(), t.Name)
				}
			}
		})
	}
}

// walkFields calls fn with the path to f and to every field reachable from
// f through message fields (map values and list elements included). stack
// holds the messages being walked, to stop at recursive types.
func walkFields(f protoreflect.FieldDescriptor, stack []protoreflect.MessageDescriptor, fn func(path []protoreflect.FieldDescriptor)) {
	var walk func(path []protoreflect.FieldDescriptor, stack []protoreflect.MessageDescriptor)
	walk = func(path []protoreflect.FieldDescriptor, stack []protoreflect.MessageDescriptor) {
		fn(path)
		md := messageOf(path[len(path)-1])
		if md == nil || len(path) >= maxNesting {
			return
		}
		for _, s := range stack {
			if s.FullName() == md.FullName() {
				return // recursive type: its fields were or will be seen
			}
		}
		stack = append(stack, md)
		fields := md.Fields()
		for i := range fields.Len() {
			walk(append(path[:len(path):len(path)], fields.Get(i)), stack)
		}
	}
	walk([]protoreflect.FieldDescriptor{f}, stack)
}

// messageOf returns the message type f holds (its map value's for a map),
// or nil when f holds no message.
func messageOf(f protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if f.IsMap() {
		f = f.MapValue()
	}
	return f.Message()
}

// fieldPath formats a field path with proto names, e.g. "spec.host".
func fieldPath(path []protoreflect.FieldDescriptor) string {
	var b strings.Builder
	for i, f := range path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(string(f.Name()))
	}
	return b.String()
}
