package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-state/strata/agent/hlc"
)

// Op is the kind of a local mutation.
type Op uint8

// Mutation kinds.
const (
	// OpPut writes the given fields, creating the row (or re-inserting a
	// deleted one) if needed. To replace a whole row, pass every field of
	// the table, with an empty value for unset ones.
	OpPut Op = iota + 1
	// OpPatch writes the given fields of a live row; ErrNotFound otherwise.
	OpPatch
	// OpDelete deletes a live row; ErrNotFound otherwise.
	OpDelete
)

// FieldValue is a field number and its wire bytes (empty for unset).
type FieldValue struct {
	Num   uint32
	Value []byte
}

// Mutation is one local write.
type Mutation struct {
	Op     Op
	Table  string
	Key    string
	Fields []FieldValue // sorted by Num, unique; ignored for OpDelete
}

// Rejected is a remote change the store refused, and why.
type Rejected struct {
	Change Change
	Err    error
}

// request is one caller's unit of work in the commit loop: either local
// mutations (all or nothing) or remote changes (each on its own).
type request struct {
	muts    []Mutation
	changes []Change
	quiet   bool // remote changes not to report to OnCommit (anti-entropy)
	reap    hlc.Timestamp
	reaped  int
	flush   bool         // persist the digest now (Close)
	replace *Replacement // a state transfer (transfer.go)

	stamps   []Stamp    // per mutation, on success
	applied  []Change   // remote changes that were new
	rejected []Rejected // remote changes refused
	local    []Change   // deltas of the local mutations
	err      error
	done     chan struct{}
}

func (r *request) size() int { return len(r.muts) + len(r.changes) + 1 }

// Apply commits local mutations in one transaction, all or none, and
// returns the stamp of each. It returns once the transaction is durable.
// A Patch or Delete of a missing row fails the whole call with a
// *NotFoundError.
func (s *Store) Apply(ctx context.Context, muts ...Mutation) ([]Stamp, error) {
	for i, m := range muts {
		if err := checkMutation(m); err != nil {
			return nil, fmt.Errorf("%w: mutation %d (%s/%s): %v", ErrInvalid, i, m.Table, m.Key, err)
		}
	}
	r := &request{muts: muts}
	if err := s.submit(ctx, r); err != nil {
		return nil, err
	}
	return r.stamps, nil
}

// checkMutation checks everything about a mutation that could make its
// transaction fail, before it joins a commit group: a group commit then
// fails only for reasons outside any one mutation (the disk).
func checkMutation(m Mutation) error {
	if err := checkName(m.Table, m.Key); err != nil {
		return err
	}
	if m.Op < OpPut || m.Op > OpDelete {
		return fmt.Errorf("unknown op %d", m.Op)
	}
	if len(m.Fields) > maxFields {
		return fmt.Errorf("%d fields (at most %d)", len(m.Fields), maxFields)
	}
	for i, f := range m.Fields {
		if f.Num == 0 || f.Num > maxFieldNum || (i > 0 && f.Num <= m.Fields[i-1].Num) {
			return fmt.Errorf("field numbers must be from 1 to %d, ascending and unique", maxFieldNum)
		}
		if len(f.Value) > maxValueBytes {
			return fmt.Errorf("field %d: value of %d bytes (at most %d)", f.Num, len(f.Value), maxValueBytes)
		}
	}
	return nil
}

// checkName checks a table name and key against the shared limits.
func checkName(table, key string) error {
	switch {
	case table == "" || key == "":
		return fmt.Errorf("empty table or key")
	case len(table) > MaxTableLen:
		return fmt.Errorf("table name of %d bytes (at most %d, store.MaxTableLen)", len(table), MaxTableLen)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("key of %d bytes (at most %d, store.MaxKeyLen)", len(key), MaxKeyLen)
	}
	return nil
}

// Merge merges changes received from peers. Each change is checked on its
// own: a change stamped too far in the future (clock drift) or malformed
// is rejected without affecting the others. It returns the changes that
// brought new state (to pass on to other peers) and the rejected ones, once
// the transaction is durable.
func (s *Store) Merge(ctx context.Context, changes []Change) (applied []Change, rejected []Rejected, err error) {
	r := &request{changes: changes}
	if err := s.submit(ctx, r); err != nil {
		return nil, nil, err
	}
	return r.applied, r.rejected, nil
}

// Repair merges rows received through anti-entropy. It is Merge, except
// that the rows it brings in are not reported to OnCommit: they repair this
// replica and are not passed on by gossip. They do enter the change feed.
func (s *Store) Repair(ctx context.Context, changes []Change) (applied []Change, rejected []Rejected, err error) {
	r := &request{changes: changes, quiet: true}
	if err := s.submit(ctx, r); err != nil {
		return nil, nil, err
	}
	return r.applied, r.rejected, nil
}

// Reap deletes the tombstones stamped before horizon for good (and the
// live rows Options.Deleted says stand for deletes), and remembers the
// horizon: from then on, a remote change for a row this
// store does not hold that is older than the horizon is rejected with
// ErrStale (it could be a deleted row coming back). The agent reaps with
// horizon = now - tombstone_ttl; a node away longer than that must rejoin
// from an empty store (full state transfer). It returns the number reaped.
func (s *Store) Reap(ctx context.Context, horizon hlc.Timestamp) (int, error) {
	r := &request{reap: horizon}
	if err := s.submit(ctx, r); err != nil {
		return 0, err
	}
	return r.reaped, nil
}

// run is the commit loop: it takes one request, then every request already
// waiting (up to MaxBatch rows), and commits them in one transaction.
func (s *Store) run() {
	defer close(s.loopDone)
	for {
		var first *request
		select {
		case first = <-s.reqs:
		case <-s.closing:
			return
		}
		batch := []*request{first}
		n := first.size()
	drain:
		for n < s.opts.MaxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				n += r.size()
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

// txState collects what a transaction changes in memory, applied to the
// Store only once the transaction commits.
type txState struct {
	leaves *[Leaves]Hash // leaf → XOR delta
	dirty  []int         // leaves with a delta (deduplicated by finish)
	counts map[string]int64
	seq    uint64
	first  uint64
	reaped hlc.Timestamp
	flush  bool // checkpoint the digest in this transaction
	saved  bool // the digest was checkpointed
	buf    []byte
}

// commit commits a batch of requests and completes them. The batch is
// tried as one transaction; if that fails, each request is retried in a
// transaction of its own, so a request that cannot commit fails alone and
// the others commit: only its writer gets the error. A failure that every
// request shares (a damaged file, a full or read-only disk) is not
// retried: each writer gets it.
func (s *Store) commit(batch []*request) {
	var local, remote []Change
	err := s.commitGroup(batch, &local, &remote)
	switch {
	case err == nil:
	case len(batch) > 1 && !errors.Is(err, ErrCorrupt) && !isDiskFull(err):
		for _, r := range batch {
			r.reset()
			if err := s.commitGroup([]*request{r}, &local, &remote); err != nil {
				r.err = s.commitError(err)
			}
		}
	default:
		// One request, or a cause every request shares (a damaged file, a
		// full or read-only disk): retrying each alone would fail the same
		// way, one transaction at a time, while writers wait.
		for _, r := range batch {
			r.err = s.commitError(err)
		}
	}
	if len(local) > 0 || len(remote) > 0 {
		s.publish(local, remote)
		if fn := s.onCommit.Load(); fn != nil {
			(*fn)(local, remote)
		}
	}
	s.lastCommit.Store(time.Now().UnixNano())
	for _, r := range batch {
		close(r.done)
	}
}

// commitError is the error a writer gets for a failed commit: ErrCorrupt
// for a damaged file, ErrUnwritable for a full or read-only disk, both
// naming the file and what to do.
func (s *Store) commitError(err error) error {
	switch {
	case errors.Is(err, ErrCorrupt):
		return err
	case isDiskFull(err):
		return fmt.Errorf("%w: %s: %v (free space on its disk, or make it writable)", ErrUnwritable, s.path, err)
	}
	return fmt.Errorf("store: commit: %w", err)
}

// reset forgets the outcome of a failed attempt, before a retry.
func (r *request) reset() {
	r.stamps, r.applied, r.rejected, r.local, r.err, r.reaped = nil, nil, nil, nil, nil, 0
}

// commitGroup runs one transaction for a group of requests. On success it
// applies the transaction's effects to the in-memory state and appends
// the committed changes to local and remote; on failure nothing changed
// and the error is returned (requests that failed on their own, such as a
// patch of a missing row, carry their error in r.err either way).
func (s *Store) commitGroup(batch []*request, local, remote *[]Change) error {
	// The leaf deltas are one array reused by every transaction (only the
	// commit loop runs them): 64 KiB allocated and zeroed per commit was
	// the largest allocation of a busy node. The leaves a transaction
	// touched, all listed in dirty, are zeroed again when it ends.
	if s.txLeaves == nil {
		s.txLeaves = new([Leaves]Hash)
	}
	s.mu.RLock()
	st := txState{leaves: s.txLeaves, counts: map[string]int64{}, seq: s.seq, first: s.firstSeq, reaped: s.reaped}
	s.mu.RUnlock()
	defer func() {
		for _, leaf := range st.dirty {
			st.leaves[leaf] = Hash{}
		}
	}()

	start := time.Now()
	err := s.update(func(tx *bolt.Tx) error {
		for _, r := range batch {
			var err error
			switch {
			case r.flush:
				st.flush = true
			case r.reap != 0:
				err = s.applyReap(tx, &st, r)
			case r.replace != nil:
				err = s.applyReplace(tx, &st, r)
			case r.muts != nil:
				err = s.applyLocal(tx, &st, r)
			default:
				err = s.applyRemote(tx, &st, r)
			}
			if err != nil {
				if _, ok := err.(*NotFoundError); ok || errors.Is(err, ErrCausalLength) {
					r.err = err // this request only, found before it wrote
					continue
				}
				return err
			}
		}
		return s.finish(tx, &st)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	for _, leaf := range st.dirty {
		s.digest.Update(leaf, Hash{}, st.leaves[leaf])
	}
	if st.saved {
		clear(s.unsaved)
		s.checkpointed = time.Now()
	} else {
		for _, leaf := range st.dirty {
			s.unsaved[leaf] = true
		}
	}
	for t, d := range st.counts {
		s.counts[t] += d
	}
	s.rowsWritten += st.seq - s.seq
	s.seq, s.firstSeq, s.reaped = st.seq, st.first, st.reaped
	s.commits++
	s.commitTime += time.Since(start)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	for _, r := range batch {
		if r.err == nil {
			*local = append(*local, r.local...)
			if !r.quiet {
				*remote = append(*remote, r.applied...)
			}
		}
	}
	return nil
}

// rowKey names a row within a transaction.
type rowKey struct{ table, key string }

// applyLocal plans every mutation of r against the current rows, and writes
// them only if all preconditions hold.
func (s *Store) applyLocal(tx *bolt.Tx, st *txState, r *request) error {
	overlay := make(map[rowKey]Row, len(r.muts))
	type original struct {
		row Row
		enc []byte
	}
	orig := make(map[rowKey]original, len(r.muts))
	order := make([]rowKey, 0, len(r.muts))
	stamps := make([]Stamp, len(r.muts))
	deltas := make([]Change, 0, len(r.muts))
	for i, m := range r.muts {
		k := rowKey{m.Table, m.Key}
		cur, seen := overlay[k]
		if !seen {
			var enc []byte
			var err error
			if cur, enc, err = readRow(tx, m.Table, m.Key); err != nil {
				return err
			}
			orig[k] = original{cur, enc}
			order = append(order, k)
		}
		now := Stamp{HLC: s.clock.Now(), Node: s.node}
		stamps[i] = now
		var delta Row
		switch m.Op {
		case OpPut, OpPatch:
			if !cur.Alive() {
				if m.Op == OpPatch {
					return &NotFoundError{Table: m.Table, Key: m.Key}
				}
				cl, err := nextCL(m.Table, m.Key, cur.CL)
				if err != nil {
					return err
				}
				delta = Row{CL: cl, Stamp: now}
			} else {
				delta = Row{CL: cur.CL, Stamp: cur.Stamp}
			}
			delta.Fields = make([]Field, len(m.Fields))
			for j, f := range m.Fields {
				delta.Fields[j] = Field{Num: f.Num, Stamp: now, Value: f.Value}
			}
		case OpDelete:
			if !cur.Alive() {
				return &NotFoundError{Table: m.Table, Key: m.Key}
			}
			cl, err := nextCL(m.Table, m.Key, cur.CL)
			if err != nil {
				return err
			}
			delta = Row{CL: cl, Stamp: now}
		}
		overlay[k] = Merge(cur, delta)
		deltas = append(deltas, Change{Table: m.Table, Key: m.Key, Row: delta})
	}
	for _, k := range order {
		if err := s.writeRow(tx, st, k.table, k.key, orig[k].row, orig[k].enc, overlay[k]); err != nil {
			return err
		}
	}
	r.stamps = stamps
	r.local = deltas
	return nil
}

// applyRemote merges each change of r that passes the drift guard.
func (s *Store) applyRemote(tx *bolt.Tx, st *txState, r *request) error {
	for _, c := range r.changes {
		if err := checkName(c.Table, c.Key); err != nil {
			r.rejected = append(r.rejected, Rejected{c, fmt.Errorf("%w: %v", ErrInvalid, err)})
			continue
		}
		if err := validRow(c.Row); err != nil {
			r.rejected = append(r.rejected, Rejected{c, err})
			continue
		}
		if err := s.clock.Check(c.Row.Latest().HLC); err != nil {
			r.rejected = append(r.rejected, Rejected{c, err})
			continue
		}
		cur, curEnc, err := readRow(tx, c.Table, c.Key)
		if err != nil {
			return err
		}
		// A change older than the horizon that is new to this store is
		// stale: every replica saw it long ago (tombstone_ttl is the
		// bound), so it belongs to a row whose tombstone this store
		// reaped: a deleted row coming back, or, for a row written anew
		// since, whose causal length started again from 1, an old life's
		// delete that would end the new life.
		merged := Merge(cur, c.Row)
		if st.reaped != 0 && c.Row.Latest().HLC < st.reaped && !merged.Equal(cur) {
			r.rejected = append(r.rejected, Rejected{c, fmt.Errorf("%w: %s/%s stamped %s, horizon %s", ErrStale, c.Table, c.Key, c.Row.Latest().HLC, st.reaped)})
			continue
		}
		if merged.Equal(cur) {
			continue // nothing new
		}
		if err := s.clock.Update(c.Row.Latest().HLC); err != nil {
			r.rejected = append(r.rejected, Rejected{c, err})
			continue
		}
		if err := s.writeRow(tx, st, c.Table, c.Key, cur, curEnc, merged); err != nil {
			return err
		}
		r.applied = append(r.applied, c)
	}
	return nil
}

// applyReap deletes tombstones older than r.reap and moves the horizon.
func (s *Store) applyReap(tx *bolt.Tx, st *txState, r *request) error {
	rows := tx.Bucket(bucketRows)
	type victim struct {
		table, key string
		enc        []byte
		live       bool // counted as a live row (Options.Deleted)
	}
	var victims []victim
	err := rows.ForEachBucket(func(table []byte) error {
		return rows.Bucket(table).ForEach(func(k, v []byte) error {
			row, err := DecodeRow(v)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", table, k, err)
			}
			if row.Stamp.HLC >= r.reap {
				return nil
			}
			if !row.Alive() {
				victims = append(victims, victim{string(table), string(k), bytes.Clone(v), false})
			} else if s.opts.Deleted != nil && s.opts.Deleted(string(table), row) {
				victims = append(victims, victim{string(table), string(k), bytes.Clone(v), true})
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, v := range victims {
		if err := rows.Bucket([]byte(v.table)).Delete([]byte(v.key)); err != nil {
			return err
		}
		leaf := LeafOf(v.table, v.key)
		if st.leaves[leaf].IsZero() {
			st.dirty = append(st.dirty, leaf)
		}
		st.leaves[leaf].xor(RowHash(v.table, v.key, v.enc))
		if v.live {
			st.counts[v.table]--
		}
	}
	if r.reap > st.reaped {
		st.reaped = r.reap
	}
	r.reaped = len(victims)
	// Reaping changes the digest without moving the feed position, so the
	// checkpoint's "digest reflects seq" test could not see it: save now.
	st.flush = st.flush || len(victims) > 0
	return tx.Bucket(bucketMeta).Put(metaReaped, binary.BigEndian.AppendUint64(nil, uint64(st.reaped)))
}

// validRow checks the invariants Merge relies on, for rows from outside.
func validRow(r Row) error {
	if r.CL == 0 {
		return fmt.Errorf("%w: causal length 0", ErrInvalid)
	}
	if r.CL > MaxCausalLength {
		return fmt.Errorf("%w: causal length %d over the limit %d", ErrInvalid, r.CL, uint64(MaxCausalLength))
	}
	if !r.Alive() && len(r.Fields) > 0 {
		return fmt.Errorf("%w: deleted row with fields", ErrInvalid)
	}
	if len(r.Fields) > maxFields {
		return fmt.Errorf("%w: %d fields (at most %d)", ErrInvalid, len(r.Fields), maxFields)
	}
	for i, f := range r.Fields {
		if f.Num == 0 || f.Num > maxFieldNum || (i > 0 && f.Num <= r.Fields[i-1].Num) {
			return fmt.Errorf("%w: field numbers not ascending", ErrInvalid)
		}
		if len(f.Value) > maxValueBytes {
			return fmt.Errorf("%w: field %d: value of %d bytes (at most %d)", ErrInvalid, f.Num, len(f.Value), maxValueBytes)
		}
	}
	return nil
}

// readRow reads a row inside a write transaction, with its encoding; a
// missing row is the zero Row and a nil encoding. Neither aliases bbolt
// memory.
func readRow(tx *bolt.Tx, table, key string) (Row, []byte, error) {
	b := tableBucket(tx, table)
	if b == nil {
		return Row{}, nil, nil
	}
	v := b.Get([]byte(key))
	if v == nil {
		return Row{}, nil, nil
	}
	enc := bytes.Clone(v)
	r, err := DecodeRow(enc)
	if err != nil {
		return Row{}, nil, fmt.Errorf("%s/%s: %w", table, key, err)
	}
	return r, enc, nil
}

// writeRow stores a row's new state over its previous one (prev, encoded
// as prevEnc, nil if none) and records its digest, count and feed effects
// in st.
func (s *Store) writeRow(tx *bolt.Tx, st *txState, table, key string, prev Row, prevEnc []byte, row Row) error {
	b, err := tx.Bucket(bucketRows).CreateBucketIfNotExists([]byte(table))
	if err != nil {
		return err
	}
	oldHash := RowHash(table, key, prevEnc)
	wasAlive := prev.Alive()
	enc := AppendRow(nil, row)
	newHash := RowHash(table, key, enc)
	if err := b.Put([]byte(key), enc); err != nil {
		return err
	}
	leaf := LeafOf(table, key)
	if st.leaves[leaf].IsZero() {
		st.dirty = append(st.dirty, leaf)
	}
	st.leaves[leaf].xor(oldHash)
	st.leaves[leaf].xor(newHash)
	switch {
	case row.Alive() && !wasAlive:
		st.counts[table]++
	case !row.Alive() && wasAlive:
		st.counts[table]--
	}
	st.seq++
	st.buf = appendEvent(st.buf[:0], table, key, enc)
	return tx.Bucket(bucketFeed).Put(seqKey(st.seq), bytes.Clone(st.buf))
}

// finish persists the digest leaves, counters and feed position, and trims
// the feed to its retention.
func (s *Store) finish(tx *bolt.Tx, st *txState) error {
	slices.Sort(st.dirty)
	st.dirty = slices.Compact(st.dirty) // a delta can cancel out and be re-added
	s.mu.RLock()
	if st.flush || time.Since(s.checkpointed) >= digestCheckpoint {
		if err := s.saveDigest(tx, st); err != nil {
			s.mu.RUnlock()
			return err
		}
	}
	counts := make(map[string]int64, len(st.counts))
	for t, d := range st.counts {
		counts[t] = s.counts[t] + d
	}
	s.mu.RUnlock()
	meta := tx.Bucket(bucketMeta)
	for t, n := range counts {
		if err := meta.Put(append(bytes.Clone(metaCount), t...), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
			return err
		}
	}
	if err := meta.Put(metaSeq, seqKey(st.seq)); err != nil {
		return err
	}
	// Trim the feed to the newest FeedRetention events.
	keepFrom := uint64(1)
	if st.seq > uint64(s.opts.FeedRetention) {
		keepFrom = st.seq - uint64(s.opts.FeedRetention) + 1
	}
	if st.first < keepFrom {
		feed := tx.Bucket(bucketFeed)
		for seq := st.first; seq < keepFrom; seq++ {
			if err := feed.Delete(seqKey(seq)); err != nil {
				return err
			}
		}
		st.first = keepFrom
	}
	return nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// digestCheckpoint is how often the digest's changed leaves are written
// to disk. Writing them on every commit dirtied a page per touched leaf and
// made small commits about a third more expensive; between checkpoints the
// digest lives in memory, and a store that did not close cleanly rebuilds
// it from its rows at open.
const digestCheckpoint = time.Second

// saveDigest writes every leaf changed since the last checkpoint, with its
// value once this transaction commits, and the feed position the digest
// reflects. Caller holds s.mu for reading.
func (s *Store) saveDigest(tx *bolt.Tx, st *txState) error {
	digest := tx.Bucket(bucketDigest)
	leaves := slices.Clone(st.dirty)
	for leaf := range s.unsaved {
		leaves = append(leaves, leaf)
	}
	slices.Sort(leaves)
	for _, leaf := range slices.Compact(leaves) {
		h := s.digest.Leaf(leaf)
		h.xor(st.leaves[leaf])
		var k [2]byte
		binary.BigEndian.PutUint16(k[:], uint16(leaf))
		var err error
		if h.IsZero() {
			err = digest.Delete(k[:])
		} else {
			err = digest.Put(k[:], bytes.Clone(h[:]))
		}
		if err != nil {
			return err
		}
	}
	st.saved = true
	return tx.Bucket(bucketMeta).Put(metaDigestSeq, seqKey(st.seq))
}
