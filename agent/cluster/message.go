package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/strata-state/strata/agent/store"
)

// msgType is the first byte of every strata message on memberlist.
type msgType byte

const (
	// msgChanges carries changes: gossip broadcasts and stream pushes.
	msgChanges msgType = iota + 1
	// msgSyncDigest opens an anti-entropy exchange: the sender's branches.
	msgSyncDigest
	// msgSyncLeaves answers with the leaves of the branches that differ.
	msgSyncLeaves
	// msgSyncKeys lists the sender's keys and row hashes in differing leaves.
	msgSyncKeys
	// msgSyncRows carries rows for the peer to merge, and, from the
	// responder, the keys it wants in return.
	msgSyncRows
)

func (t msgType) String() string {
	switch t {
	case msgChanges:
		return "changes"
	case msgSyncDigest:
		return "sync-digest"
	case msgSyncLeaves:
		return "sync-leaves"
	case msgSyncKeys:
		return "sync-keys"
	case msgSyncRows:
		return "sync-rows"
	}
	return fmt.Sprintf("type-%d", byte(t))
}

// Bounds on decoded messages: bytes from the network are not trusted.
const (
	maxNameLen     = 256
	maxTableLen    = 256
	maxKeyLen      = 4096
	maxChanges     = 1 << 20
	maxMessageSize = 16 << 20
)

// errMalformed is wrapped by every decoding error.
var errMalformed = errors.New("cluster: malformed message")

// header starts every message: its type and the sending node's name.
type header struct {
	Type   msgType
	Sender string
}

// changesMsg is a batch of changes.
type changesMsg struct {
	header
	Changes []store.Change
}

// syncDigestMsg opens an exchange with the initiator's branch hashes.
type syncDigestMsg struct {
	header
	Session  uint64
	Root     store.Hash
	Branches []store.Hash // store.Branches of them
}

// syncLeavesMsg carries, for each branch that differs, its leaf hashes.
type syncLeavesMsg struct {
	header
	Session uint64
	Branch  []uint16     // branch indexes
	Leaves  []store.Hash // BranchFanout hashes per branch, in order
}

// syncKeysMsg lists the rows of the leaves that differ.
type syncKeysMsg struct {
	header
	Session uint64
	Leaves  []uint16
	Keys    []store.KeyHash
}

// syncRowsMsg carries rows to merge and keys wanted back.
type syncRowsMsg struct {
	header
	Session uint64
	Rows    []store.Change
	Want    []store.KeyHash // only Table and Key are meaningful
	Final   bool            // the last message of the exchange
}

// encoder appends message fields.
type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) hash(h store.Hash) {
	e.b = append(e.b, h[:]...)
}
func (e *encoder) header(h header) {
	e.b = append(e.b, byte(h.Type))
	e.str(h.Sender)
}
func (e *encoder) changes(cs []store.Change) {
	e.uvarint(uint64(len(cs)))
	for _, c := range cs {
		e.str(c.Table)
		e.str(c.Key)
		e.bytes(store.AppendRow(nil, c.Row))
	}
}
func (e *encoder) keys(ks []store.KeyHash, withHash bool) {
	e.uvarint(uint64(len(ks)))
	for _, k := range ks {
		e.str(k.Table)
		e.str(k.Key)
		if withHash {
			e.hash(k.Hash)
		}
	}
}

// decoder reads message fields; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("%s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) raw(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("%s truncated", what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(limit int, what string) string {
	n := d.uvarint(what)
	if n > uint64(limit) {
		d.fail("%s longer than %d bytes", what, limit)
		return ""
	}
	return string(d.raw(n, what))
}

func (d *decoder) hash(what string) store.Hash {
	var h store.Hash
	copy(h[:], d.raw(uint64(len(h)), what))
	return h
}

// count reads a list length, bounded by limit and by the bytes left (each
// element takes at least minSize bytes).
func (d *decoder) count(limit, minSize int, what string) int {
	n := d.uvarint(what)
	if d.err == nil && (n > uint64(limit) || n*uint64(minSize) > uint64(len(d.b))) {
		d.fail("%s count %d too large", what, n)
		return 0
	}
	return int(n)
}

func (d *decoder) changes() []store.Change {
	n := d.count(maxChanges, 3, "changes")
	out := make([]store.Change, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		c := store.Change{Table: d.str(maxTableLen, "table"), Key: d.str(maxKeyLen, "key")}
		raw := d.raw(d.uvarint("row length"), "row")
		if d.err != nil {
			break
		}
		row, err := store.DecodeRow(raw)
		if err != nil {
			d.fail("change %d (%s/%s): %v", i, c.Table, c.Key, err)
			break
		}
		if c.Table == "" || c.Key == "" {
			d.fail("change %d: empty table or key", i)
			break
		}
		c.Row = row
		out = append(out, c)
	}
	return out
}

func (d *decoder) keys(withHash bool) []store.KeyHash {
	minSize := 2
	if withHash {
		minSize += len(store.Hash{})
	}
	n := d.count(maxChanges, minSize, "keys")
	out := make([]store.KeyHash, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		k := store.KeyHash{Table: d.str(maxTableLen, "table"), Key: d.str(maxKeyLen, "key")}
		if withHash {
			k.Hash = d.hash("row hash")
		}
		out = append(out, k)
	}
	return out
}

// encodeMessage encodes one of the message types.
func encodeMessage(m any) []byte {
	e := &encoder{}
	switch m := m.(type) {
	case *changesMsg:
		e.header(m.header)
		e.changes(m.Changes)
	case *syncDigestMsg:
		e.header(m.header)
		e.uvarint(m.Session)
		e.hash(m.Root)
		e.uvarint(uint64(len(m.Branches)))
		for _, h := range m.Branches {
			e.hash(h)
		}
	case *syncLeavesMsg:
		e.header(m.header)
		e.uvarint(m.Session)
		e.uvarint(uint64(len(m.Branch)))
		for i, b := range m.Branch {
			e.uvarint(uint64(b))
			for _, h := range m.Leaves[i*store.BranchFanout : (i+1)*store.BranchFanout] {
				e.hash(h)
			}
		}
	case *syncKeysMsg:
		e.header(m.header)
		e.uvarint(m.Session)
		e.uvarint(uint64(len(m.Leaves)))
		for _, l := range m.Leaves {
			e.uvarint(uint64(l))
		}
		e.keys(m.Keys, true)
	case *syncRowsMsg:
		e.header(m.header)
		e.uvarint(m.Session)
		e.changes(m.Rows)
		e.keys(m.Want, false)
		if m.Final {
			e.b = append(e.b, 1)
		} else {
			e.b = append(e.b, 0)
		}
	default:
		panic(fmt.Sprintf("cluster: encodeMessage(%T)", m))
	}
	return e.b
}

// decodeMessage decodes any strata message. It never panics on bad input.
func decodeMessage(b []byte) (any, error) {
	if len(b) > maxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errMalformed, len(b), maxMessageSize)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", errMalformed)
	}
	d := &decoder{b: b[1:]}
	h := header{Type: msgType(b[0])}
	h.Sender = d.str(maxNameLen, "sender")
	var out any
	switch h.Type {
	case msgChanges:
		out = &changesMsg{header: h, Changes: d.changes()}
	case msgSyncDigest:
		m := &syncDigestMsg{header: h, Session: d.uvarint("session"), Root: d.hash("root")}
		if n := d.uvarint("branch count"); d.err == nil && n != store.Branches {
			d.fail("%d branches, want %d", n, store.Branches)
		}
		for i := 0; i < store.Branches && d.err == nil; i++ {
			m.Branches = append(m.Branches, d.hash("branch"))
		}
		out = m
	case msgSyncLeaves:
		m := &syncLeavesMsg{header: h, Session: d.uvarint("session")}
		n := d.count(store.Branches, 1+store.BranchFanout*len(store.Hash{}), "branches")
		for i := 0; i < n && d.err == nil; i++ {
			b := d.uvarint("branch")
			if b >= store.Branches {
				d.fail("branch %d out of range", b)
			}
			m.Branch = append(m.Branch, uint16(b))
			for j := 0; j < store.BranchFanout; j++ {
				m.Leaves = append(m.Leaves, d.hash("leaf"))
			}
		}
		out = m
	case msgSyncKeys:
		m := &syncKeysMsg{header: h, Session: d.uvarint("session")}
		n := d.count(store.Leaves, 1, "leaves")
		for i := 0; i < n && d.err == nil; i++ {
			l := d.uvarint("leaf")
			if l >= store.Leaves {
				d.fail("leaf %d out of range", l)
			}
			m.Leaves = append(m.Leaves, uint16(l))
		}
		m.Keys = d.keys(true)
		out = m
	case msgSyncRows:
		m := &syncRowsMsg{header: h, Session: d.uvarint("session")}
		m.Rows = d.changes()
		m.Want = d.keys(false)
		fin := d.raw(1, "final flag")
		m.Final = len(fin) == 1 && fin[0] == 1
		out = m
	default:
		return nil, fmt.Errorf("%w: unknown type %d", errMalformed, b[0])
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%s from %q: %w", h.Type, h.Sender, d.err)
	}
	return out, nil
}
