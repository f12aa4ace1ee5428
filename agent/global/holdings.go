package global

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/strata-state/strata/agent/store"
)

// liveIndex is the live records of each (record type, region) in the
// global store: what the count budget needs. It lists a region's records
// once, then follows the store's change feed, so that a write or a
// received change costs the changes committed since the last one, not a
// scan of the region's records. It is safe for concurrent use.
type liveIndex struct {
	st *store.Store
	mu sync.Mutex
	m  map[[2]string]*liveKeys // record type, region
}

// liveKeys is one region's live records of one type, as of feed position
// seq.
type liveKeys struct {
	seq  uint64
	keys map[string]bool // record keys, without the region
}

func newLiveIndex(st *store.Store) *liveIndex {
	return &liveIndex{st: st, m: map[[2]string]*liveKeys{}}
}

// feedPage is how many feed events one read of the feed takes.
const feedPage = 4096

// view calls fn with region's live records of type name, up to date with
// the store, and their feed position. fn runs under x.mu and must not
// keep keys.
func (x *liveIndex) view(name, region string, fn func(keys map[string]bool, seq uint64)) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	lk, err := x.caughtUp(name, region)
	if err != nil {
		return err
	}
	fn(lk.keys, lk.seq)
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

// caughtUp returns the index of (name, region) brought up to the store's
// last commit. x.mu is held.
func (x *liveIndex) caughtUp(name, region string) (*liveKeys, error) {
	nr := [2]string{name, region}
	head := x.st.Seq()
	if lk := x.m[nr]; lk != nil {
		err := x.follow(lk, name, region, head)
		if err == nil {
			return lk, nil
		}
		if !errors.Is(err, store.ErrFeedTrimmed) {
			return nil, err
		}
		// Fallen behind the feed's horizon: list again.
	}
	// List, then replay the feed from before the listing: each event
	// holds a row's state after a change, so replaying in order ends at
	// the latest state whatever the listing already saw.
	lk := &liveKeys{seq: head, keys: map[string]bool{}}
	rows, err := x.st.ListPrefix(name, region+"/")
	if err != nil {
		return nil, err
	}
	for _, kr := range rows {
		if live(kr.Row) {
			lk.keys[kr.Key[len(region)+1:]] = true
		}
	}
	if err := x.follow(lk, name, region, x.st.Seq()); err != nil {
		return nil, err
	}
	x.m[nr] = lk
	return lk, nil
}

// follow applies the feed's events of (name, region) after lk.seq, up to
// head. x.mu is held.
func (x *liveIndex) follow(lk *liveKeys, name, region string, head uint64) error {
	prefix := region + "/"
	for lk.seq < head {
		evs, pos, err := x.st.FeedSince(lk.seq, name, feedPage)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if k, ok := strings.CutPrefix(ev.Key, prefix); ok {
				if live(ev.Row) {
					lk.keys[k] = true
				} else {
					delete(lk.keys, k)
				}
			}
		}
		if pos == lk.seq {
			break // head is committed but not yet readable: later
		}
		lk.seq = pos
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

// receivedHoldings are a receiver's holdings: the store's, plus the new
// records accepted but not yet merged (the tier checks a whole message,
// then merges it). pending entries are dropped once the store holds them,
// or after pendingTTL (a change accepted, then refused by the store).
type receivedHoldings struct {
	index   *liveIndex
	now     func() time.Time
	mu      sync.Mutex
	pending map[[2]string]map[string]time.Time // (name, region) → key → accepted at
	pruned  map[[2]string]uint64               // (name, region) → feed position pending was pruned at
}

const pendingTTL = time.Minute

func newReceivedHoldings(x *liveIndex, now func() time.Time) *receivedHoldings {
	return &receivedHoldings{index: x, now: now, pending: map[[2]string]map[string]time.Time{}, pruned: map[[2]string]uint64{}}
}

// add records an accepted change to a record the store does not hold yet.
// h.mu is held.
func (h *receivedHoldings) add(name, region, key string, at time.Time) error {
	nr := [2]string{name, region}
	return h.index.view(name, region, func(keys map[string]bool, _ uint64) {
		if keys[key] {
			return
		}
		if h.pending[nr] == nil {
			h.pending[nr] = map[string]time.Time{}
		}
		h.pending[nr][key] = at
	})
}

// Holds is the store's holdings plus the pending records. h.mu is held.
func (h *receivedHoldings) Holds(name, region, key string) (exists bool, n int, err error) {
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
