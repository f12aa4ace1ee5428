package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/strata-state/strata/agent/hlc"
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

// State transfer messages (statetransfer.go), numbered apart from the
// others so that new message types of other features do not collide.
const (
	// msgTransferRequest asks a peer for a snapshot of its store.
	msgTransferRequest msgType = 48 + iota
	// msgTransferRows carries one batch of a snapshot; Final on the last.
	msgTransferRows
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
	case msgTransferRequest:
		return "transfer-request"
	case msgTransferRows:
		return "transfer-rows"
	}
	return fmt.Sprintf("type-%d", byte(t))
}

// Bounds on decoded messages: bytes from the network are not trusted. The
// table and key limits are store.MaxTableLen and store.MaxKeyLen, shared
// with the API and the store, so a key one node accepted is a key every
// peer accepts.
const (
	maxNameLen     = 256
	maxChanges     = 1 << 20
	maxMessageSize = 16 << 20
	// maxCausalLength refuses absurd causal lengths: one is added per
	// delete or re-insert of a row, so no honest row comes near it, and
	// a row at 2^64-1 could never be deleted again.
	maxCausalLength = 1 << 48
)

// messageLimit is the largest sync message a node decodes, and so the
// largest it sends (memberlist's own limit on a stream message is 20 MiB).
// A variable only so that tests can lower it and page a small store.
var messageLimit = maxMessageSize

// errMalformed is wrapped by every decoding error.
var errMalformed = errors.New("cluster: malformed message")

// header starts every message: its type and the sending node's name.
type header struct {
	Type   msgType
	Sender string
}

// refusedItem is one item of a message that was refused on decoding: the
// rest of the message stands.
type refusedItem struct {
	Index  int    // position in its list
	What   string // the list: "change", "row", "key", "want"
	Table  string // as received, cut to a loggable length
	Key    string // as received, cut to a loggable length
	Reason string // strata_gossip_rejected_total reason
	Err    error
}

func (r refusedItem) Error() string {
	return fmt.Sprintf("%s %d (%s/%s): %v", r.What, r.Index, r.Table, r.Key, r.Err)
}

// Bounds on refusals within one message. Only the first few refused items
// are described (for the log); the others are only counted, so refusing
// an item allocates nothing. A message with more rows that do not decode
// than maxMalformedItems is refused whole: its sender is broken, not
// carrying one bad item among good ones.
const (
	maxRefusalDetail  = 8
	maxMalformedItems = 64
)

// refusals are the items of one message refused on decoding. They are
// not encoded.
type refusals struct {
	Items    []refusedItem // the first maxRefusalDetail
	TooLong  int           // table or key over the store's limits
	Invalid  int           // rows that decode but cannot be right
	Malforms int           // rows that do not decode, empty names
}

// Total is the number of items refused.
func (r *refusals) Total() int { return r.TooLong + r.Invalid + r.Malforms }

// add counts one refused item, and describes it if it is among the first.
// describe is called only then.
func (r *refusals) add(reason string, describe func() refusedItem) {
	switch reason {
	case reasonTooLong:
		r.TooLong++
	case reasonInvalidRow:
		r.Invalid++
	default:
		r.Malforms++
	}
	if len(r.Items) < maxRefusalDetail {
		r.Items = append(r.Items, describe())
	}
}

// Refusal reasons, as labels of strata_gossip_rejected_total.
const (
	reasonTooLong    = "too_long"
	reasonMalformed  = "malformed"
	reasonInvalidRow = "invalid_row"
)

// errEmptyName refuses an item with an empty table or key.
var errEmptyName = errors.New("empty table or key")

// changesMsg is a batch of changes.
type changesMsg struct {
	header
	Changes []store.Change
	Refused refusals
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
	Refused refusals
}

// syncRowsMsg carries rows to merge and keys wanted back.
type syncRowsMsg struct {
	header
	Session uint64
	Rows    []store.Change
	Want    []store.KeyHash // only Table and Key are meaningful
	Final   bool            // the last message of the exchange
	Refused refusals        // rows and wanted keys refused on decoding
}

// transferRequestMsg asks for a snapshot.
type transferRequestMsg struct {
	header
	Session uint64
}

// transferRowsMsg is one batch of a snapshot. Batches travel on separate
// streams, so they may arrive in any order: each carries its index, and
// Final marks the last index.
type transferRowsMsg struct {
	header
	Session uint64
	Batch   uint64
	Rows    []store.Change
	Final   bool
	// Unavailable (with Final, no rows): the peer has no snapshot worth
	// taking, as it has not completed an exchange within the tombstone
	// TTL itself.
	Unavailable bool
	// Horizon is the sender's tombstone horizon (on the Final message).
	Horizon hlc.Timestamp
	Refused refusals
}

// encoder appends message fields.
type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) hash(h store.Hash) {
	e.b = append(e.b, h[:]...)
}
func (e *encoder) flag(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
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

// item reads a length-prefixed byte string of an item, and reports
// whether it is longer than limit (which refuses the item: its bytes are
// skipped and the message goes on). Running past the end of the message
// fails the message.
func (d *decoder) item(limit int, what string) (b []byte, tooLong bool) {
	n := d.uvarint(what) // what is a constant: no allocation per item
	b = d.raw(n, what)
	return b, d.err == nil && n > uint64(limit)
}

// tooLong describes a table or key over its limit.
func tooLong(table, key []byte) error {
	if len(table) > store.MaxTableLen {
		return fmt.Errorf("table name is %d bytes, longer than the limit of %d", len(table), store.MaxTableLen)
	}
	return fmt.Errorf("key is %d bytes, longer than the limit of %d", len(key), store.MaxKeyLen)
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

// candidates walks the n items of a list that starts at d's position,
// without decoding or allocating, and returns how many have names within
// bounds: the capacity to allocate for the list. A list that runs past the
// end of the message is refused here, before anything is allocated for
// it. withRow: each item has a row; hashLen: the bytes of its hash.
func (d decoder) candidates(n int, withRow bool, hashLen int) (int, error) {
	c := 0
	for i := 0; i < n && d.err == nil; i++ {
		table, tlong := d.item(store.MaxTableLen, "table")
		key, klong := d.item(store.MaxKeyLen, "key")
		if withRow {
			d.raw(d.uvarint("row length"), "row")
		}
		d.raw(uint64(hashLen), "row hash")
		if !tlong && !klong && len(table) > 0 && len(key) > 0 {
			c++
		}
	}
	return c, d.err
}

// loggable cuts a peer-chosen string to a length fit for logs.
func loggable(b []byte) string {
	const max = 64
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// interned returns table names as strings without allocating one per
// item: a message names few tables.
type interned map[string]string

func (in interned) get(b []byte) string {
	if s, ok := in[string(b)]; ok { // no allocation: the compiler reads the map in place
		return s
	}
	if len(in) >= 64 {
		return string(b)
	}
	s := string(b)
	in[s] = s
	return s
}

// changes reads a list of changes. An item whose table or key is out of
// bounds or whose row does not decode is refused alone: every item is
// length-prefixed, so the next one is still found.
func (d *decoder) changes(what string, refused *refusals) []store.Change {
	n := d.count(maxChanges, 3, what)
	size, err := d.candidates(n, true, 0)
	if err != nil {
		d.err = err
		return nil
	}
	out := make([]store.Change, 0, size)
	tables := interned{}
	for i := 0; i < n && d.err == nil; i++ {
		table, tlong := d.item(store.MaxTableLen, "table")
		key, klong := d.item(store.MaxKeyLen, "key")
		raw := d.raw(d.uvarint("row length"), "row")
		if d.err != nil {
			break
		}
		refuse := func(reason string, err func() error) {
			refused.add(reason, func() refusedItem {
				return refusedItem{Index: i, What: what, Table: loggable(table), Key: loggable(key), Reason: reason, Err: err()}
			})
		}
		if tlong || klong {
			refuse(reasonTooLong, func() error { return tooLong(table, key) })
			continue
		}
		if len(table) == 0 || len(key) == 0 {
			refuse(reasonMalformed, func() error { return errEmptyName })
		} else if row, err := store.DecodeRow(raw); err != nil {
			refuse(reasonMalformed, func() error { return err })
		} else if row.CL > maxCausalLength {
			refuse(reasonInvalidRow, func() error {
				return fmt.Errorf("causal length %d is beyond any honest history (limit %d)", row.CL, uint64(maxCausalLength))
			})
		} else {
			out = append(out, store.Change{Table: tables.get(table), Key: string(key), Row: row})
		}
		if refused.Malforms > maxMalformedItems {
			d.fail("more than %d %ss do not decode", maxMalformedItems, what)
		}
	}
	return out
}

// keys reads a list of keys, with their row hashes or not. A key out of
// bounds is refused alone.
func (d *decoder) keys(what string, withHash bool, refused *refusals) []store.KeyHash {
	minSize := 2
	if withHash {
		minSize += len(store.Hash{})
	}
	n := d.count(maxChanges, minSize, what)
	hashLen := 0
	if withHash {
		hashLen = len(store.Hash{})
	}
	size, err := d.candidates(n, false, hashLen)
	if err != nil {
		d.err = err
		return nil
	}
	out := make([]store.KeyHash, 0, size)
	tables := interned{}
	for i := 0; i < n && d.err == nil; i++ {
		table, tlong := d.item(store.MaxTableLen, "table")
		key, klong := d.item(store.MaxKeyLen, "key")
		var h store.Hash
		if withHash {
			h = d.hash("row hash")
		}
		if d.err != nil {
			break
		}
		describe := func(reason string, err error) func() refusedItem {
			return func() refusedItem {
				return refusedItem{Index: i, What: what, Table: loggable(table), Key: loggable(key), Reason: reason, Err: err}
			}
		}
		switch {
		case tlong || klong:
			refused.add(reasonTooLong, func() refusedItem { return describe(reasonTooLong, tooLong(table, key))() })
		case len(table) == 0 || len(key) == 0:
			refused.add(reasonMalformed, describe(reasonMalformed, errEmptyName))
			if refused.Malforms > maxMalformedItems {
				d.fail("more than %d %ss are empty", maxMalformedItems, what)
			}
		default:
			out = append(out, store.KeyHash{Table: tables.get(table), Key: string(key), Hash: h})
		}
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
		e.flag(m.Final)
	case *transferRequestMsg:
		e.header(m.header)
		e.uvarint(m.Session)
	case *transferRowsMsg:
		e.header(m.header)
		e.uvarint(m.Session)
		e.uvarint(uint64(m.Horizon))
		e.uvarint(m.Batch)
		e.changes(m.Rows)
		flags := byte(0)
		if m.Final {
			flags |= 1
		}
		if m.Unavailable {
			flags |= 2
		}
		e.b = append(e.b, flags)
	default:
		panic(fmt.Sprintf("cluster: encodeMessage(%T)", m))
	}
	return e.b
}

// decodeMessage decodes any strata message. It never panics on bad input.
func decodeMessage(b []byte) (any, error) {
	if len(b) > messageLimit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errMalformed, len(b), messageLimit)
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
		m := &changesMsg{header: h}
		m.Changes = d.changes("change", &m.Refused)
		out = m
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
		m.Keys = d.keys("key", true, &m.Refused)
		out = m
	case msgSyncRows:
		m := &syncRowsMsg{header: h, Session: d.uvarint("session")}
		m.Rows = d.changes("row", &m.Refused)
		m.Want = d.keys("want", false, &m.Refused)
		fin := d.raw(1, "final flag")
		m.Final = len(fin) == 1 && fin[0] == 1
		out = m
	case msgTransferRequest:
		out = &transferRequestMsg{header: h, Session: d.uvarint("session")}
	case msgTransferRows:
		m := &transferRowsMsg{header: h, Session: d.uvarint("session"), Horizon: hlc.Timestamp(d.uvarint("horizon")), Batch: d.uvarint("batch")}
		m.Rows = d.changes("row", &m.Refused)
		if flags := d.raw(1, "flags"); len(flags) == 1 {
			if flags[0]&^3 != 0 {
				d.fail("unknown flags %#x", flags[0])
			}
			m.Final, m.Unavailable = flags[0]&1 != 0, flags[0]&2 != 0
		}
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
