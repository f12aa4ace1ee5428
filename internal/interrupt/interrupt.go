// Package interrupt makes a WebAssembly module stoppable at low cost.
//
// wazero stops a running call on context cancellation only with
// WithCloseOnContextDone, which compiles every loop header into an exit to
// Go (~25 ns) to ask whether the module was closed. Go's wasm backend
// turns every taken jump of a function into a branch back to that
// function's one loop, so a Go guest pays the exit on most of its control
// flow and runs 4–8× slower (docs/BENCHMARKS.md).
//
// [Instrument] rewrites a module so that it checks for itself, inline: it
// adds a mutable i32 global, exported as [Export], and at the entry of
// every function and at every loop header the instructions
//
//	global.get $interrupt
//	if
//	  unreachable
//	end
//
// The host runs the module without WithCloseOnContextDone and, when a
// call's context ends, sets the global to 1 from another goroutine: the
// guest traps at its next loop iteration or function call, exactly the
// points where wazero's own check sits. The check is a load, a test and
// a branch not taken.
//
// A module that refers to globals it does not have (which the rewrite
// would make valid), that already exports [Export], or that uses
// instructions this package does not decode (SIMD, threads, exceptions,
// GC) is refused with an error wrapping [ErrUnsupported]; the host then
// runs it unmodified with wazero's check. Instrument does no I/O and
// never panics on malformed input.
package interrupt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// MaxLocals bounds the locals of one function (as in web browsers).
const MaxLocals = 50_000

// Export is the name of the global that Instrument adds and exports.
const Export = "strata.interrupt"

// Errors of Instrument wrap one of these.
var (
	// ErrUnsupported: the module may be valid, but Instrument cannot
	// rewrite it; wazero can still run it as it is.
	ErrUnsupported = errors.New("module cannot be instrumented")
	// ErrMalformed: the module is not valid WebAssembly, or declares
	// more entries than its bytes can hold (wazero v1.12 allocates what a
	// count claims before reading: a 16-byte module claiming 2^31
	// elements exhausts the host's memory). Do not give it to wazero.
	ErrMalformed = errors.New("malformed WebAssembly module")
)

// vectorSections are the sections that start with an entry count; each
// entry takes at least one byte.
var vectorSections = map[byte]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 9: true, 10: true, 11: true, 13: true}

const (
	secCustom   = 0
	secImport   = 2
	secGlobal   = 6
	secExport   = 7
	secCode     = 10
	externGlobl = 3
)

// order gives the position of each known section in a module (the data
// count section, 12, comes before the code section).
var order = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type section struct {
	id   byte
	body []byte
}

// Instrument returns a copy of the module bin with an interrupt check at
// every function entry and loop header, and the interrupt global exported
// as Export. bin is not modified.
func Instrument(bin []byte) ([]byte, error) {
	if len(bin) < 8 || !bytes.Equal(bin[:4], []byte("\x00asm")) {
		return nil, fmt.Errorf("%w: not a WebAssembly binary (no \\0asm header)", ErrMalformed)
	}
	if binary.LittleEndian.Uint32(bin[4:8]) != 1 {
		return nil, fmt.Errorf("%w: WebAssembly binary version %d, want 1", ErrMalformed, binary.LittleEndian.Uint32(bin[4:8]))
	}
	var secs []section
	r := reader{b: bin, off: 8}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.err)
		}
		if id != secCustom {
			if _, ok := order[id]; !ok {
				return nil, fmt.Errorf("%w: unknown section id %d", ErrUnsupported, id)
			}
		}
		if vectorSections[id] {
			v := reader{b: body}
			if n := v.u32(); v.err != nil || int64(n) > int64(len(body)-v.off) {
				return nil, fmt.Errorf("%w: section %d claims %d entries in %d bytes", ErrMalformed, id, n, len(body))
			}
		}
		secs = append(secs, section{id, body})
	}

	// The index of the new global: after the imported and defined ones.
	var imported, defined uint32
	for _, s := range secs {
		var err error
		switch s.id {
		case secImport:
			imported, err = importedGlobals(s.body)
		case secGlobal:
			defined, err = definedGlobals(s.body)
		case secExport:
			err = checkExports(s.body)
		}
		if err != nil {
			return nil, classify(err)
		}
	}
	global := imported + defined
	check := appendU32([]byte{0x23}, global)          // global.get $interrupt
	check = append(check, 0x04, 0x40, 0x00, 0x0b)     // if unreachable end
	newGlobal := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b} // mut i32 = i32.const 0
	newExport := appendName(nil, Export)
	newExport = append(newExport, externGlobl)
	newExport = appendU32(newExport, global)

	out := make([]byte, 0, len(bin)+len(bin)/8)
	out = append(out, bin[:8]...)
	var addedGlobal, addedExport bool
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	for _, s := range secs {
		if s.id == secCustom {
			// DWARF describes code offsets that the rewrite moves.
			name, _ := (&reader{b: s.body}).name()
			if strings.HasPrefix(name, ".debug_") {
				continue
			}
			emit(s.id, s.body)
			continue
		}
		if !addedGlobal && order[s.id] > order[secGlobal] {
			emit(secGlobal, append(appendU32(nil, 1), newGlobal...))
			addedGlobal = true
		}
		if !addedExport && order[s.id] > order[secExport] {
			emit(secExport, append(appendU32(nil, 1), newExport...))
			addedExport = true
		}
		switch s.id {
		case secGlobal:
			body, err := appendEntry(s.body, newGlobal)
			if err != nil {
				return nil, classify(fmt.Errorf("global section: %w", err))
			}
			emit(s.id, body)
			addedGlobal = true
		case secExport:
			body, err := appendEntry(s.body, newExport)
			if err != nil {
				return nil, classify(fmt.Errorf("export section: %w", err))
			}
			emit(s.id, body)
			addedExport = true
		case secCode:
			body, err := instrumentCode(s.body, check, global)
			if err != nil {
				return nil, classify(err)
			}
			emit(s.id, body)
		default:
			emit(s.id, s.body)
		}
	}
	if !addedGlobal {
		emit(secGlobal, append(appendU32(nil, 1), newGlobal...))
	}
	if !addedExport {
		emit(secExport, append(appendU32(nil, 1), newExport...))
	}
	return out, nil
}

// malformedError is a structural error: the bytes are not WebAssembly.
type malformedError struct{ msg string }

func (e *malformedError) Error() string { return e.msg }

// classify wraps err in ErrMalformed when it is structural, else in
// ErrUnsupported.
func classify(err error) error {
	var m *malformedError
	if errors.As(err, &m) {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return fmt.Errorf("%w: %w", ErrUnsupported, err)
}

// importedGlobals counts the global imports of an import section.
func importedGlobals(b []byte) (uint32, error) {
	r := reader{b: b}
	n := r.u32()
	var globals uint32
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.name() // module
		r.name() // field
		switch kind := r.byte(); kind {
		case 0: // function: type index
			r.u32()
		case 1: // table: reftype, limits
			r.byte()
			r.limits()
		case 2: // memory: limits
			r.limits()
		case 3: // global: valtype, mutability
			r.byte()
			r.byte()
			globals++
		case 4: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			return 0, fmt.Errorf("import %d: unknown kind %#x", i, kind)
		}
	}
	if r.err == nil && !r.done() {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return 0, fmt.Errorf("import section: %w", r.err)
	}
	return globals, nil
}

// checkExports refuses a module that already exports Export.
func checkExports(b []byte) error {
	r := reader{b: b}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		name, _ := r.name()
		r.byte()
		r.u32()
		if name == Export {
			return fmt.Errorf("the module already exports %q", Export)
		}
	}
	if r.err == nil && !r.done() {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return fmt.Errorf("export section: %w", r.err)
	}
	return nil
}

// definedGlobals counts the entries of a global section.
func definedGlobals(b []byte) (uint32, error) {
	r := reader{b: b}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.byte() // value type
		r.byte() // mutability
		// The initializer: constant instructions up to end.
		for op := r.byte(); op != 0x0b && r.err == nil; op = r.byte() {
			if err := skipImmediates(&r, op); err != nil {
				return 0, fmt.Errorf("global %d: %w", i, err)
			}
		}
	}
	if r.err == nil && !r.done() {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return 0, fmt.Errorf("global section: %w", r.err)
	}
	return n, nil
}

// appendEntry returns the vector section b with one more entry.
func appendEntry(b, entry []byte) ([]byte, error) {
	r := reader{b: b}
	n := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	out := appendU32(make([]byte, 0, len(b)+len(entry)+5), n+1)
	out = append(out, b[r.off:]...)
	return append(out, entry...), nil
}

// instrumentCode rewrites a code section, inserting check at each
// function entry and after each loop instruction.
func instrumentCode(b, check []byte, global uint32) ([]byte, error) {
	r := reader{b: b}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(b)+len(b)/8), n)
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		body := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("code of function %d: %w", i, r.err)
		}
		var err error
		fn, err = instrumentBody(fn[:0], body, check, global)
		if err != nil {
			return nil, fmt.Errorf("code of function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if !r.done() {
		r.fail("trailing bytes")
		return nil, fmt.Errorf("code section: %w", r.err)
	}
	return out, nil
}

// instrumentBody appends the instrumented function body b to out.
func instrumentBody(out, b, check []byte, global uint32) ([]byte, error) {
	r := reader{b: b}
	groups := r.u32()
	var locals uint64
	for i := uint32(0); i < groups && r.err == nil; i++ {
		locals += uint64(r.u32())
		r.byte() // type
	}
	if r.err == nil && locals > MaxLocals {
		// wazero allocates every declared local before compiling.
		r.err = &malformedError{fmt.Sprintf("%d locals, over the limit of %d", locals, MaxLocals)}
	}
	if r.err != nil {
		return nil, fmt.Errorf("locals: %w", r.err)
	}
	out = append(out, b[:r.off]...)
	out = append(out, check...)
	last := r.off // start of the bytes not yet copied
	for !r.done() {
		at := r.off
		op := r.byte()
		switch {
		case op == 0x03: // loop blocktype
			r.s33()
			out = append(out, b[last:r.off]...)
			out = append(out, check...)
			last = r.off
		case op == 0x23 || op == 0x24: // global.get, global.set
			if idx := r.u32(); r.err == nil && idx >= global {
				return nil, fmt.Errorf("offset %d: global %d does not exist", at, idx)
			}
		default:
			if err := skipImmediates(&r, op); err != nil {
				return nil, fmt.Errorf("offset %d: %w", at, err)
			}
		}
		if r.err != nil {
			return nil, fmt.Errorf("offset %d: %w", at, r.err)
		}
	}
	return append(out, b[last:]...), nil
}

// skipImmediates reads the immediates of the instruction op (other than
// loop and global.get/set), or refuses an instruction it does not know.
func skipImmediates(r *reader, op byte) error {
	switch {
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0b || op == 0x0f ||
		op == 0x1a || op == 0x1b || op == 0xd1 || (op >= 0x45 && op <= 0xc4):
		// No immediates: unreachable, nop, else, end, return, drop,
		// select, ref.is_null, the numeric instructions.
	case op == 0x02 || op == 0x04: // block, if
		r.s33()
	case op == 0x0c || op == 0x0d || op == 0x10 || op == 0x12 || // br, br_if, call, return_call
		(op >= 0x20 && op <= 0x22) || op == 0x25 || op == 0x26 || // locals, table.get/set
		op == 0x3f || op == 0x40 || op == 0xd2: // memory.size/grow, ref.func
		r.u32()
	case op == 0x0e: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select with types
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			if t := r.byte(); !isValType(t) {
				return fmt.Errorf("select: value type %#x", t)
			}
		}
	case op >= 0x28 && op <= 0x3e: // loads and stores: memarg
		if align := r.u32(); align&0x40 != 0 {
			r.u32() // memory index (multi-memory)
		}
		r.u64()
	case op == 0x41: // i32.const
		r.s33()
	case op == 0x42: // i64.const
		r.u64()
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xd0: // ref.null
		if t := r.byte(); t != 0x70 && t != 0x6f {
			return fmt.Errorf("ref.null: heap type %#x", t)
		}
	case op == 0xfc:
		switch sub := r.u32(); {
		case sub <= 7: // saturating truncations
		case sub == 9 || sub == 11 || sub == 13 || (sub >= 15 && sub <= 17):
			r.u32()
		case sub == 8 || sub == 10 || sub == 12 || sub == 14:
			r.u32()
			r.u32()
		default:
			return fmt.Errorf("instruction 0xfc %d", sub)
		}
	default:
		return fmt.Errorf("instruction %#x", op)
	}
	return nil
}

func isValType(t byte) bool {
	return t == 0x7f || t == 0x7e || t == 0x7d || t == 0x7c || t == 0x7b || t == 0x70 || t == 0x6f
}

// reader decodes a byte slice; the first error sticks and later reads
// return zeros.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) done() bool { return r.err != nil || r.off >= len(r.b) }

func (r *reader) fail(msg string) {
	if r.err == nil {
		r.err = &malformedError{fmt.Sprintf("%s at offset %d", msg, r.off)}
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.fail("unexpected end")
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

// leb reads an LEB128 number of at most max bytes and returns its
// unsigned bits.
func (r *reader) leb(max int) uint64 {
	var v uint64
	for i := 0; i < max; i++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail("LEB128 number too long")
	return 0
}

func (r *reader) u32() uint32 {
	v := r.leb(5)
	if v > 1<<32-1 {
		r.fail("u32 out of range")
		return 0
	}
	return uint32(v)
}

func (r *reader) u64() uint64 { return r.leb(10) }

// s33 reads a block type (or an i32 constant): either form is one LEB128
// number of at most 5 bytes.
func (r *reader) s33() { r.leb(5) }

func (r *reader) limits() {
	flags := r.byte()
	r.u64()
	if flags&1 != 0 {
		r.u64()
	}
}

func (r *reader) name() (string, bool) {
	n := r.u32()
	b := r.bytes(int(n))
	return string(b), r.err == nil
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}
