package cluster

import (
	"encoding/binary"
	"fmt"

	"github.com/strata-state/strata/agent/cluster/plumtree"
	"github.com/strata-state/strata/agent/store"
)

// msgPlum carries the push path's messages (protocol version 2): a bundle
// of plumtree messages from one sender, sent in one stream. It is numbered
// well above the gossip and sync (1-31) and state transfer (48-) types so that
// each can grow; msgtype_test.go checks that no two types share a byte.
//
//	type byte | sender | count | count × (kind byte | body)
//	push:  flags (1: repair) | runs | runs × (origin | epoch | first seq | n | n × payload)
//	ihave: flags (1: hello) | heads × (origin | epoch | seq)
//	graft, gone: ranges × (origin | epoch | from | to)
//	prune: nothing (the link, for every origin)
//	prune for (kind 6): origins × origin (the link, for these origins)
//
// Items of a push are grouped in runs of consecutive sequence numbers of
// one origin, so a batch names each origin once. A payload is one change:
// table | key | encoded row.
const msgPlum msgType = 64

// wirePruneFor is the kind byte of a prune that names origins
// (plumtree.Prune with Heads). A node of a build before per-origin trees
// does not know it; it is sent only prunes that name none
// (peerSender.send).
const wirePruneFor = 6

// Bounds on decoded push messages, beside those of message.go.
const (
	maxPlumMessages = 1 << 16
	maxPlumRuns     = 1 << 16
)

// plumBundle is a decoded msgPlum.
type plumBundle struct {
	Sender string
	Msgs   []plumtree.Message
	size   int // bytes it holds in the tier's inbox until stepped; not on the wire
}

// encodePlum encodes a bundle of messages from sender.
func encodePlum(sender string, msgs []plumtree.Message) []byte {
	// Sized once: the payloads, and a generous allowance for ids, heads
	// and ranges (a batch is encoded on every send, so growing the buffer
	// by doubling cost more than the encoding itself).
	size := 16 + len(sender)
	for _, m := range msgs {
		size += 8 + 40*(len(m.Heads)+len(m.Ranges))
		for _, it := range m.Items {
			size += len(it.Payload) + binary.MaxVarintLen32
		}
		size += 24 * len(m.Items) / 4 // runs headers, when items do not run on
	}
	e := &encoder{b: make([]byte, 0, size)}
	e.header(header{Type: msgPlum, Sender: sender})
	e.uvarint(uint64(len(msgs)))
	for _, m := range msgs {
		if m.Kind == plumtree.Prune && len(m.Heads) > 0 {
			e.b = append(e.b, wirePruneFor)
			e.uvarint(uint64(len(m.Heads)))
			for _, h := range m.Heads {
				e.str(h.Origin)
			}
			continue
		}
		e.b = append(e.b, byte(m.Kind))
		switch m.Kind {
		case plumtree.Push:
			e.b = append(e.b, boolByte(m.Repair))
			// Items that continue their predecessor's sequence (same
			// origin and epoch, next seq) go as one run: its id once,
			// then the payloads.
			e.uvarint(uint64(countRuns(m.Items)))
			for i := 0; i < len(m.Items); {
				j := i + 1
				for j < len(m.Items) && continues(m.Items[j-1].ID, m.Items[j].ID) {
					j++
				}
				id := m.Items[i].ID
				e.str(id.Origin)
				e.uvarint(id.Epoch)
				e.uvarint(id.Seq)
				e.uvarint(uint64(j - i))
				for _, it := range m.Items[i:j] {
					e.bytes(it.Payload)
				}
				i = j
			}
		case plumtree.IHave:
			e.b = append(e.b, boolByte(m.Hello))
			e.uvarint(uint64(len(m.Heads)))
			for _, h := range m.Heads {
				e.str(h.Origin)
				e.uvarint(h.Epoch)
				e.uvarint(h.Seq)
			}
		case plumtree.Graft, plumtree.Gone:
			e.uvarint(uint64(len(m.Ranges)))
			for _, r := range m.Ranges {
				e.str(r.Origin)
				e.uvarint(r.Epoch)
				e.uvarint(r.From)
				e.uvarint(r.To)
			}
		}
	}
	return e.b
}

// continues reports whether id b follows id a in one run.
func continues(a, b plumtree.ID) bool {
	return b.Origin == a.Origin && b.Epoch == a.Epoch && b.Seq == a.Seq+1
}

// countRuns counts the runs encodePlum writes for items.
func countRuns(items []plumtree.Item) int {
	n := 0
	for i := range items {
		if i == 0 || !continues(items[i-1].ID, items[i].ID) {
			n++
		}
	}
	return n
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// decodePlum decodes a msgPlum. It never panics on bad input and bounds
// every count by the bytes left.
func decodePlum(b []byte) (*plumBundle, error) {
	if len(b) > maxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errMalformed, len(b), maxMessageSize)
	}
	if len(b) == 0 || msgType(b[0]) != msgPlum {
		return nil, fmt.Errorf("%w: not a push message", errMalformed)
	}
	d := &decoder{b: b[1:]}
	out := &plumBundle{Sender: d.str(maxNameLen, "sender")}
	n := d.count(maxPlumMessages, 1, "messages")
	for i := 0; i < n && d.err == nil; i++ {
		kind := d.raw(1, "message kind")
		if d.err != nil {
			break
		}
		m := plumtree.Message{Kind: plumtree.Kind(kind[0])}
		switch m.Kind {
		case plumtree.Push:
			m.Repair = d.flag("push flags")
			runs := d.count(maxPlumRuns, 4, "runs")
			for r := 0; r < runs && d.err == nil; r++ {
				origin := d.str(maxNameLen, "origin")
				epoch := d.uvarint("epoch")
				seq := d.uvarint("first seq")
				items := d.count(maxChanges, 1, "items")
				if d.err == nil && (seq == 0 || seq+uint64(items) < seq) {
					d.fail("run of %s: bad sequence %d+%d", origin, seq, items)
				}
				for j := 0; j < items && d.err == nil; j++ {
					p := d.raw(d.uvarint("payload length"), "payload")
					m.Items = append(m.Items, plumtree.Item{ID: plumtree.ID{Origin: origin, Epoch: epoch, Seq: seq + uint64(j)}, Payload: p})
				}
			}
		case plumtree.IHave:
			m.Hello = d.flag("ihave flags")
			heads := d.count(maxPlumRuns, 3, "heads")
			for h := 0; h < heads && d.err == nil; h++ {
				m.Heads = append(m.Heads, plumtree.Head{Origin: d.str(maxNameLen, "origin"), Epoch: d.uvarint("epoch"), Seq: d.uvarint("seq")})
			}
		case plumtree.Graft, plumtree.Gone:
			ranges := d.count(maxPlumRuns, 4, "ranges")
			for r := 0; r < ranges && d.err == nil; r++ {
				rg := plumtree.Range{Origin: d.str(maxNameLen, "origin"), Epoch: d.uvarint("epoch"), From: d.uvarint("from"), To: d.uvarint("to")}
				if d.err == nil && (rg.From == 0 || rg.To < rg.From || rg.To-rg.From >= maxChanges) {
					d.fail("range %s/%d/%d-%d out of bounds", rg.Origin, rg.Epoch, rg.From, rg.To)
				}
				m.Ranges = append(m.Ranges, rg)
			}
		case plumtree.Prune:
		case wirePruneFor:
			m.Kind = plumtree.Prune
			origins := d.count(maxPlumRuns, 1, "origins")
			if d.err == nil && origins == 0 {
				d.fail("prune naming no origins")
			}
			for o := 0; o < origins && d.err == nil; o++ {
				m.Heads = append(m.Heads, plumtree.Head{Origin: d.str(maxNameLen, "origin")})
			}
		default:
			d.fail("unknown push message kind %d", kind[0])
		}
		out.Msgs = append(out.Msgs, m)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("push from %q: %w", out.Sender, d.err)
	}
	return out, nil
}

// flag reads a flags byte: 0 or 1.
func (d *decoder) flag(what string) bool {
	v := d.raw(1, what)
	if d.err != nil {
		return false
	}
	if v[0] > 1 {
		d.fail("%s: unknown flags %#x", what, v[0])
	}
	return v[0] == 1
}

// encodePayload encodes one change as a push payload.
func encodePayload(c store.Change) []byte {
	e := &encoder{}
	e.str(c.Table)
	e.str(c.Key)
	e.b = store.AppendRow(e.b, c.Row)
	return e.b
}

// decodePayload decodes a push payload into a change.
func decodePayload(p []byte) (store.Change, error) {
	d := &decoder{b: p}
	c := store.Change{Table: d.str(store.MaxTableLen, "table"), Key: d.str(store.MaxKeyLen, "key")}
	if d.err == nil && (c.Table == "" || c.Key == "") {
		d.fail("empty table or key")
	}
	if d.err != nil {
		return store.Change{}, d.err
	}
	row, err := store.DecodeRow(d.b)
	if err != nil {
		return store.Change{}, fmt.Errorf("%w: %s/%s: %v", errMalformed, c.Table, c.Key, err)
	}
	c.Row = row
	return c, nil
}
