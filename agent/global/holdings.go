package global

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/strata-state/strata/agent/store"
)

// liveIndex is the live records of each (record type, region) in the
// global store: what the count budget needs. It lists a region's records
// once, then follows the store's change feed, one pass a record type for
// all its regions, so that a write or a received change costs the changes
// committed since the last one, not a scan of the region's records. It is
// safe for concurrent use.
type liveIndex struct {
	st *store.Store
	mu sync.Mutex
	m  map[string]*tableIndex // record type
}

// tableIndex is the live records of one record type, by region, as of
// feed position seq.
type tableIndex struct {
	seq     uint64
	regions map[string]map[string]bool // region → record keys
	all     bool                       // every region is indexed, those that appear later too
}

func newLiveIndex(st *store.Store) *liveIndex {
	return &liveIndex{st: st, m: map[string]*tableIndex{}}
}

// feedPage is how many feed events one read of the feed takes.
const feedPage = 4096

// view calls fn with region's live records of type name, up to date with
// the store, and their feed position. fn runs under x.mu and must not
// keep keys.
func (x *liveIndex) view(name, region string, fn func(keys map[string]bool, seq uint64)) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	ti, keys, err := x.caughtUp(name, region)
	if err != nil {
		return err
	}
	fn(keys, ti.seq)
	return nil
}

// Holds reports whether region holds name/key live, and how many live
// records of type name it holds. It reads no row: the index knows.
func (x *liveIndex) Holds(name, region, key string) (exists bool, n int, err error) {
	err = x.view(name, region, func(keys map[string]bool, _ uint64) {
		exists, n = keys[key], len(keys)
	})
	return exists, n, err
}

// count returns how many live records of type name the store holds, of
// every region. The first call lists the type's records; later ones
// follow the feed, as Holds does.
func (x *liveIndex) count(name string) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	ti := x.m[name]
	if ti != nil {
		err := x.follow(ti, name, x.st.Seq())
		if errors.Is(err, store.ErrFeedTrimmed) {
			ti = nil
		} else if err != nil {
			return 0, err
		}
	}
	if ti == nil {
		ti = &tableIndex{seq: x.st.Seq(), regions: map[string]map[string]bool{}}
		x.m[name] = ti
	}
	if !ti.all {
		// As in caughtUp: list the regions not indexed yet, then replay
		// the feed from before the listing.
		rows, _, err := x.st.List(name, "", 0)
		if err != nil {
			return 0, err
		}
		fresh := map[string]map[string]bool{}
		for _, kr := range rows {
			region, k, ok := SplitStoreKey(kr.Key)
			if !ok || ti.regions[region] != nil {
				continue
			}
			if fresh[region] == nil {
				fresh[region] = map[string]bool{}
			}
			if live(kr.Row) {
				fresh[region][k] = true
			}
		}
		for region, keys := range fresh {
			ti.regions[region] = keys
		}
		ti.all = true
		if err := x.follow(ti, name, x.st.Seq()); err != nil {
			delete(x.m, name)
			return 0, err
		}
	}
	n := 0
	for _, keys := range ti.regions {
		n += len(keys)
	}
	return n, nil
}

// caughtUp returns the index of type name brought up to the store's last
// commit, and region's keys in it. x.mu is held.
func (x *liveIndex) caughtUp(name, region string) (*tableIndex, map[string]bool, error) {
	ti := x.m[name]
	if ti != nil {
		err := x.follow(ti, name, x.st.Seq())
		if errors.Is(err, store.ErrFeedTrimmed) {
			ti = nil // fallen behind the feed's horizon: list again
		} else if err != nil {
			return nil, nil, err
		}
	}
	if ti == nil {
		ti = &tableIndex{seq: x.st.Seq(), regions: map[string]map[string]bool{}}
		x.m[name] = ti
	}
	keys := ti.regions[region]
	if keys != nil {
		return ti, keys, nil
	}
	// List, then replay the feed from before the listing: each event
	// holds a row's state after a change, so replaying in order ends at
	// the latest state whatever the listing already saw.
	keys = map[string]bool{}
	rows, err := x.st.ListPrefix(name, region+"/")
	if err != nil {
		return nil, nil, err
	}
	for _, kr := range rows {
		if live(kr.Row) {
			keys[kr.Key[len(region)+1:]] = true
		}
	}
	ti.regions[region] = keys
	if err := x.follow(ti, name, x.st.Seq()); err != nil {
		delete(x.m, name)
		return nil, nil, err
	}
	return ti, keys, nil
}

// follow applies the feed's events of type name after ti.seq, up to head,
// to the regions ti holds. x.mu is held.
func (x *liveIndex) follow(ti *tableIndex, name string, head uint64) error {
	for ti.seq < head {
		evs, pos, err := x.st.FeedSince(ti.seq, name, feedPage)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			region, k, ok := SplitStoreKey(ev.Key)
			keys := ti.regions[region]
			if ok && keys == nil && ti.all {
				keys = map[string]bool{}
				ti.regions[region] = keys
			}
			switch {
			case !ok || keys == nil:
			case live(ev.Row):
				keys[k] = true
			default:
				delete(keys, k)
			}
		}
		if pos == ti.seq {
			break // head is committed but not yet readable: later
		}
		ti.seq = pos
	}
	return nil
}

// DeletedRow reports whether row, of the global store, is a record's
// signed delete: alive to the store, but with an empty value. It is the
// global store's store.Options.Deleted, so that tombstone_ttl reaps
// deletes as it reaps the regional tier's tombstones.
func DeletedRow(_ string, row store.Row) bool { return row.Alive() && !live(row) }

// live reports whether row holds a record: alive in the store and not a
// signed delete.
func live(row store.Row) bool {
	if !row.Alive() {
		return false
	}
	f, _ := row.Field(ValueField)
	return len(f.Value) > 0
}

// pendingHoldings are holdings that run ahead of the store: the store's,
// plus new records accepted but not yet merged. A receiver keeps one for
// the changes peers send (the tier checks a whole message, then merges
// it); a writer keeps one for its own writes between their check and
// their commit, so that writes checked meanwhile count them against
// max_per_region. pending entries are dropped once the store holds them,
// when their writer drops them, or after pendingTTL (a change accepted,
// then refused by the store, or a write whose commit was not confirmed).
type pendingHoldings struct {
	index   *liveIndex
	now     func() time.Time
	mu      sync.Mutex
	pending map[[2]string]map[string]time.Time // (name, region) → key → accepted at
	pruned  map[[2]string]uint64               // (name, region) → feed position pending was pruned at
}

const pendingTTL = time.Minute

func newPendingHoldings(x *liveIndex, now func() time.Time) *pendingHoldings {
	return &pendingHoldings{index: x, now: now, pending: map[[2]string]map[string]time.Time{}, pruned: map[[2]string]uint64{}}
}

// add records an accepted change to a record the store does not hold yet.
// It reports whether the record was not pending before. h.mu is held.
func (h *pendingHoldings) add(name, region, key string, at time.Time) (added bool, err error) {
	nr := [2]string{name, region}
	err = h.index.view(name, region, func(keys map[string]bool, _ uint64) {
		if keys[key] {
			return
		}
		if h.pending[nr] == nil {
			h.pending[nr] = map[string]time.Time{}
		}
		_, was := h.pending[nr][key]
		h.pending[nr][key] = at
		added = !was
	})
	return added, err
}

// drop forgets a pending record. h.mu is held.
func (h *pendingHoldings) drop(name, region, key string) {
	delete(h.pending[[2]string{name, region}], key)
}

// Holds is the store's holdings plus the pending records. h.mu is held.
func (h *pendingHoldings) Holds(name, region, key string) (exists bool, n int, err error) {
	nr := [2]string{name, region}
	err = h.index.view(name, region, func(keys map[string]bool, seq uint64) {
		pending := h.pending[nr]
		if p, ok := h.pruned[nr]; !ok || p != seq {
			now := h.now()
			for k, at := range pending {
				if keys[k] || now.Sub(at) > pendingTTL {
					delete(pending, k)
				}
			}
			h.pruned[nr] = seq
		}
		// After the pruning above, pending keys are not in the store.
		_, isPending := pending[key]
		exists, n = keys[key] || isPending, len(keys)+len(pending)
	})
	return exists, n, err
}

// keyClaims are the records this node's writes are writing. A write
// claims all its records at once before it checks them, and keeps them
// until its commit returns (one that returns store.ErrUnconfirmed may
// still land after; a later write of the record then merges with it as
// with any concurrent write, by causal length and stamp): writes of one record are
// checked and committed one after the other (each reads the causal length
// the one before left), while writes of other records are checked and
// committed alongside, in the store's group commits. Claiming all at once
// or none keeps two batches from each holding a record the other waits
// for. It is safe for concurrent use.
type keyClaims struct {
	mu   sync.Mutex
	held map[[3]string]chan struct{} // (name, region, key) → closed on release
}

// claim waits until none of ids is claimed, then claims them all. It
// gives up when ctx ends, claiming nothing. The caller calls release
// once its write is done.
func (c *keyClaims) claim(ctx context.Context, ids [][3]string) (release func(), err error) {
	for {
		c.mu.Lock()
		var busy chan struct{}
		for _, id := range ids {
			if ch, ok := c.held[id]; ok {
				busy = ch
				break
			}
		}
		if busy == nil {
			if c.held == nil {
				c.held = map[[3]string]chan struct{}{}
			}
			done := make(chan struct{})
			for _, id := range ids {
				c.held[id] = done
			}
			c.mu.Unlock()
			return func() {
				c.mu.Lock()
				for _, id := range ids {
					delete(c.held, id)
				}
				c.mu.Unlock()
				close(done)
			}, nil
		}
		c.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, fmt.Errorf("global: waiting for an earlier write of the same record: %w", ctx.Err())
		}
	}
}
