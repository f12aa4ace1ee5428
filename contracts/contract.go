package contracts

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Contract is a compiled contract: its tables, its records and the
// descriptors of every file they need. It is immutable, and safe for
// concurrent use by multiple goroutines.
type Contract struct {
	files     *protoregistry.Files
	types     *dynamicpb.Types
	closure   []protoreflect.FileDescriptor // dependencies first
	validator protovalidate.Validator

	tables, records   []*Schema // sorted by name
	byTable, byRecord map[string]*Schema

	// regionalOnly holds the full names of all fields marked regional_only.
	regionalOnly map[protoreflect.FullName]bool
	// wire holds the strict wire walk's tables of every message reachable
	// from a table or record.
	wire map[protoreflect.FullName]*wireMsg
}

// Tables returns the contract's tables, sorted by name, in a new slice.
func (c *Contract) Tables() []*Schema { return slices.Clone(c.tables) }

// Records returns the contract's records, sorted by name, in a new slice.
func (c *Contract) Records() []*Schema { return slices.Clone(c.records) }

// Table returns the table called name.
func (c *Contract) Table(name string) (*Schema, bool) {
	s, ok := c.byTable[name]
	return s, ok
}

// Record returns the record called name.
func (c *Contract) Record(name string) (*Schema, bool) {
	s, ok := c.byRecord[name]
	return s, ok
}

// Files returns the registry of every file of the contract: the compiled
// files and all they import, strata's options and protovalidate's rules
// included. Callers must not register more files in it.
func (c *Contract) Files() *protoregistry.Files { return c.files }

// FileDescriptors returns the contract's files, each after its
// dependencies, strata's options and protovalidate's rules included, in a
// new slice.
func (c *Contract) FileDescriptors() []protoreflect.FileDescriptor { return slices.Clone(c.closure) }

// FileDescriptorSet returns the descriptors of every file of the contract,
// each after its dependencies, with source info (positions and comments).
// The set is a new copy on each call. It is what `protoc
// --include_imports --include_source_info` would write, and what a later
// compatibility check compares against.
func (c *Contract) FileDescriptorSet() *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{File: make([]*descriptorpb.FileDescriptorProto, len(c.closure))}
	for i, fd := range c.closure {
		set.File[i] = protodesc.ToFileDescriptorProto(fd)
	}
	return set
}

// newContract builds the Contract of the linked roots and checks strata's
// rules on it.
func newContract(roots []protoreflect.FileDescriptor) (*Contract, error) {
	c := &Contract{
		files:        new(protoregistry.Files),
		byTable:      map[string]*Schema{},
		byRecord:     map[string]*Schema{},
		regionalOnly: map[protoreflect.FullName]bool{},
		wire:         map[protoreflect.FullName]*wireMsg{},
	}
	c.closure = closure(roots)
	for _, fd := range c.closure {
		if err := c.files.RegisterFile(fd); err != nil {
			return nil, fmt.Errorf("contracts: register %s: %w", fd.Path(), err)
		}
	}
	c.types = dynamicpb.NewTypes(c.files)

	ck := &checker{c: c, opts: findOptions(c.files)}
	for _, fd := range c.closure {
		ck.file(fd)
	}
	ck.contract()
	if err := c.newValidator(ck); err != nil {
		return nil, err
	}
	if len(ck.diags) > 0 {
		ce := newCompileError(ck.diags)
		ce.Files = c.closure
		return nil, ce
	}
	for _, s := range c.tables {
		c.byTable[s.Name] = s
	}
	for _, s := range c.records {
		c.byRecord[s.Name] = s
	}
	return c, nil
}

// newValidator builds the contract's one protovalidate.Validator, warmed up
// with every table and record, and reports rules that do not compile (a bad
// CEL expression, a string rule on an int field) as diagnostics.
func (c *Contract) newValidator(ck *checker) error {
	var descs []protoreflect.MessageDescriptor
	for _, s := range slices.Concat(c.tables, c.records) {
		descs = append(descs, s.Desc)
	}
	v, err := protovalidate.New(
		protovalidate.WithMessageDescriptors(descs...),
		// Predefined rules declared by the contract itself are extensions
		// only the contract knows.
		protovalidate.WithExtensionTypeResolver(extensionResolver{c.types}),
	)
	if err != nil {
		return fmt.Errorf("contracts: build validator: %w", err)
	}
	c.validator = v
	for _, s := range slices.Concat(c.tables, c.records) {
		err := v.Validate(dynamicpb.NewMessage(s.Desc))
		var ce *protovalidate.CompilationError
		if errors.As(err, &ce) {
			msg := ce.Error()
			if cause := errors.Unwrap(ce); cause != nil {
				msg = cause.Error()
			}
			// CEL appends the expression and a caret on more lines; keep
			// one line per diagnostic.
			msg, _, _ = strings.Cut(msg, "\n")
			ck.errorf(ruleValidateCompile, s.Desc, nil, "%s %q: protovalidate rules do not compile: %s", s.Kind, s.Name, msg)
		}
	}
	return nil
}

// extensionResolver resolves extensions from the contract first, then from
// the Go program's registry.
type extensionResolver struct{ types *dynamicpb.Types }

var _ protoregistry.ExtensionTypeResolver = extensionResolver{}

func (r extensionResolver) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if xt, err := r.types.FindExtensionByName(name); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByName(name)
}

func (r extensionResolver) FindExtensionByNumber(msg protoreflect.FullName, num protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if xt, err := r.types.FindExtensionByNumber(msg, num); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByNumber(msg, num)
}

// closure returns roots and everything they import, transitively, each file
// after its dependencies, in a deterministic order.
func closure(roots []protoreflect.FileDescriptor) []protoreflect.FileDescriptor {
	var out []protoreflect.FileDescriptor
	seen := map[string]bool{}
	var visit func(fd protoreflect.FileDescriptor)
	visit = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imps := fd.Imports()
		for i := range imps.Len() {
			visit(imps.Get(i).FileDescriptor)
		}
		out = append(out, fd)
	}
	for _, fd := range roots {
		visit(fd)
	}
	return out
}

// checkType returns an error unless m is a message of s's type.
func (s *Schema) checkType(m protoreflect.Message) error {
	if m == nil || !m.IsValid() {
		return fmt.Errorf("%w: %s %q: nil message", ErrWrongType, s.Kind, s.Name)
	}
	if got := m.Descriptor().FullName(); got != s.Desc.FullName() {
		return fmt.Errorf("%w: %s %q wants %s, got %s", ErrWrongType, s.Kind, s.Name, s.Desc.FullName(), got)
	}
	return nil
}

// message returns m's reflection view, or an invalid one for a nil m.
func message(m proto.Message) protoreflect.Message {
	if m == nil {
		return nil
	}
	return m.ProtoReflect()
}
