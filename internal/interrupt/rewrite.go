package interrupt

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

const (
	// BytesPerStep and EntriesPerStep are the lengths of a bulk memory
	// or table instruction charged as one step: a copy of 64 bytes takes
	// about as long as an iteration of a short loop. Powers of two.
	BytesPerStep   = 64
	EntriesPerStep = 8
)

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
	secs, m, err := admit(bin)
	if err != nil {
		return nil, err
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
