package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-state/strata/agent/hlc"
)

// openTest opens a store in a temporary directory and closes it at cleanup.
func openTest(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "regional.db")
	}
	if opts.Clock == nil {
		opts.Clock = hlc.NewClock(nil, time.Minute)
	}
	if opts.Node == "" {
		opts.Node = "test-1"
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(key string, fields ...string) Mutation {
	m := Mutation{Op: OpPut, Table: "machines", Key: key}
	for i, f := range fields {
		m.Fields = append(m.Fields, FieldValue{Num: uint32(i + 1), Value: []byte(f)})
	}
	return m
}

func mustApply(t testing.TB, s *Store, muts ...Mutation) []Stamp {
	t.Helper()
	st, err := s.Apply(context.Background(), muts...)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return st
}

func fieldValue(t testing.TB, r Row, num uint32) string {
	t.Helper()
	f, ok := r.Field(num)
	if !ok {
		t.Fatalf("row has no field %d: %+v", num, r)
	}
	return string(f.Value)
}

func TestPutGetPatchDelete(t *testing.T) {
	s := openTest(t, "", Options{})
	ctx := context.Background()
	st := mustApply(t, s, put("m1", "a", "b"))
	r, err := s.Get("machines", "m1")
	if err != nil {
		t.Fatal(err)
	}
	if r.CL != 1 || fieldValue(t, r, 1) != "a" || fieldValue(t, r, 2) != "b" {
		t.Fatalf("after put: %+v", r)
	}
	if r.Latest() != st[0] {
		t.Fatalf("row stamp %v, put returned %v", r.Latest(), st[0])
	}
	mustApply(t, s, Mutation{Op: OpPatch, Table: "machines", Key: "m1", Fields: []FieldValue{{Num: 2, Value: []byte("c")}}})
	r, _ = s.Get("machines", "m1")
	if fieldValue(t, r, 1) != "a" || fieldValue(t, r, 2) != "c" {
		t.Fatalf("after patch: %+v", r)
	}
	mustApply(t, s, Mutation{Op: OpDelete, Table: "machines", Key: "m1"})
	if _, err := s.Get("machines", "m1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := s.Apply(ctx, Mutation{Op: OpDelete, Table: "machines", Key: "m1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.Apply(ctx, Mutation{Op: OpPatch, Table: "machines", Key: "m1", Fields: []FieldValue{{Num: 1}}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("patch of deleted row: %v", err)
	}
	mustApply(t, s, put("m1", "z"))
	r, _ = s.Get("machines", "m1")
	if r.CL != 3 || len(r.Fields) != 1 || fieldValue(t, r, 1) != "z" {
		t.Fatalf("after re-insert: %+v", r)
	}
	if got := s.Stats().Rows["machines"]; got != 1 {
		t.Fatalf("row count %d, want 1", got)
	}
}

func TestApplyIsAllOrNothing(t *testing.T) {
	s := openTest(t, "", Options{})
	mustApply(t, s, put("a", "1"))
	_, err := s.Apply(context.Background(), put("b", "2"), Mutation{Op: OpPatch, Table: "machines", Key: "missing", Fields: []FieldValue{{Num: 1}}})
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.Key != "missing" {
		t.Fatalf("err = %v, want not found naming the key", err)
	}
	if _, err := s.Get("machines", "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("b was written by a failed batch: %v", err)
	}
	rows, _, _ := s.List("machines", "", 0)
	if len(rows) != 1 {
		t.Fatalf("rows = %d, want 1", len(rows))
	}
}

func TestInvalidMutations(t *testing.T) {
	s := openTest(t, "", Options{})
	tests := []struct {
		name string
		m    Mutation
	}{
		{"empty key", Mutation{Op: OpPut, Table: "machines"}},
		{"empty table", Mutation{Op: OpPut, Key: "k"}},
		{"unknown op", Mutation{Op: 9, Table: "t", Key: "k"}},
		{"fields out of order", Mutation{Op: OpPut, Table: "t", Key: "k", Fields: []FieldValue{{Num: 2}, {Num: 1}}}},
		{"field zero", Mutation{Op: OpPut, Table: "t", Key: "k", Fields: []FieldValue{{Num: 0}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Apply(context.Background(), tc.m); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestListPages(t *testing.T) {
	s := openTest(t, "", Options{})
	var muts []Mutation
	for i := 0; i < 25; i++ {
		muts = append(muts, put(fmt.Sprintf("m%02d", i), "x"))
	}
	mustApply(t, s, muts...)
	mustApply(t, s, Mutation{Op: OpDelete, Table: "machines", Key: "m03"})
	var keys []string
	after := ""
	for {
		page, _, err := s.List("machines", after, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, kr := range page {
			keys = append(keys, kr.Key)
		}
		after = page[len(page)-1].Key
	}
	if len(keys) != 24 || keys[0] != "m00" || keys[3] != "m04" {
		t.Fatalf("listed %v", keys)
	}
}

// TestRestartKeepsAcknowledgedWrites writes from many goroutines, closes
// the store, reopens the file and checks every acknowledged row is there
// with the digest and counters it had.
func TestRestartKeepsAcknowledgedWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regional.db")
	s, err := Open(path, Options{Node: "n1", Clock: hlc.NewClock(nil, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]string{}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				key, val := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("v%d", i)
				if _, err := s.Apply(context.Background(), put(key, val)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[key] = val
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, path, Options{Node: "n1"})
	after := s2.Stats()
	if after.Root != before.Root || after.Seq != before.Seq || after.Rows["machines"] != int64(len(acked)) {
		t.Fatalf("after restart: %+v\nbefore: %+v (acked %d)", after, before, len(acked))
	}
	for k, v := range acked {
		r, err := s2.Get("machines", k)
		if err != nil {
			t.Fatalf("acknowledged row %s lost: %v", k, err)
		}
		if got := fieldValue(t, r, 1); got != v {
			t.Fatalf("%s = %q, want %q", k, got, v)
		}
	}
	// Stamps after restart order after every stored stamp only if the clock
	// is ahead; the digest must also match a recomputation from the rows.
	var d Digest
	rows, _, _ := s2.List("machines", "", 0)
	for _, kr := range rows {
		d.Update(LeafOf("machines", kr.Key), Hash{}, RowHash("machines", kr.Key, AppendRow(nil, kr.Row)))
	}
	if d.Root() != after.Root {
		t.Fatal("persisted digest differs from one recomputed from the rows")
	}
}

func TestLockedAndCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "regional.db")
	openTest(t, path, Options{})
	if _, err := Open(path, Options{Clock: hlc.NewClock(nil, 0)}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	bad := filepath.Join(dir, "bad.db")
	junk := make([]byte, 64<<10)
	for i := range junk {
		junk[i] = byte(i * 7)
	}
	if err := os.WriteFile(bad, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(bad, Options{Clock: hlc.NewClock(nil, 0)})
	if err == nil {
		t.Fatal("opened a corrupt file")
	}
	if want := "bad.db"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name the file", err)
	}
	if b, _ := os.ReadFile(bad); string(b) != string(junk) {
		t.Fatal("open of a corrupt file changed it")
	}
}

// TestReplicasConverge applies random writes on three stores, exchanges the
// committed changes between them in shuffled order, and checks the digests
// and rows are identical.
func TestReplicasConverge(t *testing.T) {
	ctx := context.Background()
	type captured struct {
		mu      sync.Mutex
		changes []Change
	}
	var caps [3]captured
	var stores [3]*Store
	for i := range stores {
		c := &caps[i]
		stores[i] = openTest(t, "", Options{Node: fmt.Sprintf("n%d", i), NoSync: true, OnCommit: func(local, _ []Change) {
			c.mu.Lock()
			c.changes = append(c.changes, local...)
			c.mu.Unlock()
		}})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := 0; step < 300; step++ {
		s := stores[rng.IntN(3)]
		key := fmt.Sprintf("k%d", rng.IntN(20))
		var m Mutation
		switch rng.IntN(4) {
		case 0, 1:
			m = put(key, fmt.Sprint(rng.IntN(5)), fmt.Sprint(rng.IntN(5)))
		case 2:
			m = Mutation{Op: OpPatch, Table: "machines", Key: key, Fields: []FieldValue{{Num: 2, Value: []byte(fmt.Sprint(step))}}}
		case 3:
			m = Mutation{Op: OpDelete, Table: "machines", Key: key}
		}
		if _, err := s.Apply(ctx, m); err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	var all []Change
	for i := range caps {
		all = append(all, caps[i].changes...)
	}
	for _, s := range stores {
		shuffled := append([]Change(nil), all...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for len(shuffled) > 0 {
			n := min(len(shuffled), 1+rng.IntN(40))
			if _, rej, err := s.Merge(ctx, shuffled[:n]); err != nil || len(rej) > 0 {
				t.Fatalf("merge: %v %v", err, rej)
			}
			shuffled = shuffled[n:]
		}
	}
	root := stores[0].Stats().Root
	rows0, _, _ := stores[0].List("machines", "", 0)
	for i, s := range stores[1:] {
		if got := s.Stats().Root; got != root {
			t.Fatalf("store %d digest %x differs from store 0 %x", i+1, got, root)
		}
		rows, _, _ := s.List("machines", "", 0)
		if len(rows) != len(rows0) {
			t.Fatalf("store %d has %d rows, store 0 %d", i+1, len(rows), len(rows0))
		}
		for j := range rows {
			if rows[j].Key != rows0[j].Key || !rows[j].Row.Equal(rows0[j].Row) {
				t.Fatalf("store %d row %s differs", i+1, rows[j].Key)
			}
		}
	}
	// Merging everything again changes nothing.
	applied, _, _ := stores[0].Merge(ctx, all)
	if len(applied) != 0 {
		t.Fatalf("re-merge applied %d changes", len(applied))
	}
}

func TestMergeRejectsDriftAndMalformed(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	s := openTest(t, "", Options{Clock: hlc.NewClock(func() time.Time { return now }, time.Minute)})
	future := Stamp{HLC: hlc.New(now.Add(2*time.Minute).UnixMilli(), 0), Node: 7}
	ok := Stamp{HLC: hlc.New(now.UnixMilli(), 0), Node: 7}
	changes := []Change{
		{Table: "machines", Key: "f", Row: Row{CL: 1, Stamp: future}},
		{Table: "machines", Key: "bad", Row: Row{CL: 2, Stamp: ok, Fields: []Field{{Num: 1, Stamp: ok}}}},
		{Table: "machines", Key: "good", Row: Row{CL: 1, Stamp: ok, Fields: []Field{{Num: 1, Stamp: ok, Value: []byte("v")}}}},
	}
	applied, rejected, err := s.Merge(context.Background(), changes)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0].Key != "good" || len(rejected) != 2 {
		t.Fatalf("applied %v rejected %v", applied, rejected)
	}
	if !errors.Is(rejected[0].Err, hlc.ErrDrift) || !errors.Is(rejected[1].Err, ErrInvalid) {
		t.Fatalf("rejections: %v, %v", rejected[0].Err, rejected[1].Err)
	}
	if _, err := s.GetAny("machines", "f"); !errors.Is(err, ErrNotFound) {
		t.Fatal("drifted change was stored")
	}
}

func TestFeed(t *testing.T) {
	s := openTest(t, "", Options{FeedRetention: 10})
	ch := s.Changed()
	mustApply(t, s, put("a", "1"))
	select {
	case <-ch:
	default:
		t.Fatal("Changed channel not closed by a commit")
	}
	evs, pos, err := s.FeedSince(0, "", 0)
	if err != nil || len(evs) != 1 || evs[0].Seq != 1 || evs[0].Key != "a" || pos != 1 {
		t.Fatalf("feed: %+v pos %d err %v", evs, pos, err)
	}
	mustApply(t, s, Mutation{Op: OpPut, Table: "other", Key: "x"})
	for i := 0; i < 20; i++ {
		mustApply(t, s, put(fmt.Sprintf("k%d", i), "v"))
	}
	st := s.Stats()
	if st.Seq != 22 || st.FirstSeq != 13 {
		t.Fatalf("seq %d first %d, want 22 and 13", st.Seq, st.FirstSeq)
	}
	if _, _, err := s.FeedSince(5, "", 0); !errors.Is(err, ErrFeedTrimmed) {
		t.Fatalf("read of trimmed position: %v", err)
	}
	evs, pos, err = s.FeedSince(12, "machines", 3)
	if err != nil || len(evs) != 3 || evs[0].Seq != 13 || pos != 15 {
		t.Fatalf("feed after 12: %+v pos %d err %v", evs, pos, err)
	}
	if evs, _, _ := s.FeedSince(22, "", 0); len(evs) != 0 {
		t.Fatalf("feed past the end: %+v", evs)
	}
}

func TestLeafKeysAndRows(t *testing.T) {
	s := openTest(t, "", Options{})
	mustApply(t, s, put("a", "1"), put("b", "2"))
	mustApply(t, s, Mutation{Op: OpDelete, Table: "machines", Key: "b"})
	leaves := []int{LeafOf("machines", "a"), LeafOf("machines", "b")}
	kh, err := s.LeafKeys(leaves)
	if err != nil {
		t.Fatal(err)
	}
	if len(kh) != 2 {
		t.Fatalf("leaf keys %+v, want a and the tombstone of b", kh)
	}
	for _, k := range kh {
		r, err := s.GetAny(k.Table, k.Key)
		if err != nil {
			t.Fatal(err)
		}
		if want := RowHash(k.Table, k.Key, AppendRow(nil, r)); k.Hash != want {
			t.Fatalf("%s: index hash %x, row hash %x", k.Key, k.Hash, want)
		}
	}
	rows, err := s.Rows(append(kh, KeyHash{Table: "machines", Key: "missing"}))
	if err != nil || len(rows) != 2 {
		t.Fatalf("rows %+v err %v", rows, err)
	}
}

// TestReapTombstones deletes old tombstones for good, keeps live rows and
// recent tombstones, keeps the digest consistent, and refuses remote
// changes older than the horizon for rows it no longer holds.
func TestReapTombstones(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	clock := hlc.NewClock(func() time.Time { return now }, time.Minute)
	s := openTest(t, "", Options{Clock: clock})
	ctx := context.Background()
	mustApply(t, s, put("old", "1"), put("live", "2"))
	oldPut, _ := s.Get("machines", "old")
	mustApply(t, s, Mutation{Op: OpDelete, Table: "machines", Key: "old"})
	now = now.Add(time.Hour)
	mustApply(t, s, put("recent", "3"))
	mustApply(t, s, Mutation{Op: OpDelete, Table: "machines", Key: "recent"})

	n, err := s.Reap(ctx, hlc.New(now.Add(-time.Minute).UnixMilli(), 0))
	if err != nil || n != 1 {
		t.Fatalf("reaped %d, %v; want 1", n, err)
	}
	if _, err := s.GetAny("machines", "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old tombstone still there: %v", err)
	}
	if _, err := s.GetAny("machines", "recent"); err != nil {
		t.Fatalf("recent tombstone reaped: %v", err)
	}
	if _, err := s.Get("machines", "live"); err != nil {
		t.Fatalf("live row reaped: %v", err)
	}
	var d Digest
	for _, k := range []string{"live", "recent"} {
		r, _ := s.GetAny("machines", k)
		d.Update(LeafOf("machines", k), Hash{}, RowHash("machines", k, AppendRow(nil, r)))
	}
	if d.Root() != s.Stats().Root {
		t.Fatal("digest after reaping differs from one recomputed from the rows")
	}
	// The deleted row's old state, from a peer that missed the delete,
	// must not come back.
	_, rejected, err := s.Merge(ctx, []Change{{Table: "machines", Key: "old", Row: oldPut}})
	if err != nil || len(rejected) != 1 || !errors.Is(rejected[0].Err, ErrStale) {
		t.Fatalf("old state of a reaped row: rejected %v, err %v", rejected, err)
	}
	// The horizon, and the digest without the reaped rows, survive a
	// restart.
	path := s.Path()
	root := s.Stats().Root
	s.Close()
	s2 := openTest(t, path, Options{Clock: clock})
	if s2.Stats().Root != root {
		t.Fatal("digest after reopening differs from the one after reaping")
	}
	if _, rejected, _ := s2.Merge(ctx, []Change{{Table: "machines", Key: "old", Row: oldPut}}); len(rejected) != 1 {
		t.Fatal("horizon lost across a restart")
	}
	if err := s2.MarkSynced(now); err != nil || !s2.LastSynced().Equal(now) {
		t.Fatalf("last synced %v, %v", s2.LastSynced(), err)
	}
	s2.Close()
	if s3 := openTest(t, path, Options{Clock: clock}); !s3.LastSynced().Equal(now) {
		t.Fatalf("last synced after reopening: %v, want %v", s3.LastSynced(), now)
	}
}

// TestDigestRebuiltAfterUncleanStop simulates a stop between digest
// checkpoints (the persisted digest behind the rows): the next open
// rebuilds the digest from the rows.
func TestDigestRebuiltAfterUncleanStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regional.db")
	s := openTest(t, path, Options{})
	for i := 0; i < 50; i++ {
		mustApply(t, s, put(fmt.Sprintf("k%d", i), "v"))
	}
	want := s.Stats().Root
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketMeta).Put(metaDigestSeq, seqKey(3))
		return tx.Bucket(bucketDigest).Put([]byte{0, 1}, bytes.Repeat([]byte{7}, 16))
	})
	db.Close()
	s2 := openTest(t, path, Options{})
	if got := s2.Stats().Root; got != want {
		t.Fatalf("digest after rebuild %x, want %x", got, want)
	}
}

func TestListPrefix(t *testing.T) {
	s := openTest(t, "", Options{})
	mustApply(t, s, put("ams/web", "1"), put("ord/api", "2"), put("ord/web", "3"), put("ord-2/web", "4"), put("orz/x", "5"))
	mustApply(t, s, Mutation{Op: OpDelete, Table: "machines", Key: "ord/api"})
	rows, err := s.ListPrefix("machines", "ord/")
	if err != nil || len(rows) != 1 || rows[0].Key != "ord/web" {
		t.Fatalf("ListPrefix(ord/) = %+v, %v", rows, err)
	}
}

// RowsAfter pages through every row of every table, tombstones included,
// in table and key order, whatever the page size: each row once.
func TestRowsAfterPagesThroughEveryRow(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "regional.db"), Options{})
	var muts []Mutation
	var want []string
	for _, table := range []string{"apps", "machines", "volumes"} {
		for i := range 7 {
			key := fmt.Sprintf("k-%02d", i)
			muts = append(muts, Mutation{Op: OpPut, Table: table, Key: key, Fields: []FieldValue{{Num: 1, Value: []byte("v")}}})
			want = append(want, table+"/"+key)
		}
	}
	mustApply(t, s, muts...)
	mustApply(t, s, Mutation{Op: OpDelete, Table: "machines", Key: "k-03"}) // a tombstone is still a row to ship
	for _, limit := range []int{1, 2, 3, 7, 21, 100} {
		var got []string
		var pos RowPos
		for pages := 0; ; pages++ {
			if pages > len(want)+1 {
				t.Fatalf("limit %d: no end after %d pages", limit, pages)
			}
			rows, next, err := s.RowsAfter(pos, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) > limit {
				t.Fatalf("limit %d: a page of %d rows", limit, len(rows))
			}
			for _, r := range rows {
				got = append(got, r.Table+"/"+r.Key)
				if r.Table == "machines" && r.Key == "k-03" && r.Row.Alive() {
					t.Errorf("machines/k-03 is shipped alive; it was deleted")
				}
			}
			pos = next
			if len(rows) < limit {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: rows\n%v\nwant\n%v", limit, got, want)
		}
	}
}

// A loop that keeps committing is busy, not stalled: CommitStall counts
// from the last completed commit when that is later than the oldest
// waiting write, and from that write otherwise.
func TestCommitStallCountsFromTheLastCommit(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "regional.db"), Options{})
	if d := s.CommitStall(); d != 0 {
		t.Fatalf("no write waiting: stall %s", d)
	}
	id := s.waiting.add(time.Now().Add(-time.Hour)) // a write queued an hour ago
	defer s.waiting.remove(id)
	mustApply(t, s, put("m-1", "x")) // the loop completes a commit now
	if d := s.CommitStall(); d > time.Minute {
		t.Fatalf("stall %s right after a commit, while a write queued an hour ago waits", d)
	}
	s.lastCommit.Store(time.Now().Add(-2 * time.Hour).UnixNano()) // no commit since before the write came
	if d := s.CommitStall(); d < 59*time.Minute {
		t.Fatalf("stall %s: a write has waited an hour with no commit since", d)
	}
}

// TestReapedLifeCannotEndANewOne: a row is deleted, its tombstone reaped,
// and the row written anew, so its causal length starts again at 1. The
// old delete (causal length 2), arriving late from a peer (a gossip
// retransmission, a cached push), belongs to the reaped life: it must be
// refused as stale, not end the new life by its higher causal length.
// Found by the convergence checker (agent/cluster TestConvergence, an
// away-stopped phase, seed 7).
func TestReapedLifeCannotEndANewOne(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	clock := hlc.NewClock(func() time.Time { return now }, time.Minute)
	s := openTest(t, "", Options{Clock: clock})
	ctx := context.Background()
	mustApply(t, s, put("k", "1"))
	mustApply(t, s, Mutation{Op: OpDelete, Table: "machines", Key: "k"})
	oldDelete, err := s.GetAny("machines", "k")
	if err != nil || oldDelete.CL != 2 {
		t.Fatalf("tombstone %+v, %v", oldDelete, err)
	}
	now = now.Add(time.Hour)
	if n, err := s.Reap(ctx, hlc.New(now.Add(-time.Minute).UnixMilli(), 0)); err != nil || n != 1 {
		t.Fatalf("reaped %d, %v; want 1", n, err)
	}
	mustApply(t, s, put("k", "2"))
	reborn, _ := s.GetAny("machines", "k")
	if reborn.CL != 1 {
		t.Fatalf("row written after its tombstone was reaped has causal length %d, want 1", reborn.CL)
	}
	_, rejected, err := s.Merge(ctx, []Change{{Table: "machines", Key: "k", Row: oldDelete}})
	if err != nil || len(rejected) != 1 || !errors.Is(rejected[0].Err, ErrStale) {
		t.Fatalf("the reaped life's delete: rejected %v, err %v; want it refused as stale", rejected, err)
	}
	if got, _ := s.GetAny("machines", "k"); !got.Equal(reborn) {
		t.Fatalf("row after the late delete: %+v, want %+v", got, reborn)
	}
	// Later reaps move the horizon past the new life's start: the old
	// delete is still refused.
	now = now.Add(time.Hour)
	if _, err := s.Reap(ctx, hlc.New(now.Add(-time.Minute).UnixMilli(), 0)); err != nil {
		t.Fatal(err)
	}
	if _, rejected, err := s.Merge(ctx, []Change{{Table: "machines", Key: "k", Row: oldDelete}}); err != nil || len(rejected) != 1 {
		t.Fatalf("the reaped life's delete, after the horizon passed the new life's start: rejected %v, err %v; want it refused", rejected, err)
	}
	if got, _ := s.GetAny("machines", "k"); !got.Equal(reborn) {
		t.Fatalf("row after the late delete: %+v, want %+v", got, reborn)
	}
	// A change older than the horizon that the store already holds is
	// no news, not a refusal.
	if _, rejected, err := s.Merge(ctx, []Change{{Table: "machines", Key: "k", Row: reborn}}); err != nil || len(rejected) != 0 {
		t.Fatalf("a change the store holds, older than the horizon: rejected %v, err %v", rejected, err)
	}
}

// TestSyncedAtIsOnTheStampsClock: a store whose clock runs ahead of the
// wall clock (its peers' clocks are ahead, within max_clock_drift) writes,
// then completes an exchange. The write was there at the exchange: its
// stamp must be before SyncedAt. LastSynced, on the wall clock, cannot
// say so, and a state transfer that used it took the write for one made
// after the exchange (and kept a row its peers had deleted and reaped;
// the convergence checker, seed 2000, whose clocks run minutes ahead).
func TestSyncedAtIsOnTheStampsClock(t *testing.T) {
	ahead := func() time.Time { return time.Now().Add(30 * time.Second) }
	s := openTest(t, "", Options{Clock: hlc.NewClock(ahead, time.Minute)})
	stamps := mustApply(t, s, put("k", "v"))
	if err := s.MarkSynced(time.Now()); err != nil {
		t.Fatal(err)
	}
	if at := s.SyncedAt(); at <= stamps[0].HLC {
		t.Fatalf("SyncedAt %v is not after the write %v made before the exchange", at, stamps[0].HLC)
	}
	if wall := hlc.New(s.LastSynced().UnixMilli(), 1<<16-1); wall > stamps[0].HLC {
		t.Fatalf("the wall clock bound %v is after the write %v: the test no longer shows the difference", wall, stamps[0].HLC)
	}
}
