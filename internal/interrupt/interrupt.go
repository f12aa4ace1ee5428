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
// [Instrument] rewrites a module so that it exits every [Interval] steps
// instead of at each loop iteration. It adds a mutable i32 global, the
// countdown, and at the entry of every function and the head of every
// loop the instructions
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
// context has ended. Bulk memory and table instructions (memory.copy,
// memory.fill, table.grow, ...), which run as one uninterruptible copy,
// are charged by their length: one step per [BytesPerStep] bytes or
// [EntriesPerStep] table entries, and $tick runs before one that uses up
// the countdown. Every call of an imported (host) function calls $tick
// first: a WASI call may do much work (poll_oneoff over a million
// subscriptions, fd_read over millions of I/O vectors: tens of
// milliseconds each), so a guest that calls the host in a loop stops
// after the call in progress. Go guests call the host rarely in a run:
// the example reducer's figures did not move. Adding an import shifts the index of every function the
// module defines; Instrument renumbers them wherever they appear (calls,
// ref.func, exports, the start function, element segments, the name
// section).
//
// Instrument is also the host's guard in front of wazero, whose decoder
// allocates whatever a module's counts claim: it reads every section and
// instruction, and a module it refuses, for whatever reason, must not be
// given to wazero. It must read every byte as wazero does: where wazero
// reads differently from the specification (typed references, SIMD
// opcodes), Instrument accepts only what both read alike. It refuses
// modules that are not well-formed, or refer to types, functions or
// globals they do not have ([ErrMalformed]), and valid modules it cannot
// run safely: instructions or types outside wazero's core features
// (threads, exceptions, GC, typed references), tables, locals or calls
// over its limits ([MaxTableEntries], [MaxLocals], [MaxModuleLocals],
// [MaxArity], [MaxFunctionCalls], [MaxNesting]), imported
// functions in tables, or an import of the host function itself
// ([ErrUnsupported]). Errors name the section, function and byte of the
// module. Instrument does no I/O and never panics on malformed input.
package interrupt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

const (
	// ImportModule and ImportName name the host function that instrumented
	// code calls every Interval steps: () -> i32, non-zero to stop the
	// call.
	ImportModule = "strata"
	ImportName   = "tick"
	// Interval is how many steps (loop iterations, function calls, bulk
	// copies by their length) the guest runs between calls of the host
	// function: the bound on how late a call stops, and on how long the
	// guest delays a stop-the-world pause. A guest spinning in a loop
	// stopped 9-34 µs after its context was cancelled (measured
	// 2026-11-26).
	Interval = 1 << 14
	// BytesPerStep and EntriesPerStep are the lengths of a bulk memory
	// or table instruction charged as one step: a copy of 64 bytes takes
	// about as long as an iteration of a short loop. Powers of two.
	BytesPerStep   = 64
	EntriesPerStep = 8
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
	secTag       = 13
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
	off  int // of body in the module
}

// reader reads the section's body; its errors name offsets in the module.
func (s section) reader() reader { return reader{b: s.body, base: s.off} }

var sectionNames = [...]string{"custom", "type", "import", "function", "table", "memory", "global", "export", "start", "element", "code", "data", "data count", "tag"}

// sectionName names section id in errors.
func sectionName(id byte) string {
	if int(id) < len(sectionNames) {
		return sectionNames[id] + " section"
	}
	return fmt.Sprintf("section %d", id)
}

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

// shift renumbers function index x for the added import.
func (m *module) shift(x uint32) uint32 {
	if x >= m.funcImports {
		return x + 1
	}
	return x
}

// added is the code Instrument inserts into function bodies.
type added struct {
	check       []byte // at function entries and loop heads
	chargeMem   []byte // before a bulk memory instruction
	chargeTable []byte // before a bulk table instruction
	chargeCall  []byte // before a call of an imported function: call $tick
}

// Instrument returns a copy of the module bin that calls the host function
// ImportModule.ImportName every Interval steps and traps when it returns
// non-zero. bin is not modified. An error wraps ErrMalformed or
// ErrUnsupported; either way, bin must not be given to wazero.
func Instrument(bin []byte) ([]byte, error) {
	out, err := instrument(bin)
	var m *malformedError
	switch {
	case err == nil:
		return out, nil
	case errors.As(err, &m):
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	default:
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
}

// instrument does Instrument's work; its errors are *malformedError for
// ErrMalformed, anything else for ErrUnsupported.
func instrument(bin []byte) ([]byte, error) {
	if len(bin) < 8 || !bytes.Equal(bin[:4], []byte("\x00asm")) {
		return nil, malformed("not a WebAssembly binary (no \\0asm header)")
	}
	if v := binary.LittleEndian.Uint32(bin[4:8]); v != 1 {
		return nil, malformed("WebAssembly binary version %d, want 1", v)
	}
	var (
		secs []section
		m    module
	)
	lastPos := 0 // of the last non-custom section
	r := reader{b: bin, off: 8}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		off := r.off
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("%s: %w", sectionName(id), r.err)
		}
		if id != secCustom {
			pos, ok := order[id]
			switch {
			case !ok:
				return nil, malformed("unknown section id %d", id)
			case id == secTag:
				return nil, errors.New("tag section: exception handling is not supported")
			case pos <= lastPos:
				return nil, malformed("%s at byte %#x: out of order or repeated", sectionName(id), off)
			}
			lastPos = pos
		}
		if vectorSections[id] {
			v := reader{b: body}
			if n := v.u32(); v.err != nil || int64(n) > int64(len(body)-v.off) {
				return nil, malformed("%s at byte %#x claims %d entries in %d bytes", sectionName(id), off, n, len(body))
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
			return nil, fmt.Errorf("%s: %w", sectionName(s.id), err)
		}
	}

	// What is added: two types, an import, a function and two globals.
	var (
		typeTick   = m.types       // () -> i32, of the import
		typeSlow   = m.types + 1   // () -> (), of $tick
		importTick = m.funcImports // index of the import
		funcSlow   = m.funcs + 1   // index of $tick, after the shift
		countdown  = m.globals     // index of the countdown
		scratch    = m.globals + 1 // a bulk instruction's length, while it is charged
	)
	newTypes := []byte{0x60, 0, 1, 0x7f, 0x60, 0, 0}
	newImport := appendName(appendName(nil, ImportModule), ImportName)
	newImport = appendU32(append(newImport, 0), typeTick)
	newFunc := appendU32(nil, typeSlow)
	newGlobals := appendS32([]byte{0x7f, 0x01, 0x41}, Interval) // mut i32 = Interval
	newGlobals = append(newGlobals, 0x0b, 0x7f, 0x01, 0x41, 0x00, 0x0b)
	// The body of $tick: if tick() { unreachable }; countdown = Interval.
	slow := appendU32([]byte{0x00, 0x10}, importTick)
	slow = append(slow, 0x04, 0x40, 0x00, 0x0b, 0x41)
	slow = appendS32(slow, Interval)
	slow = appendU32(append(slow, 0x24), countdown)
	slow = append(slow, 0x0b)
	newBody := appendU32(nil, uint32(len(slow)))
	newBody = append(newBody, slow...)
	code := added{
		check:       checkCode(countdown, funcSlow),
		chargeMem:   chargeCode(countdown, scratch, funcSlow, BytesPerStep),
		chargeTable: chargeCode(countdown, scratch, funcSlow, EntriesPerStep),
		chargeCall:  appendU32([]byte{0x10}, funcSlow),
	}

	out := make([]byte, 0, len(bin)+len(bin)/4)
	out = append(out, bin[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	// Sections the module lacks are created, with only what is added, in
	// their place.
	missing := map[byte][]byte{
		secType:     newTypes,
		secImport:   newImport,
		secFunction: newFunc,
		secGlobal:   newGlobals,
		secCode:     newBody,
	}
	addedCount := map[byte]uint32{secType: 2, secImport: 1, secFunction: 1, secGlobal: 2, secCode: 1}
	for _, s := range secs {
		if s.id == secCustom {
			if body, keep := m.rewriteCustom(s.body); keep {
				emit(s.id, body)
			}
			continue
		}
		for _, id := range []byte{secType, secImport, secFunction, secGlobal, secCode} {
			if e, ok := missing[id]; ok && order[s.id] > order[id] {
				emit(id, append(appendU32(nil, addedCount[id]), e...))
				delete(missing, id)
			}
		}
		var (
			body []byte
			err  error
		)
		switch s.id {
		case secType, secImport, secFunction:
			body, err = appendEntries(s.body, addedCount[s.id], missing[s.id])
		case secTable:
			body, err = rewriteTables(s)
		case secGlobal:
			body, err = m.rewriteGlobals(s, newGlobals)
		case secExport:
			body, err = m.rewriteExports(s)
		case secStart:
			r := s.reader()
			x := r.u32()
			if err = r.end(); err == nil && x >= m.funcs {
				err = malformed("start function %d does not exist", x)
			}
			body = appendU32(nil, m.shift(x))
		case secElement:
			body, err = m.rewriteElements(s)
		case secCode:
			body, err = m.rewriteCode(s, &code, newBody)
		default:
			body = s.body
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sectionName(s.id), err)
		}
		delete(missing, s.id)
		emit(s.id, body)
	}
	for _, id := range []byte{secType, secImport, secFunction, secGlobal, secCode} {
		if e, ok := missing[id]; ok {
			emit(id, append(appendU32(nil, addedCount[id]), e...))
		}
	}
	return out, nil
}

// checkCode is the check at function entries and loop heads: count down,
// and call $tick at zero.
func checkCode(countdown, tick uint32) []byte {
	c := appendU32([]byte{0x23}, countdown) // global.get
	c = append(c, 0x41, 0x01, 0x6b, 0x24)   // i32.const 1, i32.sub, global.set
	c = appendU32(c, countdown)
	c = appendU32(append(c, 0x23), countdown) // global.get
	c = append(c, 0x45, 0x04, 0x40, 0x10)     // i32.eqz, if, call
	c = appendU32(c, tick)
	return append(c, 0x0b) // end
}

// chargeCode is the charge before a bulk instruction, whose length is on
// top of the stack: count down by length/perStep (at most 2^26, so the
// i32 cannot wrap), and call $tick if that uses up the countdown. The
// length goes through a global, not a local, to leave the function's
// locals as they are; nothing runs between its set and get but $tick,
// which does not enter the guest.
func chargeCode(countdown, scratch, tick uint32, perStep int) []byte {
	shift := int32(bits.TrailingZeros(uint(perStep))) // a power of two
	c := appendU32([]byte{0x24}, scratch)             // global.set $scratch
	c = appendU32(append(c, 0x23), countdown)         // global.get $countdown
	c = appendU32(append(c, 0x23), scratch)           // global.get $scratch
	c = appendS32(append(c, 0x41), shift)             // i32.const shift
	c = append(c, 0x76, 0x6b, 0x24)                   // i32.shr_u, i32.sub, global.set
	c = appendU32(c, countdown)
	c = appendU32(append(c, 0x23), countdown)         // global.get $countdown
	c = append(c, 0x41, 0x01, 0x48, 0x04, 0x40, 0x10) // i32.const 1, i32.lt_s, if, call
	c = appendU32(c, tick)
	c = append(c, 0x0b)                        // end
	return appendU32(append(c, 0x23), scratch) // global.get $scratch
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

// rewriteTables bounds the tables: their maximums add up to at most
// MaxTableEntries.
func rewriteTables(s section) ([]byte, error) {
	type table struct {
		ref      byte
		min, max uint32
	}
	r := s.reader()
	n := r.u32()
	var (
		tables []table
		mins   uint64
	)
	for i := uint32(0); i < n && r.err == nil; i++ {
		at := r.off
		if r.byte() == 0x40 {
			return nil, fmt.Errorf("table %d has an initializer expression (typed function references are not supported)", i)
		}
		r.off = at
		r.refType()
		flags, min, max := r.limits()
		if r.err != nil {
			break
		}
		ref := r.b[at]
		if r.err == nil && flags > 1 {
			return nil, fmt.Errorf("table %d: limits flags %#x (shared tables are not supported)", i, flags)
		}
		mins += uint64(min)
		tables = append(tables, table{ref, min, max})
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	if mins > MaxTableEntries {
		return nil, fmt.Errorf("tables of %d entries in all, over the limit of %d", mins, MaxTableEntries)
	}
	left := uint32(MaxTableEntries - mins) // what the tables may grow by, in all
	out := appendU32(nil, n)
	for _, t := range tables {
		var grow uint32
		if t.max >= t.min { // else invalid, and stays so
			grow = min(t.max-t.min, left)
		}
		left -= grow
		out = append(out, t.ref, 1)
		out = appendU32(appendU32(out, t.min), min(t.max, t.min+grow))
	}
	return out, nil
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
// the added globals.
func (m *module) rewriteGlobals(s section, entries []byte) ([]byte, error) {
	r := s.reader()
	n := r.u32()
	out := appendU32(nil, n+2)
	for i := uint32(0); i < n && r.err == nil; i++ {
		out = append(out, r.bytes(2)...) // value type, mutability
		var err error
		if out, err = m.constExpr(out, &r); err != nil {
			return nil, fmt.Errorf("global %d: %w", i, err)
		}
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return append(out, entries...), nil
}

// rewriteExports renumbers the exported functions. An export of a
// function or global the module does not have is refused: after the
// rewrite it would export $tick or the countdown.
func (m *module) rewriteExports(s section) ([]byte, error) {
	r := s.reader()
	n := r.u32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		name := r.name()
		kind := r.byte()
		x := r.u32()
		if r.err != nil {
			break
		}
		switch {
		case kind == 0 && x >= m.funcs:
			return nil, malformed("export %q: function %d does not exist", name, x)
		case kind == 3 && x >= m.globals:
			return nil, malformed("export %q: global %d does not exist", name, x)
		case kind == 4:
			return nil, fmt.Errorf("export %q: a tag: exception handling is not supported", name)
		case kind == 0:
			x = m.shift(x)
		}
		out = appendU32(append(appendName(out, name), kind), x)
	}
	return out, r.end()
}

// rewriteElements renumbers the functions of element segments, in their
// eight encodings.
func (m *module) rewriteElements(s section) ([]byte, error) {
	r := s.reader()
	n := r.count()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		if flags > 7 {
			return nil, malformed("element segment %d: flags %d", i, flags)
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
			at := r.off
			if flags&4 == 0 {
				if kind := r.byte(); r.err == nil && kind != 0 {
					return nil, malformed("element segment %d: element kind %#x", i, kind)
				}
			} else {
				r.refType()
			}
			out = append(out, r.b[at:r.off]...)
		}
		items := r.count()
		out = appendU32(out, items)
		for j := uint32(0); j < items && r.err == nil; j++ {
			if flags&4 == 0 { // function indices
				x := r.u32()
				if err := m.reference(x); r.err == nil && err != nil {
					return nil, fmt.Errorf("element segment %d: %w", i, err)
				}
				out = appendU32(out, m.shift(x))
			} else if out, err = m.constExpr(out, &r); err != nil {
				return nil, fmt.Errorf("element segment %d: %w", i, err)
			}
		}
	}
	return out, r.end()
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
			if err := m.reference(x); r.err == nil && err != nil {
				return nil, err
			}
			out = appendU32(append(out, op), m.shift(x))
		case 0x23: // global.get
			x := r.u32()
			if r.err == nil && x >= m.globals {
				return nil, malformed("global %d does not exist", x)
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
func (m *module) rewriteCode(s section, code *added, tick []byte) ([]byte, error) {
	r := s.reader()
	n := r.u32()
	if r.err == nil && n != m.funcs-m.funcImports {
		return nil, malformed("%d function bodies for %d functions", n, m.funcs-m.funcImports)
	}
	out := appendU32(make([]byte, 0, len(s.body)+len(s.body)/4), n+1)
	var fn []byte
	for i := uint32(0); i < n && r.err == nil; i++ {
		size := r.u32()
		at := r.base + r.off
		body := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("function %d: %w", m.funcImports+i, r.err)
		}
		var err error
		if fn, err = m.rewriteBody(fn[:0], reader{b: body, base: at}, code); err != nil {
			return nil, fmt.Errorf("function %d: %w", m.funcImports+i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return append(out, tick...), nil
}

// rewriteBody appends the rewritten function body b to out: the check at
// its entry and after each loop instruction, the charge before each bulk
// instruction, functions renumbered.
func (m *module) rewriteBody(out []byte, r reader, code *added) ([]byte, error) {
	b := r.b
	groups := r.count()
	var locals uint64
	for i := uint32(0); i < groups && r.err == nil; i++ {
		locals += uint64(r.u32())
		if t := r.byte(); r.err == nil && !isValType(t) {
			return nil, malformed("locals: value type %#x at byte %#x", t, r.base+r.off-1)
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("locals: %w", r.err)
	}
	if locals > MaxLocals {
		// wazero allocates every declared local before compiling.
		return nil, fmt.Errorf("%d locals, over the limit of %d", locals, MaxLocals)
	}
	if m.locals += locals; m.locals > MaxModuleLocals {
		return nil, fmt.Errorf("%d locals in all functions so far, over the limit of %d", m.locals, MaxModuleLocals)
	}
	out = append(out, b[:r.off]...)
	out = append(out, code.check...)
	last := r.off // start of the bytes not yet copied
	m.fnCallWeight = 0
	nesting := m.nesting[:0] // the open blocks: true for a loop
	loops := 0
	defer func() { m.nesting = nesting }()
	for !r.done() {
		at := r.off
		switch op := r.byte(); op {
		case 0x0b: // end
			if n := len(nesting); n > 0 {
				if nesting[n-1] {
					loops--
				}
				nesting = nesting[:n-1]
			}
		case 0x02, 0x03, 0x04: // block, loop, if: block type
			if t := blockType(&r); r.err == nil && t >= int64(m.types) {
				return nil, malformed("at byte %#x: type %d does not exist", r.base+at, t)
			}
			if nesting = append(nesting, op == 0x03); op == 0x03 {
				loops++
			}
			switch {
			case len(nesting) > MaxNesting:
				return nil, fmt.Errorf("at byte %#x: blocks nest %d deep, over the limit of %d", r.base+at, len(nesting), MaxNesting)
			case loops > MaxLoopNesting:
				return nil, fmt.Errorf("at byte %#x: loops nest %d deep, over the limit of %d", r.base+at, loops, MaxLoopNesting)
			}
			if op == 0x03 {
				out = append(out, b[last:r.off]...)
				out = append(out, code.check...)
				last = r.off
			}
		case 0x10, 0x12: // call, return_call
			x := r.u32()
			if r.err == nil && x >= m.funcs {
				return nil, malformed("at byte %#x: function %d does not exist", r.base+at, x)
			}
			if r.err != nil {
				return nil, r.err
			}
			if err := m.call(m.funcType[x]); err != nil {
				return nil, fmt.Errorf("at byte %#x: %w", r.base+at, err)
			}
			if x < m.funcImports {
				out = append(out, b[last:at]...)
				out = append(out, code.chargeCall...)
				last = at
			}
			out = append(out, b[last:at+1]...)
			out = appendU32(out, m.shift(x))
			last = r.off
		case 0xd2: // ref.func
			x := r.u32()
			if err := m.reference(x); r.err == nil && err != nil {
				return nil, fmt.Errorf("at byte %#x: %w", r.base+at, err)
			}
			out = append(out, b[last:at+1]...)
			out = appendU32(out, m.shift(x))
			last = r.off
		case 0x11, 0x13: // call_indirect, return_call_indirect: type, table
			x := r.u32()
			if r.err == nil && x >= m.types {
				return nil, malformed("at byte %#x: type %d does not exist", r.base+at, x)
			}
			if r.err != nil {
				return nil, r.err
			}
			if err := m.call(x); err != nil {
				return nil, fmt.Errorf("at byte %#x: %w", r.base+at, err)
			}
			r.u32()
		case 0x23, 0x24: // global.get, global.set
			if x := r.u32(); r.err == nil && x >= m.globals {
				return nil, malformed("at byte %#x: global %d does not exist", r.base+at, x)
			}
		case 0xfc:
			sub := r.u32()
			if err := miscImmediates(&r, sub); err != nil {
				return nil, fmt.Errorf("at byte %#x: %w", r.base+at, err)
			}
			var charge []byte
			switch sub {
			case 8, 10, 11: // memory.init, memory.copy, memory.fill
				charge = code.chargeMem
			case 12, 14, 15, 17: // table.init, table.copy, table.grow, table.fill
				charge = code.chargeTable
			}
			if charge != nil {
				out = append(out, b[last:at]...)
				out = append(out, charge...)
				last = at
			}
		default:
			if err := skipImmediates(&r, op); err != nil {
				return nil, fmt.Errorf("at byte %#x: %w", r.base+at, err)
			}
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	return append(out, b[last:]...), nil
}

// rewriteCustom renumbers the functions of the name section and drops
// DWARF, whose code offsets the rewrite moves. keep is false for a
// section to drop: besides DWARF, one whose name cannot be read, and a
// name section that cannot be read (wazero decodes it, and would allocate
// what its counts claim; it only names things in stack traces).
func (m *module) rewriteCustom(b []byte) (out []byte, keep bool) {
	r := reader{b: b}
	name := r.name()
	switch {
	case r.err != nil:
		return nil, false
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
		s := reader{b: sub}
		var body []byte
		switch id {
		case 0: // the module's name
			body = appendName(nil, s.name())
		case 1, 2, 3: // functions, locals, labels: by function
			n := s.u32()
			body = appendU32(nil, n)
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
		default: // skipped by wazero
			body = sub
			s.off = len(sub)
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
//
// Where wazero reads an instruction differently from the specification,
// the two readings must not part ways: wazero would go on reading what
// Instrument never checked.
func skipImmediates(r *reader, op byte) error {
	switch {
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0b || op == 0x0f ||
		op == 0x1a || op == 0x1b || op == 0xd1 || (op >= 0x45 && op <= 0xc4):
		// No immediates: unreachable, nop, else, end, return, drop,
		// select, ref.is_null, the numeric instructions.
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
		blockType(r)
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
				return malformed("select: value type %#x", t)
			}
		}
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.memarg()
	case op == 0x41: // i32.const
		r.leb(5)
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
		return miscImmediates(r, r.u32())
	case op == 0xfd:
		return simdImmediates(r)
	case op == 0xfe:
		return fmt.Errorf("instruction 0xfe: threads are not supported")
	default:
		return fmt.Errorf("instruction %#x is not supported", op)
	}
	return nil
}

// blockType reads a block type: the index of a function type, or -1 for
// one of the value types or none. wazero reads it as a signed number, and
// some negative numbers (0x63, 0x64) as prefixes of a typed reference:
// only the negative numbers of one-byte types are accepted.
func blockType(r *reader) int64 {
	t := r.s33()
	switch {
	case r.err != nil:
		return -1
	case t >= 0:
		return t
	case t == -64 || (t >= -5 && t <= -1) || t == -16 || t == -17:
		return -1 // none, i32, i64, f32, f64, v128, funcref, externref
	}
	r.fail(fmt.Sprintf("block type %d", t))
	return -1
}

// miscImmediates reads the immediates of the instruction 0xfc sub.
func miscImmediates(r *reader, sub uint32) error {
	switch {
	case r.err != nil:
	case sub <= 7: // saturating truncations
	case sub == 9 || sub == 11 || sub == 13 || (sub >= 15 && sub <= 17):
		r.u32()
	case sub == 8 || sub == 10 || sub == 12 || sub == 14:
		r.u32()
		r.u32()
	default:
		return fmt.Errorf("instruction 0xfc %d is not supported", sub)
	}
	return nil
}

// simdImmediates reads a SIMD instruction after its prefix. wazero reads
// the opcode as one byte where the specification has an LEB128 number:
// both agree on opcodes below 0x80 in one byte, and on opcodes from 0x80
// to 0xff in two, the second 0x01 (which wazero then reads as a nop).
// Other encodings are refused.
func simdImmediates(r *reader) error {
	op := uint32(r.byte())
	if op >= 0x80 {
		if c := r.byte(); r.err == nil && c != 0x01 {
			return fmt.Errorf("SIMD instruction 0xfd %#x %#x: encoding not supported", op, c)
		}
	}
	switch {
	case r.err != nil:
	case op <= 0x0b || op == 0x5c || op == 0x5d: // loads and stores
		r.memarg()
	case op == 0x0c || op == 0x0d: // v128.const, i8x16.shuffle
		r.bytes(16)
	case op >= 0x15 && op <= 0x22: // extract_lane, replace_lane
		r.byte()
	case op >= 0x54 && op <= 0x5b: // load_lane, store_lane
		r.memarg()
		r.byte()
	}
	// Every other opcode up to 0xff has no immediates; wazero refuses
	// those it does not know.
	return nil
}

func isValType(t byte) bool {
	return t == 0x7f || t == 0x7e || t == 0x7d || t == 0x7c || t == 0x7b || t == 0x70 || t == 0x6f
}

// reader decodes a byte slice; the first error sticks and later reads
// return zeros.
type reader struct {
	b    []byte
	off  int
	base int // offset of b in the module, for errors
	err  error
}

func (r *reader) done() bool { return r.err != nil || r.off >= len(r.b) }

func (r *reader) fail(msg string) {
	if r.err == nil {
		r.err = &malformedError{fmt.Sprintf("%s at byte %#x", msg, r.base+r.off)}
	}
}

// end returns the reader's error, or a malformed error if bytes are left.
func (r *reader) end() error {
	if r.err == nil && !r.done() {
		r.fail("trailing bytes")
	}
	return r.err
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

// s33 reads a block type: a signed LEB128 number of at most 5 bytes,
// negative for a value type or none, a type index otherwise.
func (r *reader) s33() int64 {
	at := r.off
	v := r.leb(5)
	if r.err != nil {
		return 0
	}
	bits := 7 * (r.off - at)
	if bits > 33 {
		bits = 33
	}
	v &= 1<<bits - 1
	if v&(1<<(bits-1)) != 0 { // sign-extend
		return int64(v) - 1<<bits
	}
	return int64(v)
}

// memarg reads the alignment and offset of a memory instruction.
func (r *reader) memarg() {
	if align := r.u32(); align&0x40 != 0 {
		r.u32() // memory index (multi-memory)
	}
	r.u64()
}

// limits reads the limits of a memory or table as wazero does: flags 0
// to 3 (bit 0: a maximum follows; bit 1: shared), 32-bit numbers.
func (r *reader) limits() (flags byte, min, max uint32) {
	flags = r.byte()
	if r.err == nil && flags > 3 {
		r.fail(fmt.Sprintf("limits flags %#x", flags))
	}
	min = r.u32()
	max = ^uint32(0)
	if flags&1 != 0 {
		max = r.u32()
	}
	return flags, min, max
}

// valType reads a value type. wazero reads 0x63 and 0x64 as prefixes of a
// typed reference, with an LEB128 heap type after: a byte Instrument read
// as a whole type would make the two readings part ways, and wazero read
// bytes Instrument never checked. Only the one-byte types are accepted.
func (r *reader) valType() {
	if t := r.byte(); r.err == nil && !isValType(t) {
		r.fail(fmt.Sprintf("value type %#x", t))
	}
}

// refType reads the reference type of a table or element segment.
func (r *reader) refType() {
	if t := r.byte(); r.err == nil && t != 0x70 && t != 0x6f {
		r.fail(fmt.Sprintf("reference type %#x", t))
	}
}

// globalType reads the value type and mutability of a global.
func (r *reader) globalType() {
	r.valType()
	if m := r.byte(); r.err == nil && m > 1 {
		r.fail(fmt.Sprintf("global mutability %#x", m))
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
