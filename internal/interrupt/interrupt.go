// Package interrupt makes a WebAssembly module stoppable at low cost.
//
// wazero stops a running call on context cancellation only with
// WithCloseOnContextDone, which compiles every loop header into an exit to
// Go (~25 ns) to ask whether the module was closed. Go's wasm backend
// turns every taken jump of a function into a branch back to that
// function's one loop, so a Go guest pays the exit on most of its control
// flow and runs about 3× slower end to end, 4–8× per operation
// (docs/BENCHMARKS.md).
//
// The exits matter for more than cancellation: machine code that never
// returns to Go cannot be preempted, so a garbage collection that stops
// the world waits for it, and with it every goroutine of the process. A
// guest that loops forever without exits would hang the agent.
//
// [Instrument] rewrites a module so that it exits every [Interval] loop
// iterations or calls instead of at each one. It adds a mutable i32
// global, the countdown, and at the entry of every function and the head
// of every loop the instructions
//
//	global.get $countdown
//	i32.const 1
//	i32.sub
//	global.set $countdown
//	global.get $countdown
//	i32.eqz
//	if
//	  call $tick
//	end
//
// where $tick, a function it adds, calls the host function [ImportModule].
// [ImportName] (type () -> i32), traps with unreachable when that returns
// non-zero, and resets the countdown. The host function, [Tick], yields to
// the Go scheduler (a preemption point) and returns 1 once the call's
// context has ended. Adding an import shifts the index of every function the module
// defines; Instrument renumbers them wherever they appear (calls, ref.func,
// exports, the start function, element segments, the name section).
//
// A module that refers to globals or functions it does not have (which
// the rewrite could make valid), that already imports the host function,
// or that uses instructions this package does not decode (SIMD, threads,
// exceptions, GC) is refused with an error wrapping [ErrUnsupported]; the
// host then runs it unmodified with wazero's check. A module that is not
// well-formed is refused with [ErrMalformed]. Instrument does no I/O and
// never panics on malformed input.
package interrupt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

const (
	// ImportModule and ImportName name the host function that instrumented
	// code calls every Interval loop iterations or calls: () -> i32, non-zero
	// to stop the call.
	ImportModule = "strata"
	ImportName   = "tick"
	// Interval is how many loop iterations and function calls the guest
	// runs between calls of the host function: the bound on how late a
	// call stops, and on how long the guest delays a stop-the-world pause.
	// A guest spinning in a loop stopped 9-34 µs after its context was
	// cancelled (measured 2026-11-26). Bulk memory and table operations
	// (memory.copy, memory.fill) are not counted by their length: a loop
	// of large copies can still stop late (a known issue).
	Interval = 1 << 14
	// MaxLocals bounds the locals of one function (as in web browsers).
	MaxLocals = 50_000
)

// Errors of Instrument wrap one of these.
var (
	// ErrUnsupported: the module may be valid, but Instrument cannot
	// rewrite it; wazero can still run it as it is.
	ErrUnsupported = errors.New("module cannot be instrumented")
	// ErrMalformed: the module is not valid WebAssembly, or declares
	// more entries than its bytes can hold (wazero v1.12 allocates what a
	// count claims before reading: a 16-byte module claiming 2^29
	// elements exhausts the host's memory). Do not give it to wazero.
	ErrMalformed = errors.New("malformed WebAssembly module")
)

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

// order gives the position of each known section in a module (the tag
// section, 13, comes after memory; the data count section, 12, before
// code).
var order = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

// vectorSections are the sections that start with an entry count; each
// entry takes at least one byte.
var vectorSections = map[byte]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 9: true, 10: true, 11: true, 13: true}

type section struct {
	id   byte
	body []byte
}

// module is what Instrument learns of a module before rewriting it.
type module struct {
	types       uint32 // entries of the type section
	funcImports uint32 // imported functions: indices below keep their number
	funcs       uint32 // functions in all: imported and defined
	globals     uint32 // globals in all: imported and defined
}

// shift renumbers function index x for the added import.
func (m *module) shift(x uint32) uint32 {
	if x >= m.funcImports {
		return x + 1
	}
	return x
}

// Instrument returns a copy of the module bin that calls the host function
// ImportModule.ImportName every Interval loop iterations or function calls
// and traps when it returns non-zero. bin is not modified.
func Instrument(bin []byte) ([]byte, error) {
	if len(bin) < 8 || !bytes.Equal(bin[:4], []byte("\x00asm")) {
		return nil, fmt.Errorf("%w: not a WebAssembly binary (no \\0asm header)", ErrMalformed)
	}
	if v := binary.LittleEndian.Uint32(bin[4:8]); v != 1 {
		return nil, fmt.Errorf("%w: WebAssembly binary version %d, want 1", ErrMalformed, v)
	}
	// Every section is read to the end, even past a problem, so that a
	// module is refused as malformed wherever its structure is wrong:
	// wazero gets only modules whose counts and sizes hold.
	var (
		secs     []section
		m        module
		problems problems
	)
	lastPos := 0 // of the last non-custom section
	r := reader{b: bin, off: 8}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.err)
		}
		if id != secCustom {
			pos, ok := order[id]
			if !ok {
				problems.add(fmt.Errorf("unknown section id %d", id))
				continue
			}
			if pos <= lastPos {
				return nil, fmt.Errorf("%w: section %d out of order or repeated", ErrMalformed, id)
			}
			lastPos = pos
		}
		if vectorSections[id] {
			v := reader{b: body}
			if n := v.u32(); v.err != nil || int64(n) > int64(len(body)-v.off) {
				return nil, fmt.Errorf("%w: section %d claims %d entries in %d bytes", ErrMalformed, id, n, len(body))
			}
		}
		secs = append(secs, section{id, body})
	}

	for _, s := range secs {
		var err error
		switch s.id {
		case secType:
			m.types, err = readTypes(s.body)
		case secImport:
			err = m.readImports(s.body)
		case secFunction:
			var n uint32
			n, err = count(s.body)
			m.funcs += n
		case secTable:
			err = checkTables(s.body)
		case secDataCount:
			r := reader{b: s.body}
			r.u32()
			err = r.end("data count section")
		case secData:
			err = checkData(s.body)
		case secGlobal:
			var n uint32
			n, err = countGlobals(s.body)
			m.globals += n
		}
		if err != nil {
			problems.add(fmt.Errorf("section %d: %w", s.id, err))
		}
	}
	m.funcs += m.funcImports

	// What is added: two types, an import, a function and a global.
	var (
		typeTick   = m.types       // () -> i32, of the import
		typeSlow   = m.types + 1   // () -> (), of $tick
		importTick = m.funcImports // index of the import
		funcSlow   = m.funcs + 1   // index of $tick, after the shift
		countdown  = m.globals     // index of the global
	)
	newTypes := []byte{0x60, 0, 1, 0x7f, 0x60, 0, 0}
	newImport := appendName(appendName(nil, ImportModule), ImportName)
	newImport = appendU32(append(newImport, 0), typeTick)
	newFunc := appendU32(nil, typeSlow)
	newGlobal := appendS32([]byte{0x7f, 0x01, 0x41}, Interval) // mut i32 = Interval
	newGlobal = append(newGlobal, 0x0b)
	// The body of $tick: if tick() { unreachable }; countdown = Interval.
	slow := appendU32([]byte{0x00, 0x10}, importTick)
	slow = append(slow, 0x04, 0x40, 0x00, 0x0b, 0x41)
	slow = appendS32(slow, Interval)
	slow = appendU32(append(slow, 0x24), countdown)
	slow = append(slow, 0x0b)
	newBody := appendU32(nil, uint32(len(slow)))
	newBody = append(newBody, slow...)
	// The check at each function entry and loop head.
	check := appendU32([]byte{0x23}, countdown)   // global.get
	check = append(check, 0x41, 0x01, 0x6b, 0x24) // i32.const 1, i32.sub, global.set
	check = appendU32(check, countdown)
	check = appendU32(append(check, 0x23), countdown) // global.get
	check = append(check, 0x45, 0x04, 0x40, 0x10)     // i32.eqz, if, call
	check = appendU32(check, funcSlow)
	check = append(check, 0x0b) // end

	out := make([]byte, 0, len(bin)+len(bin)/4)
	out = append(out, bin[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	// Sections the module lacks are created, with only what is added, in
	// their place.
	added := map[byte][]byte{
		secType:     newTypes,
		secImport:   newImport,
		secFunction: newFunc,
		secGlobal:   newGlobal,
		secCode:     newBody,
	}
	addedCount := map[byte]uint32{secType: 2, secImport: 1, secFunction: 1, secGlobal: 1, secCode: 1}
	for _, s := range secs {
		if s.id == secCustom {
			body, keep := m.rewriteCustom(s.body)
			if keep {
				emit(s.id, body)
			}
			continue
		}
		for _, id := range []byte{secType, secImport, secFunction, secGlobal, secCode} {
			if e, ok := added[id]; ok && order[s.id] > order[id] {
				emit(id, append(appendU32(nil, addedCount[id]), e...))
				delete(added, id)
			}
		}
		var (
			body []byte
			err  error
		)
		switch s.id {
		case secType, secImport, secFunction:
			body, err = appendEntries(s.body, addedCount[s.id], added[s.id])
		case secGlobal:
			body, err = m.rewriteGlobals(s.body, newGlobal)
		case secExport:
			body, err = m.rewriteExports(s.body)
		case secStart:
			r := reader{b: s.body}
			x := r.u32()
			if err = r.end("start section"); err == nil && x >= m.funcs {
				err = fmt.Errorf("start function %d does not exist", x)
			}
			body = appendU32(nil, m.shift(x))
		case secElement:
			body, err = m.rewriteElements(s.body)
		case secCode:
			body, err = m.rewriteCode(s.body, check, newBody)
		default:
			body = s.body
		}
		if err != nil {
			problems.add(fmt.Errorf("section %d: %w", s.id, err))
		}
		delete(added, s.id)
		emit(s.id, body)
	}
	if err := problems.err(); err != nil {
		return nil, err
	}
	for _, id := range []byte{secType, secImport, secFunction, secGlobal, secCode} {
		if e, ok := added[id]; ok {
			emit(id, append(appendU32(nil, addedCount[id]), e...))
		}
	}
	return out, nil
}

// malformedError is a structural error: the bytes are not WebAssembly.
type malformedError struct{ msg string }

func (e *malformedError) Error() string { return e.msg }

// problems keeps the first structural and the first other problem of a
// module.
type problems struct{ malformed, unsupported error }

func (p *problems) add(err error) {
	var m *malformedError
	switch {
	case !errors.As(err, &m):
		if p.unsupported == nil {
			p.unsupported = err
		}
	case p.malformed == nil:
		p.malformed = err
	}
}

// err returns ErrMalformed's problem before ErrUnsupported's: a module
// that is not well-formed must not reach wazero.
func (p *problems) err() error {
	switch {
	case p.malformed != nil:
		return fmt.Errorf("%w: %w", ErrMalformed, p.malformed)
	case p.unsupported != nil:
		return fmt.Errorf("%w: %w", ErrUnsupported, p.unsupported)
	}
	return nil
}

// count reads the entry count that starts a vector section.
func count(b []byte) (uint32, error) {
	r := reader{b: b}
	n := r.u32()
	return n, r.err
}

// readTypes counts the types of a type section, checking their parameter
// and result counts.
func readTypes(b []byte) (uint32, error) {
	r := reader{b: b}
	n := r.count()
	for i := uint32(0); i < n && r.err == nil; i++ {
		if form := r.byte(); r.err == nil && form != 0x60 {
			return 0, fmt.Errorf("type %d: form %#x, want a function type", i, form)
		}
		for range 2 { // parameters, results
			k := r.count()
			r.bytes(int(k))
		}
	}
	return n, r.end("type section")
}

// checkData checks the sizes of the data segments.
func checkData(b []byte) error {
	r := reader{b: b}
	n := r.count()
	for i := uint32(0); i < n && r.err == nil; i++ {
		switch flags := r.u32(); flags {
		case 0, 2: // active: (memory index), offset
			if flags == 2 {
				r.u32()
			}
			for op := r.byte(); op != 0x0b && r.err == nil; op = r.byte() {
				if err := skipImmediates(&r, op); err != nil {
					return fmt.Errorf("data segment %d: %w", i, err)
				}
			}
		case 1: // passive
		default:
			if r.err == nil {
				return fmt.Errorf("data segment %d: flags %d", i, flags)
			}
		}
		r.bytes(int(r.count()))
	}
	return r.end("data section")
}

// readImports counts the function and global imports, and refuses a
// module that imports the host function itself.
func (m *module) readImports(b []byte) error {
	r := reader{b: b}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		mod := r.name()
		name := r.name()
		if mod == ImportModule && name == ImportName {
			return fmt.Errorf("the module imports %s.%s itself", mod, name)
		}
		switch kind := r.byte(); kind {
		case 0: // function: type index
			r.u32()
			m.funcImports++
		case 1: // table: reftype, limits
			r.byte()
			r.limits()
		case 2: // memory: limits
			r.limits()
		case 3: // global: valtype, mutability
			r.byte()
			r.byte()
			m.globals++
		case 4: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			if r.err == nil {
				return fmt.Errorf("import %d: unknown kind %#x", i, kind)
			}
		}
	}
	return r.end("import section")
}

// checkTables refuses tables with initializer expressions (function
// references), whose ref.func Instrument does not renumber.
func checkTables(b []byte) error {
	r := reader{b: b}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		if t := r.byte(); t == 0x40 {
			return fmt.Errorf("table %d has an initializer expression", i)
		}
		r.limits()
	}
	return r.end("table section")
}

// countGlobals counts the entries of a global section, reading them all.
func countGlobals(b []byte) (uint32, error) {
	r := reader{b: b}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.byte() // value type
		r.byte() // mutability
		for op := r.byte(); op != 0x0b && r.err == nil; op = r.byte() {
			if err := skipImmediates(&r, op); err != nil {
				return 0, fmt.Errorf("global %d: %w", i, err)
			}
		}
	}
	return n, r.end("global section")
}

// appendEntries returns the vector section b with n more entries.
func appendEntries(b []byte, n uint32, entries []byte) ([]byte, error) {
	r := reader{b: b}
	have := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	out := appendU32(make([]byte, 0, len(b)+len(entries)+5), have+n)
	out = append(out, b[r.off:]...)
	return append(out, entries...), nil
}

// rewriteGlobals renumbers the functions in the initializers and appends
// the countdown.
func (m *module) rewriteGlobals(b, entry []byte) ([]byte, error) {
	r := reader{b: b}
	n := r.u32()
	out := appendU32(nil, n+1)
	for i := uint32(0); i < n && r.err == nil; i++ {
		out = append(out, r.bytes(2)...) // value type, mutability
		var err error
		if out, err = m.constExpr(out, &r); err != nil {
			return nil, fmt.Errorf("global %d: %w", i, err)
		}
	}
	if err := r.end("global section"); err != nil {
		return nil, err
	}
	return append(out, entry...), nil
}

// rewriteExports renumbers the exported functions.
func (m *module) rewriteExports(b []byte) ([]byte, error) {
	r := reader{b: b}
	n := r.u32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		out = appendName(out, r.name())
		kind := r.byte()
		x := r.u32()
		if kind == 0 {
			x = m.shift(x)
		}
		out = appendU32(append(out, kind), x)
	}
	return out, r.end("export section")
}

// rewriteElements renumbers the functions of element segments, in their
// eight encodings.
func (m *module) rewriteElements(b []byte) ([]byte, error) {
	r := reader{b: b}
	n := r.count()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		if flags > 7 {
			return nil, fmt.Errorf("element segment %d: flags %d", i, flags)
		}
		out = appendU32(out, flags)
		var err error
		if flags&2 != 0 && flags&1 == 0 { // 2, 6: table index
			out = appendU32(out, r.u32())
		}
		if flags&1 == 0 { // 0, 2, 4, 6: active, with an offset
			if out, err = m.constExpr(out, &r); err != nil {
				return nil, fmt.Errorf("element segment %d: %w", i, err)
			}
		}
		if flags&3 != 0 { // 1, 2, 3, 5, 6, 7: element kind or reference type
			out = append(out, r.byte())
		}
		items := r.count()
		out = appendU32(out, items)
		for j := uint32(0); j < items && r.err == nil; j++ {
			if flags&4 == 0 { // function indices
				x := r.u32()
				if r.err == nil && x >= m.funcs {
					return nil, fmt.Errorf("element segment %d: function %d does not exist", i, x)
				}
				out = appendU32(out, m.shift(x))
			} else if out, err = m.constExpr(out, &r); err != nil {
				return nil, fmt.Errorf("element segment %d: %w", i, err)
			}
		}
	}
	return out, r.end("element section")
}

// constExpr copies a constant expression from r to out, renumbering
// ref.func.
func (m *module) constExpr(out []byte, r *reader) ([]byte, error) {
	for r.err == nil {
		at := r.off
		op := r.byte()
		switch op {
		case 0x0b:
			return append(out, op), nil
		case 0xd2: // ref.func
			x := r.u32()
			if r.err == nil && x >= m.funcs {
				return nil, fmt.Errorf("function %d does not exist", x)
			}
			out = appendU32(append(out, op), m.shift(x))
		case 0x23: // global.get
			x := r.u32()
			if r.err == nil && x >= m.globals {
				return nil, fmt.Errorf("global %d does not exist", x)
			}
			out = appendU32(append(out, op), x)
		default:
			if err := skipImmediates(r, op); err != nil {
				return nil, err
			}
			out = append(out, r.b[at:r.off]...)
		}
	}
	return nil, r.err
}

// rewriteCode rewrites every function body and appends $tick's.
func (m *module) rewriteCode(b, check, tick []byte) ([]byte, error) {
	r := reader{b: b}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(b)+len(b)/4), n+1)
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		body := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("code of function %d: %w", i, r.err)
		}
		var err error
		if fn, err = m.rewriteBody(fn[:0], body, check); err != nil {
			return nil, fmt.Errorf("code of function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if err := r.end("code section"); err != nil {
		return nil, err
	}
	return append(out, tick...), nil
}

// rewriteBody appends the rewritten function body b to out: the check at
// its entry and after each loop instruction, functions renumbered.
func (m *module) rewriteBody(out, b, check []byte) ([]byte, error) {
	r := reader{b: b}
	groups := r.count()
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
		switch op := r.byte(); op {
		case 0x03: // loop blocktype
			r.s33()
			out = append(out, b[last:r.off]...)
			out = append(out, check...)
			last = r.off
		case 0x10, 0x12, 0xd2: // call, return_call, ref.func
			x := r.u32()
			if r.err == nil && x >= m.funcs {
				return nil, fmt.Errorf("offset %d: function %d does not exist", at, x)
			}
			out = append(out, b[last:at+1]...)
			out = appendU32(out, m.shift(x))
			last = r.off
		case 0x23, 0x24: // global.get, global.set
			if x := r.u32(); r.err == nil && x >= m.globals {
				return nil, fmt.Errorf("offset %d: global %d does not exist", at, x)
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

// rewriteCustom renumbers the functions of the name section and drops
// DWARF, whose code offsets the rewrite moves. keep is false for a
// section to drop; a name section it cannot read is dropped too (it only
// names things in stack traces).
func (m *module) rewriteCustom(b []byte) (out []byte, keep bool) {
	r := reader{b: b}
	name := r.name()
	switch {
	case r.err != nil:
		return b, true // not ours to judge; wazero ignores custom sections it cannot read
	case strings.HasPrefix(name, ".debug_"):
		return nil, false
	case name != "name":
		return b, true
	}
	out = appendName(nil, name)
	for !r.done() {
		id := r.byte()
		sub := r.bytes(int(r.u32()))
		if r.err != nil {
			return nil, false
		}
		if id < 1 || id > 3 { // 1 functions, 2 locals, 3 labels: by function
			out = appendU32(append(out, id), uint32(len(sub)))
			out = append(out, sub...)
			continue
		}
		s := reader{b: sub}
		n := s.u32()
		body := appendU32(nil, n)
		for i := uint32(0); i < n && s.err == nil; i++ {
			body = appendU32(body, m.shift(s.u32()))
			if id == 1 {
				body = appendName(body, s.name())
				continue
			}
			k := s.u32()
			body = appendU32(body, k)
			for j := uint32(0); j < k && s.err == nil; j++ {
				body = appendU32(body, s.u32())
				body = appendName(body, s.name())
			}
		}
		if s.err != nil || !s.done() {
			return nil, false
		}
		out = appendU32(append(out, id), uint32(len(body)))
		out = append(out, body...)
	}
	return out, true
}

// skipImmediates reads the immediates of the instruction op (other than
// those rewriteBody handles), or refuses an instruction it does not know.
func skipImmediates(r *reader, op byte) error {
	switch {
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0b || op == 0x0f ||
		op == 0x1a || op == 0x1b || op == 0xd1 || (op >= 0x45 && op <= 0xc4):
		// No immediates: unreachable, nop, else, end, return, drop,
		// select, ref.is_null, the numeric instructions.
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
		r.s33()
	case op == 0x0c || op == 0x0d || op == 0x10 || op == 0x12 || // br, br_if, call, return_call
		(op >= 0x20 && op <= 0x26) || // locals, globals, table.get/set
		op == 0x3f || op == 0x40 || op == 0xd2: // memory.size/grow, ref.func
		r.u32()
	case op == 0x0e: // br_table
		n := r.count()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select with types
		n := r.count()
		for i := uint32(0); i < n && r.err == nil; i++ {
			if t := r.byte(); r.err == nil && !isValType(t) {
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
		if t := r.byte(); r.err == nil && t != 0x70 && t != 0x6f {
			return fmt.Errorf("ref.null: heap type %#x", t)
		}
	case op == 0xfc:
		switch sub := r.u32(); {
		case r.err != nil:
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

// end returns the reader's error, or a malformed error if bytes are left.
func (r *reader) end(what string) error {
	if r.err == nil && !r.done() {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return fmt.Errorf("%s: %w", what, r.err)
	}
	return nil
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

// count reads the length of a vector whose entries take at least a byte
// each, and refuses one longer than the bytes left: wazero allocates what
// a count claims before reading the entries.
func (r *reader) count() uint32 {
	n := r.u32()
	if r.err == nil && int64(n) > int64(len(r.b)-r.off) {
		r.fail(fmt.Sprintf("%d entries claimed, %d bytes left", n, len(r.b)-r.off))
		return 0
	}
	return n
}

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

func (r *reader) name() string {
	n := r.u32()
	return string(r.bytes(int(n)))
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendS32 appends v in signed LEB128, as i32.const takes it.
func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

// Tick is the host function ImportModule.ImportName, for
// api.GoModuleFunc: it yields to the Go scheduler, so that a stop-the-world
// pause or another goroutine need not wait for the guest, and returns 1
// once ctx, the context of the call into the guest, has ended, or the
// module was closed.
func Tick(ctx context.Context, mod api.Module, stack []uint64) {
	runtime.Gosched()
	stack[0] = 0
	if ctx.Err() != nil || mod.IsClosed() {
		stack[0] = 1
	}
}
