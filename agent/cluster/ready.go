package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Catch-up after a (re)start. A node that joins its tier runs one
// anti-entropy exchange with a peer at once, instead of waiting for its
// next sync_interval, and reports ready only once an exchange has
// finished: until then it may serve rows that its peers have since
// changed. Members already in the tier also start an exchange with each
// member that joins (or comes back from dead), so rows the newcomer wrote
// while away reach them as fast.

// catchUpRetry is how long a joining node waits for an exchange to finish
// before it tries another peer.
const catchUpRetry = time.Second

// ErrNotReady is wrapped by Ready's error while the node has not caught up.
var ErrNotReady = errors.New("cluster: not ready")

// Ready returns nil once this node has caught up with its tier: an
// anti-entropy exchange with a peer finished after Start, or Start found
// no peer to catch up with (a node alone in its tier is ready at once).
// Otherwise it returns an error, wrapping ErrNotReady, saying what the
// node waits for. Safe for concurrent use.
func (t *Tier) Ready() error {
	select {
	case <-t.ready:
		return nil
	default:
	}
	started := t.startedAt.Load()
	if started == nil {
		return fmt.Errorf("%w: %s tier not started: joining peers", ErrNotReady, t.cfg.Tier)
	}
	if t.needsTransfer() {
		return fmt.Errorf("%w: %s tier waiting for a full state transfer from a peer: its last exchange (%s) is older than tombstone_ttl (%s)",
			ErrNotReady, t.cfg.Tier, t.store.LastSynced().UTC().Format(time.RFC3339), t.cfg.TombstoneTTL)
	}
	return fmt.Errorf("%w: %s tier waiting for its first anti-entropy exchange with a peer (%d alive, waiting %s)",
		ErrNotReady, t.cfg.Tier, len(t.peers()), time.Since(*started).Round(time.Millisecond))
}

// markReady records that the node has caught up; it stays ready.
func (t *Tier) markReady() {
	t.readyOnce.Do(func() { close(t.ready) })
}

// isReady reports whether markReady was called.
func (t *Tier) isReady() bool {
	select {
	case <-t.ready:
		return true
	default:
		return false
	}
}

// startCatchUp runs once Start has joined: a node with no peer is ready
// at once, before Start returns; another catches up in the background.
func (t *Tier) startCatchUp() {
	now := time.Now()
	t.startedAt.Store(&now)
	if len(t.peers()) == 0 {
		t.log.Info("no peer to catch up with: ready")
		t.markReady()
		return
	}
	t.done.Add(1)
	go t.catchUp()
}

// catchUp runs exchanges with random peers until one finishes, then
// returns; with no peer left alive, the node is alone and ready.
func (t *Tier) catchUp() {
	defer t.done.Done()
	for !t.isReady() {
		peers := t.peers()
		if len(peers) == 0 {
			t.log.Info("no peer to catch up with: ready")
			t.markReady()
			return
		}
		t.SyncWith(peers[rand.N(len(peers))].Name)
		select {
		case <-t.ready:
		case <-t.stop:
			return
		case <-time.After(catchUpRetry):
		}
	}
	t.log.Info("caught up with a peer: ready")
}

// syncSoon asks the anti-entropy loop to start an exchange with a member
// that just joined, without blocking (memberlist calls NotifyJoin under
// its lock). A node still catching up leaves this to catchUp, so that
// joining does not start one exchange per member it learns of.
func (t *Tier) syncSoon(name string) {
	if name == t.cfg.Node || !t.isReady() {
		return
	}
	select {
	case t.syncNow <- syncAsk{peer: name}:
	default: // a burst of joins: the periodic exchanges cover the rest
	}
}
