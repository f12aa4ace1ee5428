package interrupt

import (
	"fmt"
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
