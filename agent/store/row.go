package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/strata-state/strata/agent/hlc"
)

// Stamp orders writes: hybrid logical time first, then the writing node.
type Stamp struct {
	HLC  hlc.Timestamp
	Node NodeID
}

// NodeID identifies the node that made a write in stamps. It is a hash of
// the node name: stable across restarts and equal on every replica.
type NodeID uint64

// NodeIDOf returns the stamp identity of a node name.
func NodeIDOf(name string) NodeID {
	h := fnv.New64a()
	h.Write([]byte(name))
	return NodeID(h.Sum64())
}

// Compare returns -1, 0 or +1 as s orders before, equal to, or after t.
func (s Stamp) Compare(t Stamp) int {
	switch {
	case s.HLC < t.HLC:
		return -1
	case s.HLC > t.HLC:
		return 1
	case s.Node < t.Node:
		return -1
	case s.Node > t.Node:
		return 1
	}
	return 0
}

// IsZero reports whether s is the zero stamp.
func (s Stamp) IsZero() bool { return s == Stamp{} }

// String formats the stamp as "<unix ms>.<logical>@<node id hex>".
func (s Stamp) String() string { return fmt.Sprintf("%s@%016x", s.HLC, uint64(s.Node)) }

// Field is one top-level field of a row: its protobuf wire bytes (every
// occurrence of the field number, or empty when the field is unset) and the
// stamp of the write that set it. Fields belong to the causal length of the
// row that holds them.
type Field struct {
	Num   uint32
	Stamp Stamp
	Value []byte
}

// Row is the replicated state of one table entry.
//
// CL is the causal length: 0 for a row never seen, odd while the row is
// alive, even once deleted; a delete bumps it to the next even number and a
// re-insert to the next odd one. Stamp is the stamp of the write that set
// CL. Fields are sorted by Num, unique, and all belong to the current CL: a
// higher CL supersedes every field of a lower one.
type Row struct {
	CL     uint64
	Stamp  Stamp
	Fields []Field
}

// MaxCausalLength is the highest causal length a row may have. A row
// needs one step per delete or re-insert, so no real row comes near it;
// the bound leaves room for every step a row at the limit could still
// take, so the arithmetic on causal lengths never wraps. A peer's change
// above it is refused (a causal length of 2^64-1 would otherwise make the
// next delete wrap to 0 and silently do nothing), and a local write that
// would pass it fails with ErrCausalLength.
const MaxCausalLength = 1 << 62

// ErrCausalLength is returned by a local write that would take a row's
// causal length past MaxCausalLength.
var ErrCausalLength = errors.New("store: causal length at its limit")

// nextCL is the causal length one step after cl, checked.
func nextCL(table, key string, cl uint64) (uint64, error) {
	if cl >= MaxCausalLength {
		return 0, fmt.Errorf("%w: %s/%s has causal length %d (at most %d): move the row to a new key", ErrCausalLength, table, key, cl, uint64(MaxCausalLength))
	}
	return cl + 1, nil
}

// Alive reports whether the row exists (odd causal length).
func (r Row) Alive() bool { return r.CL%2 == 1 }

// Latest is the greatest stamp in the row: the time of its last change.
func (r Row) Latest() Stamp {
	latest := r.Stamp
	for _, f := range r.Fields {
		if f.Stamp.Compare(latest) > 0 {
			latest = f.Stamp
		}
	}
	return latest
}

// Field returns the field numbered num, if the row holds it.
func (r Row) Field(num uint32) (Field, bool) {
	i, ok := slices.BinarySearchFunc(r.Fields, num, func(f Field, n uint32) int {
		switch {
		case f.Num < n:
			return -1
		case f.Num > n:
			return 1
		}
		return 0
	})
	if !ok {
		return Field{}, false
	}
	return r.Fields[i], true
}

// Merge joins two states of the same row. It is commutative, associative
// and idempotent, so replicas that have seen the same writes in any order
// and any grouping hold the same row.
//
// The higher causal length wins outright. At equal causal length, each field
// is last-writer-wins by stamp; equal stamps (which only one write can
// produce) fall back to comparing the value bytes so the result stays
// deterministic even then. The result may share memory with a and b.
func Merge(a, b Row) Row {
	switch {
	case a.CL > b.CL:
		return a
	case a.CL < b.CL:
		return b
	}
	out := Row{CL: a.CL, Stamp: a.Stamp}
	if b.Stamp.Compare(a.Stamp) > 0 {
		out.Stamp = b.Stamp
	}
	out.Fields = make([]Field, 0, max(len(a.Fields), len(b.Fields)))
	i, j := 0, 0
	for i < len(a.Fields) && j < len(b.Fields) {
		fa, fb := a.Fields[i], b.Fields[j]
		switch {
		case fa.Num < fb.Num:
			out.Fields = append(out.Fields, fa)
			i++
		case fa.Num > fb.Num:
			out.Fields = append(out.Fields, fb)
			j++
		default:
			if newerField(fb, fa) {
				out.Fields = append(out.Fields, fb)
			} else {
				out.Fields = append(out.Fields, fa)
			}
			i++
			j++
		}
	}
	out.Fields = append(out.Fields, a.Fields[i:]...)
	out.Fields = append(out.Fields, b.Fields[j:]...)
	return out
}

// newerField reports whether f wins over g in a last-writer-wins merge.
func newerField(f, g Field) bool {
	if c := f.Stamp.Compare(g.Stamp); c != 0 {
		return c > 0
	}
	return bytes.Compare(f.Value, g.Value) > 0
}

// Equal reports whether two rows hold the same state.
func (r Row) Equal(o Row) bool {
	if r.CL != o.CL || r.Stamp != o.Stamp || len(r.Fields) != len(o.Fields) {
		return false
	}
	for i := range r.Fields {
		f, g := r.Fields[i], o.Fields[i]
		if f.Num != g.Num || f.Stamp != g.Stamp || !bytes.Equal(f.Value, g.Value) {
			return false
		}
	}
	return true
}

// Row encoding, used on disk and on the wire:
//
//	version  byte (rowFormat)
//	cl       uvarint
//	nstamps  uvarint, then nstamps × (hlc uint64 BE, node uint64 BE)
//	stamp    uvarint index into the stamp table (the row's CL stamp)
//	nfields  uvarint, then nfields × (num uvarint, stamp index uvarint,
//	         len uvarint, value bytes)
//
// Writes usually set every field of a row with one stamp, so the stamp
// table keeps the per-field overhead to a few bytes. The encoding of a row
// is canonical: equal rows encode to equal bytes, which the digest relies on.
const rowFormat = 1

// Limits on decoded rows; bytes from peers and disk are not trusted.
const (
	maxFields     = 1 << 12
	maxValueBytes = 16 << 20
	maxFieldNum   = 1<<29 - 1 // protobuf's largest field number
)

// ErrCorrupt is returned when encoded row or feed bytes do not decode.
var ErrCorrupt = errors.New("store: corrupt encoding")

// AppendRow appends the canonical encoding of r to dst.
func AppendRow(dst []byte, r Row) []byte {
	var stamps [8]Stamp
	table := stamps[:0]
	index := func(s Stamp) uint64 {
		for i, t := range table {
			if t == s {
				return uint64(i)
			}
		}
		table = append(table, s)
		return uint64(len(table) - 1)
	}
	index(r.Stamp)
	size := 0
	for _, f := range r.Fields {
		index(f.Stamp)
		size += 8 + len(f.Value)
	}
	dst = slices.Grow(dst, size+16*len(table)+32)
	dst = append(dst, rowFormat)
	dst = binary.AppendUvarint(dst, r.CL)
	dst = binary.AppendUvarint(dst, uint64(len(table)))
	for _, s := range table {
		dst = binary.BigEndian.AppendUint64(dst, uint64(s.HLC))
		dst = binary.BigEndian.AppendUint64(dst, uint64(s.Node))
	}
	dst = binary.AppendUvarint(dst, 0) // r.Stamp is always first
	dst = binary.AppendUvarint(dst, uint64(len(r.Fields)))
	for _, f := range r.Fields {
		dst = binary.AppendUvarint(dst, uint64(f.Num))
		dst = binary.AppendUvarint(dst, index(f.Stamp))
		dst = binary.AppendUvarint(dst, uint64(len(f.Value)))
		dst = append(dst, f.Value...)
	}
	return dst
}

// decoder reads the encoding with bounds checks; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64(what string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) bytes(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// row decodes one row; the field values alias the input.
func (d *decoder) row() Row {
	if d.err != nil {
		return Row{}
	}
	if len(d.b) == 0 || d.b[0] != rowFormat {
		d.fail("unknown row format")
		return Row{}
	}
	d.b = d.b[1:]
	var r Row
	r.CL = d.uvarint("causal length")
	nstamps := d.uvarint("stamp count")
	if nstamps == 0 || nstamps > maxFields+1 || nstamps*16 > uint64(len(d.b)) {
		d.fail("stamp count")
		return Row{}
	}
	stamps := make([]Stamp, nstamps)
	for i := range stamps {
		stamps[i] = Stamp{HLC: hlc.Timestamp(d.u64("stamp")), Node: NodeID(d.u64("stamp"))}
	}
	stamp := func(what string) Stamp {
		i := d.uvarint(what)
		if i >= nstamps {
			d.fail(what)
			return Stamp{}
		}
		return stamps[i]
	}
	r.Stamp = stamp("row stamp")
	nfields := d.uvarint("field count")
	if nfields > maxFields || nfields*3 > uint64(len(d.b)) {
		d.fail("field count")
		return Row{}
	}
	if nfields > 0 {
		r.Fields = make([]Field, nfields)
	}
	for i := range r.Fields {
		num := d.uvarint("field number")
		if num == 0 || num > maxFieldNum || (i > 0 && uint32(num) <= r.Fields[i-1].Num) {
			d.fail("field numbers not ascending")
			return Row{}
		}
		f := Field{Num: uint32(num), Stamp: stamp("field stamp")}
		n := d.uvarint("value length")
		if n > maxValueBytes {
			d.fail("value too large")
			return Row{}
		}
		f.Value = d.bytes(n, "value")
		r.Fields[i] = f
	}
	if d.err == nil && r.CL%2 == 0 && len(r.Fields) > 0 {
		d.fail("deleted row with fields")
	}
	return r
}

// DecodeRow decodes a row encoded by AppendRow. The field values alias b.
// It never panics on bad input and rejects trailing bytes.
func DecodeRow(b []byte) (Row, error) {
	d := decoder{b: b}
	r := d.row()
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return r, d.err
}
