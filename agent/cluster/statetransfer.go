package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// Full state transfer. Peers reap tombstones after tombstone_ttl, so a
// node whose last completed exchange is older than that cannot be
// reconciled by anti-entropy: rows deleted meanwhile would come back from
// it (peers refuse them as stale, but it keeps serving them), and it
// refuses peers' rows older than its own horizon. Such a node, at start or
// after a partition heals, asks a peer for a snapshot instead of a digest
// exchange, and replaces its store with it (store.Replace), keeping the
// writes it acknowledged after its last exchange, which are broadcast
// again. Until then it takes part in no exchange that would record it as
// synced.
//
//	X → P  transfer-request: a session number
//	P → X  transfer-rows:    P's rows, tombstones included, in batches of
//	         about 1 MiB; Final on the last
//
// P reads its rows in chunks, each in its own read transaction, so no
// transaction spans network I/O; the snapshot is not a point in time,
// which a join does not need: what changes meanwhile reaches X by gossip,
// and X keeps every row it changed after asking.

// transferIdle is how long a node waits for the next batch of a snapshot
// before it asks another peer.
const transferIdle = 5 * time.Second

// transferChunk is how many rows a snapshot reads per read transaction.
const transferChunk = 2000

// maxBatchesAhead bounds how far past the batches received so far a batch
// index may be: an index far ahead is not from an honest sender.
const maxBatchesAhead = 1024

// transferState is the snapshot this node is receiving, and whether it is
// serving one.
type transferState struct {
	mu       sync.Mutex
	session  uint64 // 0: none in progress
	peer     string
	since    uint64                    // store feed position when asked
	ownAfter hlc.Timestamp             // own writes after the last exchange
	batches  map[uint64][]store.Change // received, by index
	last     uint64                    // index of the Final batch
	gotLast  bool                      // the Final batch has arrived
	lastMsg  time.Time
	// unavailable holds the alive peers that answered they have no
	// snapshot worth taking; once every alive peer has, the node falls
	// back to anti-entropy (the whole tier was away: there is no fresher
	// state to take).
	unavailable map[string]bool
	fallback    bool
	// replacing: a whole snapshot arrived and is being committed; no new
	// one is asked for meanwhile (the node still looks away until the
	// commit and its sync mark are done).
	replacing bool

	serving atomic.Bool // this node streams a snapshot to a peer
	done    atomic.Int64
}

// needsTransfer reports whether this node must take a state transfer
// instead of a digest exchange: it was away too long, and some peer may
// have fresher state.
func (t *Tier) needsTransfer() bool {
	if !t.awayTooLong() {
		return false
	}
	t.xfer.mu.Lock()
	defer t.xfer.mu.Unlock()
	return !t.xfer.fallback
}

// awayTooLong reports whether this node's last completed exchange is older
// than the tombstone TTL (a node that never completed one is not: it has
// no old state to distrust).
func (t *Tier) awayTooLong() bool {
	if t.cfg.TombstoneTTL <= 0 {
		return false
	}
	last := t.store.LastSynced()
	return !last.IsZero() && time.Since(last) > t.cfg.TombstoneTTL
}

// requestTransfer asks peer for a snapshot, unless one is in flight. A
// peer with which this node shares no protocol version with state
// transfer (protoPush, which brought it) would drop the request: another peer is asked
// instead, and when no alive peer can answer, the node reconciles by
// anti-entropy, as builds before state transfer did.
func (t *Tier) requestTransfer(peer string) {
	n := t.node(peer)
	if n == nil {
		return
	}
	if !t.speaksPush(n) {
		var able []*memberlist.Node
		for _, p := range t.peers() {
			if t.speaksPush(p) {
				able = append(able, p)
			}
		}
		if len(able) == 0 {
			t.xfer.mu.Lock()
			t.xfer.fallback = true
			t.xfer.mu.Unlock()
			t.logOnceTransfer("no alive peer of a build with state transfer (protocol 2 or later): reconciling by anti-entropy instead", peer)
			t.SyncWith(peer)
			return
		}
		n = able[rand.N(len(able))]
		peer = n.Name
	}
	x := &t.xfer
	x.mu.Lock()
	if x.replacing {
		x.mu.Unlock()
		return
	}
	// One snapshot at a time: while batches flow, until they stop for
	// transferIdle; before the first, for catchUpRetry (the peer may not
	// know this node yet, and then ignores the request).
	if x.session != 0 && (len(x.batches) > 0 && time.Since(x.lastMsg) < transferIdle ||
		len(x.batches) == 0 && time.Since(x.lastMsg) < catchUpRetry) {
		x.mu.Unlock()
		return
	}
	x.session = rand.Uint64() | 1
	x.peer = peer
	x.since = t.store.Seq()
	// Own writes after the last exchange, on the clock that stamps them
	// (it runs ahead of the wall clock when peers' clocks do).
	x.ownAfter = t.store.SyncedAt()
	if x.ownAfter == 0 {
		x.ownAfter = hlc.New(t.store.LastSynced().UnixMilli(), 1<<16-1)
	}
	x.batches, x.gotLast = map[uint64][]store.Change{}, false
	x.lastMsg = time.Now()
	msg := &transferRequestMsg{header: t.hdr(msgTransferRequest), Session: x.session}
	x.mu.Unlock()
	t.logOnceTransfer("last exchange older than tombstone_ttl: asking a peer for a full state transfer", peer)
	t.send(n, msg)
}

// logOnceTransfer logs a state transfer step at info level, once per peer.
func (t *Tier) logOnceTransfer(msg, peer string) {
	if t.logged.first("transfer/"+peer+"/"+msg, time.Now()) {
		t.log.Info(msg, "peer", peer, "last_sync", t.store.LastSynced(), "tombstone_ttl", t.cfg.TombstoneTTL)
	}
}

// onTransferRequest (peer) streams this node's rows to the asker, in the
// background, one snapshot at a time (a node already serving stays
// silent: the asker tries another peer). A node that has not completed an
// exchange within the TTL itself answers that it is unavailable: a stale
// snapshot would bring back the rows the transfer is meant to drop.
func (t *Tier) onTransferRequest(m *transferRequestMsg) {
	n := t.node(m.Sender)
	if n == nil {
		return
	}
	if t.store.LastSynced().IsZero() || t.awayTooLong() {
		t.send(n, &transferRowsMsg{header: t.hdr(msgTransferRows), Session: m.Session, Final: true, Unavailable: true})
		return
	}
	if !t.xfer.serving.CompareAndSwap(false, true) {
		return
	}
	t.done.Add(1) // syncLoop holds the group open: not racing Close's Wait
	go func() {
		defer t.done.Done()
		defer t.xfer.serving.Store(false)
		var pos store.RowPos
		sent := 0
		batch := uint64(0)
		for {
			rows, next, err := t.store.RowsAfter(pos, transferChunk)
			if err != nil {
				t.log.Error("state transfer: reading rows", "err", err)
				return
			}
			pos = next
			last := len(rows) < transferChunk
			batches := batchRows(rows, maxRowsBytes)
			for i, rows := range batches {
				select {
				case <-t.stop:
					return
				default:
				}
				msg := &transferRowsMsg{header: t.hdr(msgTransferRows), Session: m.Session, Batch: batch, Rows: rows,
					Final: last && i == len(batches)-1, Horizon: t.store.Horizon()}
				if !t.send(n, msg) {
					return
				}
				sent += len(rows)
				batch++
			}
			if last {
				break
			}
		}
		t.log.Info("state transfer: sent a snapshot", "peer", m.Sender, "rows", sent)
	}()
}

// onTransferRows (asker) collects a snapshot and, on its last batch,
// replaces the store with it.
func (t *Tier) onTransferRows(m *transferRowsMsg) {
	x := &t.xfer
	x.mu.Lock()
	if m.Session == 0 || m.Session != x.session || m.Sender != x.peer {
		x.mu.Unlock()
		return
	}
	if m.Unavailable {
		x.session, x.batches = 0, nil
		if x.unavailable == nil {
			x.unavailable = map[string]bool{}
		}
		x.unavailable[m.Sender] = true
		all := true
		for _, p := range t.peers() {
			all = all && (x.unavailable[p.Name] || !t.speaksPush(p))
		}
		if all {
			x.fallback = true
			t.log.Warn("no peer has completed an exchange within tombstone_ttl either: reconciling by anti-entropy instead of a state transfer")
		}
		x.mu.Unlock()
		return
	}
	if _, dup := x.batches[m.Batch]; dup || m.Batch > uint64(len(x.batches))+maxBatchesAhead {
		x.mu.Unlock()
		return
	}
	x.batches[m.Batch] = t.accept(m.Sender, m.Rows)
	x.lastMsg = time.Now()
	if m.Final {
		x.last, x.gotLast = m.Batch, true
	}
	if !x.gotLast || uint64(len(x.batches)) != x.last+1 {
		x.mu.Unlock()
		return // batches still missing; if one was lost, the asker times out and asks again
	}
	var rows []store.Change
	for i := uint64(0); i <= x.last; i++ {
		rows = append(rows, x.batches[i]...)
	}
	rep := store.Replacement{Rows: rows, OwnAfter: x.ownAfter, ChangedAfter: x.since, Horizon: m.Horizon}
	x.session, x.batches, x.replacing = 0, nil, true
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		x.replacing = false
		x.mu.Unlock()
	}()

	rejected, err := t.store.Replace(context.Background(), rep)
	if err != nil {
		if errors.Is(err, store.ErrFeedTrimmed) {
			t.log.Warn("state transfer: too many changes while the snapshot was in flight; asking again", "err", err)
		} else {
			t.log.Error("state transfer: replacing the store", "peer", m.Sender, "err", err)
		}
		return
	}
	for _, r := range rejected {
		t.reject(m.Sender, rejectReason(r.Err), r.Err)
	}
	if err := t.store.MarkSynced(time.Now()); err != nil {
		t.log.Warn("recording sync time", "err", err)
	}
	t.resetTransfer()
	t.xfer.done.Add(1)
	t.log.Info("state transfer: store replaced by a peer's snapshot", "peer", m.Sender, "rows", len(rep.Rows), "refused", len(rejected))
	t.markReady()
}

// resetTransfer forgets the peers found unavailable and the fallback, once
// this node is synced again.
func (t *Tier) resetTransfer() {
	t.xfer.mu.Lock()
	t.xfer.unavailable, t.xfer.fallback = nil, false
	t.xfer.mu.Unlock()
}

// Transfers is the number of full state transfers this node has taken.
func (t *Tier) Transfers() int64 { return t.xfer.done.Load() }
