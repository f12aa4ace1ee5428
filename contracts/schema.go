package contracts

import (
	"fmt"
	"slices"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Kind says whether a Schema is a regional table or a global record.
type Kind int

const (
	// KindTable is a regional table, declared with option (strata.v1.table).
	KindTable Kind = iota + 1
	// KindRecord is a global record, declared with option (strata.v1.record).
	KindRecord
)

// String returns "table" or "record".
func (k Kind) String() string {
	switch k {
	case KindTable:
		return "table"
	case KindRecord:
		return "record"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// entry names one entry of a schema of kind k.
func (k Kind) entry() string {
	if k == KindTable {
		return "row"
	}
	return "record"
}

// Schema is one table or one record of a Contract: its message type, its
// key, its limits, and the operations the agent runs on its values.
//
// A Schema is shared by everyone holding the Contract: its fields must not be
// modified. All its methods are safe for concurrent use.
type Schema struct {
	// Name is the table or record name from the option, e.g. "machines".
	Name string
	// Kind is KindTable or KindRecord.
	Kind Kind
	// Desc is the message type of the rows or records.
	Desc protoreflect.MessageDescriptor
	// Key holds the key fields, in key order; at least one, each a
	// singular top-level string, integer, bool or enum field of Desc.
	Key []protoreflect.FieldDescriptor
	// MaxPerRegion bounds the number of entries one region may hold, for
	// records; 0 means no limit (and always 0 for tables).
	MaxPerRegion int
	// MaxBytes bounds the binary-encoded size of one entry, in bytes, for
	// records; 0 means no limit (and always 0 for tables).
	MaxBytes int

	c        *Contract
	numbers  []protowire.Number          // top-level field numbers, sorted
	byJSON   map[string]protowire.Number // JSON and proto names of top-level fields
	regional []string                    // paths of regional_only fields
	wire     *wireMsg                    // tables for the strict wire walk
	pool     sync.Pool                   // of *dynamicpb.Message, for CheckWrite
	// required is set when the message holds, at any depth, a proto2
	// required field: only then must decoding check initialization.
	required bool
	// collect guides the leak collector: which messages can hold
	// regional_only fields.
	collect *collectPlan
}

// init computes what the methods need; it runs once all files are read.
func (s *Schema) init() {
	fields := s.Desc.Fields()
	s.byJSON = make(map[string]protowire.Number, 2*fields.Len())
	for i := range fields.Len() {
		f := fields.Get(i)
		s.numbers = append(s.numbers, f.Number())
		s.byJSON[string(f.Name())] = f.Number()
		s.byJSON[f.JSONName()] = f.Number()
		walkFields(f, []protoreflect.MessageDescriptor{s.Desc}, func(path []protoreflect.FieldDescriptor) {
			if s.c.regionalOnly[path[len(path)-1].FullName()] {
				s.regional = append(s.regional, fieldPath(path))
			}
		})
	}
	slices.Sort(s.numbers)
	s.wire = wireTables(s.Desc, s.c.wire)
	s.required = hasRequired(s.Desc, map[protoreflect.FullName]bool{})
	if s.Kind == KindTable {
		s.collect = s.c.collectPlan(s.Name, s.Desc)
	}
}

// hasRequired reports whether md or a message reachable from it declares a
// required field. seen stops recursion.
func hasRequired(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	if md.RequiredNumbers().Len() > 0 {
		return true
	}
	fields := md.Fields()
	for i := range fields.Len() {
		if sub := fields.Get(i).Message(); sub != nil && hasRequired(sub, seen) {
			return true
		}
	}
	return false
}

// String returns e.g. `table "machines" (fleet.v1.Machine)`.
func (s *Schema) String() string {
	return fmt.Sprintf("%s %q (%s)", s.Kind, s.Name, s.Desc.FullName())
}

// RegionalOnly reports whether field fd, of the schema's message or of any
// message in the contract, is marked (strata.v1.regional_only). Fields are
// matched by full name, so fd may come from another copy of the same
// descriptors (e.g. generated Go code).
func (s *Schema) RegionalOnly(fd protoreflect.FieldDescriptor) bool {
	return fd != nil && s.c.regionalOnly[fd.FullName()]
}

// RegionalOnlyPaths returns the paths, with proto names joined by "." (e.g.
// "private_ip", "spec.host"), of the regional_only fields reachable from the
// schema's message, in declaration order, in a new slice. Paths stop at
// recursive message types. It is always empty for a record.
func (s *Schema) RegionalOnlyPaths() []string { return slices.Clone(s.regional) }

// FieldNumbers returns the numbers of all top-level fields of the message,
// sorted, in a new slice.
func (s *Schema) FieldNumbers() []protowire.Number { return slices.Clone(s.numbers) }

// jsonOptions decide how rows and records look in JSON: protojson's default
// lowerCamelCase field names (input accepts proto names too), enums by name,
// and every field, set or not, so a reader sees the whole row.
func (s *Schema) jsonOptions() protojson.MarshalOptions {
	return protojson.MarshalOptions{EmitUnpopulated: true, Resolver: s.c.types}
}

// EncodeJSON encodes m, which must be of the schema's type, as protojson
// with lowerCamelCase field names (e.g. "privateIp"), enum values by name and
// unpopulated fields included with their default values. The output is not
// byte-stable across protobuf versions (protojson varies whitespace on
// purpose); compare it as JSON, not as bytes.
func (s *Schema) EncodeJSON(m proto.Message) ([]byte, error) {
	if err := s.checkType(message(m)); err != nil {
		return nil, err
	}
	return s.jsonOptions().Marshal(m)
}
