package cluster

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/strata-state/strata/agent/store"
)

// Anti-entropy exchange between an initiator A and a responder B, all over
// memberlist streams (SendReliable: labelled, encrypted with the tier key):
//
//	A → B  sync-digest: A's root and branch hashes (about 1 KB)
//	B → A  sync-leaves: B's leaf hashes for each branch that differs
//	         (none: in sync, the exchange ends)
//	A → B  sync-keys:   A's (table, key, row hash) in each leaf that differs
//	B → A  sync-rows:   B's rows that A lacks or holds differently, and the
//	         keys B wants from A
//	A → B  sync-rows:   the rows B wanted
//
// Every step is computed from the receiver's current state and the message
// alone: no session state, so a lost or reordered message only ends that
// exchange, and the next one starts afresh. Rows are merged (a join), so
// shipping a row the peer already has is harmless, only wasteful.

// maxRowsPerMessage bounds the rows of one sync-rows message (memberlist
// refuses user messages over 20 MiB).
const maxRowsBytes = 1 << 20

// syncResult reports the end of an exchange initiated here.
type syncResult struct {
	Peer     string
	InSync   bool
	Sent     int
	Received int
}

// antiEntropyLoop starts an exchange with a random peer every interval,
// jittered so that nodes do not synchronise in lockstep.
func (t *Tier) antiEntropyLoop() {
	defer t.done.Done()
	for {
		d := t.cfg.SyncInterval/2 + rand.N(t.cfg.SyncInterval)
		select {
		case <-t.stop:
			return
		case peer := <-t.syncNow:
			t.SyncWith(peer)
			continue
		case <-time.After(d):
		}
		t.SyncOnce()
	}
}

// SyncOnce starts one anti-entropy exchange with a random alive peer. It
// returns the peer's name, or "" when this node is alone. The exchange
// completes asynchronously.
func (t *Tier) SyncOnce() string {
	peers := t.peers()
	if len(peers) == 0 {
		return ""
	}
	p := peers[rand.N(len(peers))]
	t.SyncWith(p.Name)
	return p.Name
}

// SyncWith starts an exchange with the named peer, or asks it for a full
// state transfer when this node has been away longer than the tombstone
// TTL.
func (t *Tier) SyncWith(peer string) {
	if t.needsTransfer() {
		t.requestTransfer(peer)
		return
	}
	n := t.node(peer)
	if n == nil {
		return
	}
	d := t.store.Digest()
	msg := &syncDigestMsg{header: t.hdr(msgSyncDigest), Session: rand.Uint64(), Root: d.Root()}
	msg.Branches = make([]store.Hash, store.Branches)
	for i := range msg.Branches {
		msg.Branches[i] = d.Branch(i)
	}
	t.send(n, msg)
}

func (t *Tier) hdr(typ msgType) header { return header{Type: typ, Sender: t.cfg.Node} }

// send streams a message to a node, counting failures.
func (t *Tier) send(n *memberlist.Node, msg any) bool {
	if err := t.ml.SendReliable(n, encodeMessage(msg)); err != nil {
		t.m.syncs.WithLabelValues(t.cfg.Tier, "failed").Inc()
		t.log.Debug("sync: send failed", "peer", n.Name, "err", err)
		return false
	}
	return true
}

// syncLoop handles sync messages one at a time.
func (t *Tier) syncLoop() {
	defer t.done.Done()
	for {
		select {
		case <-t.stop:
			return
		case in := <-t.syncIn:
			t.handleSync(in.msg)
			t.inbox.release(in.size)
		}
	}
}

func (t *Tier) handleSync(msg any) {
	switch m := msg.(type) {
	case *syncDigestMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "sync-digest").Inc()
		t.onDigest(m)
	case *syncLeavesMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "sync-leaves").Inc()
		t.onLeaves(m)
	case *syncKeysMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "sync-keys").Inc()
		t.refuseItems(m.Sender, m.Refused)
		t.onKeys(m)
	case *syncRowsMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "sync-rows").Inc()
		t.refuseItems(m.Sender, m.Refused)
		t.onRows(m)
	case *transferRequestMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "transfer-request").Inc()
		t.onTransferRequest(m)
	case *transferRowsMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "transfer-rows").Inc()
		t.refuseItems(m.Sender, m.Refused)
		t.onTransferRows(m)
	}
}

// onDigest (responder): answer with the leaves of differing branches. A
// node waiting for a state transfer does not answer: its old rows are what
// the transfer replaces, and must not be shipped meanwhile.
func (t *Tier) onDigest(m *syncDigestMsg) {
	n := t.node(m.Sender)
	if n == nil || t.needsTransfer() {
		return
	}
	reply := &syncLeavesMsg{header: t.hdr(msgSyncLeaves), Session: m.Session}
	reply.Branch, reply.Leaves = answerDigest(t.store.Digest(), m.Root, m.Branches)
	t.send(n, reply)
}

// onLeaves (initiator): list this node's keys in the leaves that differ.
func (t *Tier) onLeaves(m *syncLeavesMsg) {
	n := t.node(m.Sender)
	if n == nil {
		return
	}
	leaves := differingLeaves(t.store.Digest(), m.Branch, m.Leaves)
	if len(leaves) == 0 {
		t.m.syncs.WithLabelValues(t.cfg.Tier, "in_sync").Inc()
		t.finished(syncResult{Peer: m.Sender, InSync: true})
		return
	}
	keys, err := t.store.LeafKeys(leaves)
	if err != nil {
		t.log.Error("sync: reading leaf keys", "err", err)
		return
	}
	reply := &syncKeysMsg{header: t.hdr(msgSyncKeys), Session: m.Session, Keys: keys}
	for _, l := range leaves {
		reply.Leaves = append(reply.Leaves, uint16(l))
	}
	t.send(n, reply)
}

// onKeys (responder): send the rows the initiator lacks or holds
// differently, and ask for the ones this node lacks or holds differently.
func (t *Tier) onKeys(m *syncKeysMsg) {
	n := t.node(m.Sender)
	if n == nil {
		return
	}
	leaves := make([]int, len(m.Leaves))
	for i, l := range m.Leaves {
		leaves[i] = int(l)
	}
	mine, err := t.store.LeafKeys(leaves)
	if err != nil {
		t.log.Error("sync: reading leaf keys", "err", err)
		return
	}
	send, want := diffKeys(mine, m.Keys)
	t.sendRows(n, m.Session, send, want)
}

// sendRows ships rows in messages of bounded size; the last one carries
// the wanted keys.
func (t *Tier) sendRows(n *memberlist.Node, session uint64, keys, want []store.KeyHash) {
	rows, err := t.store.Rows(keys)
	if err != nil {
		t.log.Error("sync: reading rows", "err", err)
		return
	}
	t.m.synced.WithLabelValues(t.cfg.Tier, "sent").Add(float64(len(rows)))
	batches := batchRows(rows, maxRowsBytes)
	for i, batch := range batches {
		msg := &syncRowsMsg{header: t.hdr(msgSyncRows), Session: session, Rows: batch}
		if i == len(batches)-1 {
			msg.Want, msg.Final = want, len(want) == 0
		}
		if !t.send(n, msg) {
			return
		}
	}
}

// onRows merges rows from a peer (without re-broadcasting them) and, when
// the peer wants rows back, sends them.
func (t *Tier) onRows(m *syncRowsMsg) {
	rows := t.accept(m.Sender, m.Rows)
	if len(rows) > 0 {
		applied, rejected, err := t.store.Repair(context.Background(), rows)
		if err != nil {
			t.log.Error("sync: merging rows", "err", err)
			return
		}
		t.m.bcast.applied.WithLabelValues(t.cfg.Tier, pathAntiEntropy).Add(float64(len(applied)))
		for _, r := range rejected {
			t.reject(m.Sender, rejectReason(r.Err), r.Err)
		}
		t.m.synced.WithLabelValues(t.cfg.Tier, "received").Add(float64(len(rows) - len(rejected)))
	}
	if len(m.Want) > 0 {
		if n := t.node(m.Sender); n != nil {
			t.sendRows(n, m.Session, m.Want, nil)
		}
		t.m.syncs.WithLabelValues(t.cfg.Tier, "repaired").Inc()
		t.finished(syncResult{Peer: m.Sender, Received: len(m.Rows), Sent: len(m.Want)})
		return
	}
	if m.Final {
		t.finished(syncResult{Peer: m.Sender, Received: len(m.Rows)})
	}
}

// finished records a completed exchange (for the away-too-long check at
// start) and reports it to SyncResults readers, if any.
func (t *Tier) finished(r syncResult) {
	if t.needsTransfer() {
		// The rows merged are fine, but this node's old state still needs
		// the transfer: do not record it as synced.
		t.requestTransfer(r.Peer)
		return
	}
	if err := t.store.MarkSynced(time.Now()); err != nil {
		t.log.Debug("recording sync time", "err", err)
	}
	t.resetTransfer()
	t.markReady()
	select {
	case t.syncDone <- r:
	default:
	}
}
