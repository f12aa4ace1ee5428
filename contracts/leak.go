package contracts

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// LeakSet holds the values of regional_only fields found in a reducer's
// input rows: the dynamic half of the leak guard. A record whose string or
// bytes value, anywhere in it, equals one of them carries regional data
// and is rejected by CheckWrite (rule RuleLeak).
//
// Only string and bytes values are collected, and never the empty string:
// numbers and bools repeat by chance too often to prove anything.
//
// A LeakSet is built by one goroutine (Collect, Add) and may then be read
// by many (CheckWrite) as long as nobody adds to it meanwhile.
type LeakSet struct {
	// values maps each value to where it was first seen, e.g.
	// "machines.host".
	values map[string]string
}

// NewLeakSet returns an empty set.
func NewLeakSet() *LeakSet { return &LeakSet{values: map[string]string{}} }

// Len returns the number of distinct values in the set.
func (l *LeakSet) Len() int {
	if l == nil {
		return 0
	}
	return len(l.values)
}

// Add adds value, seen in the field named by from (e.g. "machines.host"),
// to the set. An empty value is ignored.
func (l *LeakSet) Add(value, from string) {
	if value == "" {
		return
	}
	if _, ok := l.values[value]; !ok {
		l.values[value] = from
	}
}

// lookup reports whether b is in the set, and where it came from.
func (l *LeakSet) lookup(b []byte) (string, bool) {
	if len(b) == 0 {
		return "", false
	}
	from, ok := l.values[string(b)]
	return from, ok
}

// Collect adds to the set the string and bytes values of row's
// regional_only fields, at any depth. row must be a row of table, a
// KindTable schema. A regional_only field of message type contributes every
// string and bytes value inside it (map keys included); one of list or map
// type every element.
func (l *LeakSet) Collect(table *Schema, row proto.Message) error {
	m := message(row)
	if err := table.checkType(m); err != nil {
		return err
	}
	if table.Kind != KindTable {
		return fmt.Errorf("contracts: collect regional_only values: %s is not a table", table)
	}
	if table.collect != nil {
		l.collect(table.collect, m)
	}
	return nil
}

// collectPlan lists the fields of one message type that are regional_only
// or lead to one, so that Collect visits nothing else.
type collectPlan struct {
	desc   protoreflect.MessageDescriptor
	fields []collectField
}

// collectField is one field of a collectPlan.
type collectField struct {
	fd protoreflect.FieldDescriptor
	// regional is set when fd is marked regional_only: everything below
	// it is collected.
	regional bool
	// sub is the plan of fd's message (a map's value message), when fd is
	// not regional_only but its message can hold regional_only fields.
	sub *collectPlan
	// from is the table name and the path of fd from the table's message,
	// e.g. "machines.host", for LeakSet provenance; inside a recursive type
	// it is the path through the type's first occurrence.
	from string
}

// collectPlan returns the plan of md, the message of the table called name,
// or nil when no regional_only field can be reached from md.
func (c *Contract) collectPlan(name string, md protoreflect.MessageDescriptor) *collectPlan {
	// Find which messages reachable from md can reach a regional_only
	// field: a fixpoint, since message types may be recursive.
	var all []protoreflect.MessageDescriptor
	seen := map[protoreflect.FullName]bool{}
	var gather func(md protoreflect.MessageDescriptor)
	gather = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		all = append(all, md)
		fields := md.Fields()
		for i := range fields.Len() {
			if sub := messageOf(fields.Get(i)); sub != nil {
				gather(sub)
			}
		}
	}
	gather(md)
	reach := map[protoreflect.FullName]bool{}
	for changed := true; changed; {
		changed = false
		for _, m := range all {
			if reach[m.FullName()] {
				continue
			}
			fields := m.Fields()
			for i := range fields.Len() {
				f := fields.Get(i)
				sub := messageOf(f)
				if c.regionalOnly[f.FullName()] || (sub != nil && reach[sub.FullName()]) {
					reach[m.FullName()] = true
					changed = true
					break
				}
			}
		}
	}
	// Plans form a tree that follows the message fields, except that a
	// recursive type points back to the plan on the path above it.
	onPath := map[protoreflect.FullName]*collectPlan{}
	var build func(md protoreflect.MessageDescriptor, prefix string) *collectPlan
	build = func(md protoreflect.MessageDescriptor, prefix string) *collectPlan {
		if !reach[md.FullName()] {
			return nil
		}
		if p, ok := onPath[md.FullName()]; ok {
			return p
		}
		p := &collectPlan{desc: md}
		onPath[md.FullName()] = p
		defer delete(onPath, md.FullName())
		fields := md.Fields()
		for i := range fields.Len() {
			f := fields.Get(i)
			cf := collectField{fd: f, regional: c.regionalOnly[f.FullName()], from: prefix + string(f.Name())}
			if !cf.regional {
				sub := messageOf(f)
				if sub == nil || !reach[sub.FullName()] {
					continue
				}
				cf.sub = build(sub, cf.from+".")
			}
			p.fields = append(p.fields, cf)
		}
		return p
	}
	return build(md, name+".")
}

// collect adds the values p selects in m.
func (l *LeakSet) collect(p *collectPlan, m protoreflect.Message) {
	same := m.Descriptor() == p.desc
	for _, cf := range p.fields {
		fd := cf.fd
		if !same {
			// m comes from another copy of the descriptors (generated
			// code): Get panics on a foreign descriptor.
			if fd = m.Descriptor().Fields().ByNumber(cf.fd.Number()); fd == nil {
				continue
			}
		}
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		switch {
		case cf.regional:
			l.addAll(fd, v, cf.from)
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				l.collect(cf.sub, mv.Message())
				return true
			})
		case fd.IsList():
			list := v.List()
			for i := range list.Len() {
				l.collect(cf.sub, list.Get(i).Message())
			}
		default:
			l.collect(cf.sub, v.Message())
		}
	}
}

// addAll adds every string and bytes value in v, the value of field fd.
func (l *LeakSet) addAll(fd protoreflect.FieldDescriptor, v protoreflect.Value, from string) {
	switch {
	case fd.IsMap():
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			if fd.MapKey().Kind() == protoreflect.StringKind {
				l.Add(k.String(), from)
			}
			l.addScalar(fd.MapValue(), mv, from)
			return true
		})
	case fd.IsList():
		list := v.List()
		for i := range list.Len() {
			l.addScalar(fd, list.Get(i), from)
		}
	default:
		l.addScalar(fd, v, from)
	}
}

// addScalar adds one value of field fd (an element, for lists and maps).
func (l *LeakSet) addScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value, from string) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		l.Add(v.String(), from)
	case protoreflect.BytesKind:
		l.Add(string(v.Bytes()), from)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		v.Message().Range(func(sub protoreflect.FieldDescriptor, sv protoreflect.Value) bool {
			l.addAll(sub, sv, from)
			return true
		})
	}
}
