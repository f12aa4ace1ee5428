package interrupt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// MaxLocals bounds the locals of one function (as in web browsers),
	// MaxModuleLocals those of all functions: wazero keeps about 8 bytes
	// per declared local as long as the module is compiled. A Go module
	// declares about 4 per function, 17 at most.
	MaxLocals       = 50_000
	MaxModuleLocals = 1 << 21
	// MaxArity bounds the parameters, and the results, of a function
	// type (as in web browsers). A call instruction weighs one plus the
	// parameters and results it passes; MaxFunctionCalls bounds the weight
	// of one function's calls, MaxModuleCalls the module's. wazero's
	// compiler keeps 600-700 bytes per unit of weight while it compiles a
	// function: a 20 kB module of 4,000 calls of 8,000 values each ran the
	// agent out of memory, and a million calls of () -> () in one function
	// took 1.2 GB. The example Go reducer makes 13,902 calls of at most 5
	// values.
	MaxArity         = 1000
	MaxFunctionCalls = 1 << 18
	MaxModuleCalls   = 1 << 22
	// MaxNesting bounds the nesting of blocks, loops and ifs in a
	// function, MaxLoopNesting that of loops: wazero's compile time grows
	// with the body's size times its nesting (10,000 nested loops in a 30
	// kB module took 17 s). The example nests 549 deep, loops 1.
	MaxNesting     = 4096
	MaxLoopNesting = 64
	// MaxTableEntries bounds the tables of a module, 8 MiB of references
	// in all: a table's memory is not counted in the memory limit, and
	// without a maximum table.grow may ask wazero for 2^32 entries.
	// Instrument refuses a module whose tables' minimums add up to more,
	// and lowers the maximum of each table so that the maximums add up to
	// at most MaxTableEntries (growing past it fails, as the
	// specification allows). A Go module has one table, with one entry
	// per function.
	MaxTableEntries = 1 << 20
)

// Errors of Instrument wrap one of these.
var (
	// ErrMalformed: the module is not valid WebAssembly: its structure is
	// wrong, it declares more entries than its bytes can hold (wazero v1.12
	// allocates what a count claims before reading: a 16-byte module
	// claiming 2^29 elements exhausts the host's memory), or it refers to
	// a type, function or global it does not have.
	ErrMalformed = errors.New("malformed WebAssembly module")
	// ErrUnsupported: the module may be valid, but uses what the host
	// does not run: an instruction outside wazero's core features, a table
	// or function over the limits, an import of the host function.
	ErrUnsupported = errors.New("unsupported WebAssembly module")
)

// module is what Instrument learns of a module before rewriting it.
type module struct {
	types        uint32   // entries of the type section
	funcImports  uint32   // imported functions: indices below keep their number
	funcs        uint32   // functions in all: imported and defined
	globals      uint32   // globals in all: imported and defined
	locals       uint64   // declared by the function bodies read so far
	arity        []uint32 // parameters and results of each type
	funcType     []uint32 // type of each function
	callWeight   uint64   // of the calls read so far: see MaxModuleCalls
	fnCallWeight uint64   // of the calls of the function being read
	nesting      []bool   // rewriteBody's, reused from one body to the next
}

// call weighs a call of a function of type t.
func (m *module) call(t uint32) error {
	w := 1 + uint64(m.arity[t])
	m.callWeight += w
	m.fnCallWeight += w
	switch {
	case m.fnCallWeight > MaxFunctionCalls:
		return fmt.Errorf("the function's calls weigh %d (one per call, plus the values passed), over the limit of %d", m.fnCallWeight, MaxFunctionCalls)
	case m.callWeight > MaxModuleCalls:
		return fmt.Errorf("the module's calls weigh %d so far (one per call, plus the values passed), over the limit of %d", m.callWeight, MaxModuleCalls)
	}
	return nil
}

// reference checks a reference to function x from a table or ref.func:
// it must exist, and not be imported. A call through a table is not
// charged as a call of an imported function is, and a host function may
// do much work in one call.
func (m *module) reference(x uint32) error {
	switch {
	case x >= m.funcs:
		return malformed("function %d does not exist", x)
	case x < m.funcImports:
		return fmt.Errorf("imported function %d is referenced from a table or ref.func (calls through tables are not counted)", x)
	}
	return nil
}

// malformedError is a structural error: the bytes are not WebAssembly.
type malformedError struct{ msg string }

func (e *malformedError) Error() string { return e.msg }

func malformed(format string, args ...any) error {
	return &malformedError{fmt.Sprintf(format, args...)}
}

// readTypes counts the types of a type section, checking their parameter
// and result counts.
func (m *module) readTypes(s section) error {
	r := s.reader()
	n := r.count()
	m.arity = make([]uint32, 0, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		if form := r.byte(); r.err == nil && form != 0x60 {
			return fmt.Errorf("type %d: form %#x: only function types are supported", i, form)
		}
		var arity uint32
		for _, what := range []string{"parameters", "results"} {
			k := r.count()
			if r.err == nil && k > MaxArity {
				return fmt.Errorf("type %d: %d %s, over the limit of %d", i, k, what, MaxArity)
			}
			for j := uint32(0); j < k && r.err == nil; j++ {
				r.valType()
			}
			arity += k
		}
		m.arity = append(m.arity, arity)
	}
	m.types = n
	return r.end()
}

// readImports counts the function and global imports, checks their
// types, and refuses a module that imports the host function itself.
func (m *module) readImports(s section) error {
	r := s.reader()
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		mod := r.name()
		name := r.name()
		if mod == ImportModule && name == ImportName {
			return fmt.Errorf("the module imports %s.%s itself", mod, name)
		}
		switch kind := r.byte(); kind {
		case 0: // function: type index
			x := r.u32()
			if r.err == nil && x >= m.types {
				return malformed("import %d: type %d does not exist", i, x)
			}
			m.funcType = append(m.funcType, x)
			m.funcImports++
		case 1: // table: reftype, limits
			r.refType()
			r.limits()
		case 2: // memory: limits
			r.limits()
		case 3: // global: valtype, mutability
			r.globalType()
			m.globals++
		case 4:
			return fmt.Errorf("import %d: a tag: exception handling is not supported", i)
		default:
			if r.err == nil {
				return malformed("import %d: unknown kind %#x", i, kind)
			}
		}
	}
	m.funcs = m.funcImports
	return r.end()
}

// readFunctions counts the defined functions and checks their types.
func (m *module) readFunctions(s section) error {
	r := s.reader()
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		x := r.u32()
		if r.err == nil && x >= m.types {
			return malformed("function %d: type %d does not exist", m.funcImports+i, x)
		}
		m.funcType = append(m.funcType, x)
	}
	m.funcs = m.funcImports + n
	return r.end()
}

// checkData checks the data segments.
func (m *module) checkData(s section) error {
	r := s.reader()
	n := r.count()
	for i := uint32(0); i < n && r.err == nil; i++ {
		switch flags := r.u32(); flags {
		case 0, 2: // active: (memory index), offset
			if flags == 2 {
				r.u32()
			}
			if _, err := m.constExpr(nil, &r); err != nil {
				return fmt.Errorf("data segment %d: %w", i, err)
			}
		case 1: // passive
		default:
			if r.err == nil {
				return malformed("data segment %d: flags %d", i, flags)
			}
		}
		r.bytes(int(r.count()))
	}
	return r.end()
}

// countGlobals counts the entries of a global section, reading them all.
func countGlobals(s section) (uint32, error) {
	r := s.reader()
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.globalType()
		for op := r.byte(); op != 0x0b && r.err == nil; op = r.byte() {
			if err := skipImmediates(&r, op); err != nil {
				return 0, fmt.Errorf("global %d: %w", i, err)
			}
		}
	}
	return n, r.end()
}

// admit reads the module's sections, in order, and what they declare:
// types, imports, functions, globals and data. It refuses a module that
// is not well-formed or claims more entries than its bytes can hold, and
// what the host does not run (see Instrument). Function bodies, tables,
// exports and elements are checked as rewrite reads them.
func admit(bin []byte) ([]section, *module, error) {
	if len(bin) < 8 || !bytes.Equal(bin[:4], []byte("\x00asm")) {
		return nil, nil, malformed("not a WebAssembly binary (no \\0asm header)")
	}
	if v := binary.LittleEndian.Uint32(bin[4:8]); v != 1 {
		return nil, nil, malformed("WebAssembly binary version %d, want 1", v)
	}
	var (
		secs []section
		m    = new(module)
	)
	lastPos := 0 // of the last non-custom section
	r := reader{b: bin, off: 8}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		off := r.off
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, nil, fmt.Errorf("%s: %w", sectionName(id), r.err)
		}
		if id != secCustom {
			pos, ok := order[id]
			switch {
			case !ok:
				return nil, nil, malformed("unknown section id %d", id)
			case id == secTag:
				return nil, nil, errors.New("tag section: exception handling is not supported")
			case pos <= lastPos:
				return nil, nil, malformed("%s at byte %#x: out of order or repeated", sectionName(id), off)
			}
			lastPos = pos
		}
		if vectorSections[id] {
			v := reader{b: body}
			if n := v.u32(); v.err != nil || int64(n) > int64(len(body)-v.off) {
				return nil, nil, malformed("%s at byte %#x claims %d entries in %d bytes", sectionName(id), off, n, len(body))
			}
		}
		secs = append(secs, section{id, body, off})
	}

	// What the module declares, in section order: each section may refer
	// only to what those before it declare.
	for _, s := range secs {
		var err error
		switch s.id {
		case secType:
			err = m.readTypes(s)
		case secImport:
			err = m.readImports(s)
		case secFunction:
			err = m.readFunctions(s)
		case secGlobal:
			var n uint32
			n, err = countGlobals(s)
			m.globals += n
		case secDataCount:
			r := s.reader()
			r.u32()
			err = r.end()
		case secData:
			err = m.checkData(s)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", sectionName(s.id), err)
		}
	}
	return secs, m, nil
}
