package store

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-state/strata/agent/hlc"
)

// Replacement is a full state transfer: a peer's snapshot of the tier that
// replaces this store's rows, for a node that was away longer than the
// tombstone TTL. Its old rows cannot be reconciled by anti-entropy: peers
// have reaped the tombstones of rows deleted meanwhile, so a merge would
// bring those rows back (and peers refuse them as stale anyway).
type Replacement struct {
	// Rows are the peer's rows, tombstones included.
	Rows []Change
	// OwnAfter keeps this node's own writes stamped after it: writes it
	// acknowledged after its last successful exchange, which no peer has.
	// Such a row is kept as this node holds it, merged with the peer's,
	// and reported to OnCommit as new (so it is broadcast again), this
	// node's later parts stamped afresh (peers refuse a change older
	// than their horizon).
	OwnAfter hlc.Timestamp
	// ChangedAfter keeps, merged with the peer's, every row this store
	// changed after this feed position (Seq before the snapshot was
	// requested): changes gossiped to this node while the snapshot was in
	// flight may be newer than the snapshot. Such a row that the snapshot
	// lacks and that is older than Horizon is dropped: the peer reaped it.
	ChangedAfter uint64
	// Horizon is the peer's tombstone horizon. The store's own moves up
	// to it.
	Horizon hlc.Timestamp
}

// Horizon returns the store's tombstone horizon: a remote change for a
// row the store does not hold, stamped before it, is refused (ErrStale).
func (s *Store) Horizon() hlc.Timestamp {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.reaped
}

// Replace replaces the store's rows by a peer's snapshot in one
// transaction, keeping what Replacement says: every other row the store
// holds and the snapshot lacks is removed (watchers see it deleted), and
// every row of the snapshot is written as is (not merged with this
// store's older state). An own row the snapshot lacks is stamped afresh
// (as a write made now, its causal length kept), so that peers, whose
// horizon has moved past its old stamps, accept it when it is broadcast.
// A row whose life began before both the peer's horizon and this node's
// last exchange, and which the snapshot lacks or holds at a lower causal
// length, was deleted and reaped by the peer: this node's
// later writes to it lose to that delete, and the snapshot's state is
// taken. The tombstone horizon does not apply to the
// snapshot, whose old rows this node may never have seen. Snapshot rows
// that are malformed or stamped too far in the future are refused, each
// alone. It returns the refused rows.
//
// It fails, changing nothing, when the change feed no longer holds every
// change after ChangedAfter (too many writes while the snapshot was in
// flight): the caller asks for a new snapshot.
func (s *Store) Replace(ctx context.Context, rep Replacement) ([]Rejected, error) {
	r := &request{replace: &rep}
	if err := s.submit(ctx, r); err != nil {
		return nil, err
	}
	return r.rejected, nil
}

// applyReplace runs a Replacement in the commit transaction.
func (s *Store) applyReplace(tx *bolt.Tx, st *txState, r *request) error {
	rep := r.replace
	if rep.ChangedAfter+1 < st.first {
		// This request fails alone; the others of its group commit.
		r.err = fmt.Errorf("%w: changes after feed position %d were trimmed; ask for a new snapshot", ErrFeedTrimmed, rep.ChangedAfter)
		return nil
	}
	changed := map[rowKey]bool{}
	c := tx.Bucket(bucketFeed).Cursor()
	for k, v := c.Seek(seqKey(rep.ChangedAfter + 1)); k != nil; k, v = c.Next() {
		ev, err := decodeEvent(0, v)
		if err != nil {
			return err
		}
		changed[rowKey{ev.Table, ev.Key}] = true
	}
	// Own writes passed on below are stamped afresh, and must be after
	// the peer's horizon for it to take them: the horizon was read on
	// the peer's clock, which may be ahead of this one (a peer refuses a
	// change older than its horizon that is new to it). A horizon beyond
	// the allowed drift is not followed; those writes are refused as any
	// change from such a peer would be.
	if s.clock.Check(rep.Horizon) == nil {
		s.clock.Update(rep.Horizon)
	}

	snapshot := make(map[rowKey]Row, len(rep.Rows))
	for _, ch := range rep.Rows {
		if err := checkName(ch.Table, ch.Key); err != nil {
			r.rejected = append(r.rejected, Rejected{ch, fmt.Errorf("%w: %v", ErrInvalid, err)})
			continue
		}
		if err := validRow(ch.Row); err != nil {
			r.rejected = append(r.rejected, Rejected{ch, err})
			continue
		}
		if err := s.clock.Check(ch.Row.Latest().HLC); err != nil {
			r.rejected = append(r.rejected, Rejected{ch, err})
			continue
		}
		k := rowKey{ch.Table, ch.Key}
		snapshot[k] = Merge(snapshot[k], ch.Row)
	}

	type held struct {
		k   rowKey
		row Row
		enc []byte
	}
	var current []held
	rows := tx.Bucket(bucketRows)
	err := rows.ForEachBucket(func(table []byte) error {
		return rows.Bucket(table).ForEach(func(k, v []byte) error {
			enc := bytes.Clone(v)
			row, err := DecodeRow(enc)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", table, k, err)
			}
			current = append(current, held{rowKey{string(table), string(k)}, row, enc})
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, h := range current {
		snap, inSnap := snapshot[h.k]
		delete(snapshot, h.k)
		own := s.ownAfter(h.row, rep.OwnAfter)
		// reaped: this row's life began before the peer's horizon and
		// before this node's last exchange, so the peer had it; the peer
		// lacks it now, or holds it at a lower causal length (a life
		// begun anew, counted again from 1): it was deleted and its
		// tombstone reaped. This node's later writes to it were
		// concurrent with that delete, which wins.
		reaped := h.row.Stamp.HLC < rep.Horizon && h.row.Stamp.HLC <= rep.OwnAfter && (!inSnap || snap.CL < h.row.CL)
		var next Row
		switch {
		case reaped && inSnap:
			next = snap
		case reaped:
			if err := s.removeRow(tx, st, h.k, h.row, h.enc); err != nil {
				return err
			}
			continue
		case own && !inSnap:
			next = s.restamp(h.row)
			r.applied = append(r.applied, Change{Table: h.k.table, Key: h.k.key, Row: next})
		case own:
			next = s.restampOwn(Merge(snap, h.row), rep.OwnAfter)
			r.applied = append(r.applied, Change{Table: h.k.table, Key: h.k.key, Row: next})
		case changed[h.k] && inSnap:
			next = Merge(snap, h.row)
		case changed[h.k] && h.row.Latest().HLC >= rep.Horizon:
			next = h.row
		case inSnap:
			next = snap
		default:
			if err := s.removeRow(tx, st, h.k, h.row, h.enc); err != nil {
				return err
			}
			continue
		}
		if !next.Equal(h.row) {
			if err := s.writeRow(tx, st, h.k.table, h.k.key, h.row, h.enc, next); err != nil {
				return err
			}
		}
	}
	missing := make([]rowKey, 0, len(snapshot))
	for k := range snapshot {
		missing = append(missing, k)
	}
	slices.SortFunc(missing, func(a, b rowKey) int { return cmp.Or(cmp.Compare(a.table, b.table), cmp.Compare(a.key, b.key)) })
	for _, k := range missing {
		row := snapshot[k]
		if err := s.clock.Update(row.Latest().HLC); err != nil {
			return err
		}
		if err := s.writeRow(tx, st, k.table, k.key, Row{}, nil, row); err != nil {
			return err
		}
	}
	if rep.Horizon > st.reaped {
		st.reaped = rep.Horizon
		return tx.Bucket(bucketMeta).Put(metaReaped, seqKey(uint64(st.reaped)))
	}
	return nil
}

// restamp returns row as if written now by this node: one fresh stamp on
// the row and every field, the causal length kept.
func (s *Store) restamp(row Row) Row {
	now := Stamp{HLC: s.clock.Now(), Node: s.node}
	out := Row{CL: row.CL, Stamp: now, Fields: make([]Field, len(row.Fields))}
	for i, f := range row.Fields {
		out.Fields[i] = Field{Num: f.Num, Stamp: now, Value: f.Value}
	}
	return out
}

// restampOwn returns row with a fresh stamp on every part of it (the
// row's causal length, fields) that this node wrote after t: those
// writes, made while the node was away, are older than what its peers
// may still accept (their tombstone horizon), and are passed on as
// written now, as an own row the snapshot lacks is.
func (s *Store) restampOwn(row Row, t hlc.Timestamp) Row {
	now := Stamp{HLC: s.clock.Now(), Node: s.node}
	out := Row{CL: row.CL, Stamp: row.Stamp, Fields: slices.Clone(row.Fields)}
	if out.Stamp.Node == s.node && out.Stamp.HLC > t {
		out.Stamp = now
	}
	for i, f := range out.Fields {
		if f.Stamp.Node == s.node && f.Stamp.HLC > t {
			out.Fields[i].Stamp = now
		}
	}
	return out
}

// ownAfter reports whether row holds a stamp of this node after t.
func (s *Store) ownAfter(row Row, t hlc.Timestamp) bool {
	if row.Stamp.Node == s.node && row.Stamp.HLC > t {
		return true
	}
	for _, f := range row.Fields {
		if f.Stamp.Node == s.node && f.Stamp.HLC > t {
			return true
		}
	}
	return false
}

// removeRow deletes a row for good, as reaping does, and tells watchers:
// a live row appears in the feed as deleted.
func (s *Store) removeRow(tx *bolt.Tx, st *txState, k rowKey, row Row, enc []byte) error {
	if err := tx.Bucket(bucketRows).Bucket([]byte(k.table)).Delete([]byte(k.key)); err != nil {
		return err
	}
	leaf := LeafOf(k.table, k.key)
	if st.leaves[leaf].IsZero() {
		st.dirty = append(st.dirty, leaf)
	}
	st.leaves[leaf].xor(RowHash(k.table, k.key, enc))
	if !row.Alive() {
		return nil
	}
	st.counts[k.table]--
	st.seq++
	st.buf = appendEvent(st.buf[:0], k.table, k.key, AppendRow(nil, Row{CL: row.CL + 1, Stamp: row.Stamp}))
	return tx.Bucket(bucketFeed).Put(seqKey(st.seq), bytes.Clone(st.buf))
}
