package cluster

// One fuzz target per message a peer can send (fuzz_test.go's
// FuzzDecodeMessage takes any type; these keep the fuzzer on one), each
// checking more than survival: what decodes re-encodes to the same bytes'
// meaning, decoding allocates within a bound of the input's size, and the
// rows of changes and sync-rows messages, merged into a real store,
// leave the rows of refused changes as they were and merge idempotently.

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// Decoding n bytes allocates at most decodeAllocBase + decodeAllocPerByte·n
// bytes: a message cannot make a node allocate much more than its size.
const (
	decodeAllocBase    = 64 << 10
	decodeAllocPerByte = 64
)

// decodeBounded decodes msg and fails the test if that allocated more
// than the bound.
func decodeBounded(t *testing.T, msg []byte) (any, error) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := decodeMessage(msg)
	runtime.ReadMemStats(&after)
	if alloc, limit := after.TotalAlloc-before.TotalAlloc, uint64(decodeAllocBase+decodeAllocPerByte*len(msg)); alloc > limit {
		t.Fatalf("decoding %d bytes allocated %d, over the bound of %d", len(msg), alloc, limit)
	}
	return m, err
}

// roundTrip checks that a decoded message encodes to bytes that decode to
// the same encoding.
func roundTrip(t *testing.T, m any) {
	t.Helper()
	enc := encodeMessage(m)
	again, err := decodeMessage(enc)
	if err != nil {
		t.Fatalf("re-encoded %T does not decode: %v", m, err)
	}
	if string(encodeMessage(again)) != string(enc) {
		t.Fatalf("%T: decode/encode is not stable", m)
	}
}

func fuzzMessage(f *testing.F, typ msgType, seeds []any, check func(t *testing.T, m any)) {
	for _, s := range seeds {
		f.Add(encodeMessage(s)[1:])
	}
	f.Add([]byte{})
	f.Add([]byte{2, 'n', '1', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeBounded(t, append([]byte{byte(typ)}, body...))
		if err != nil {
			return
		}
		roundTrip(t, m)
		if check != nil {
			check(t, m)
		}
	})
}

func fuzzSeeds() (row store.Row, st store.Stamp) {
	st = store.Stamp{HLC: hlc.New(time.Now().UnixMilli(), 0), Node: 7}
	row = store.Row{CL: 1, Stamp: st, Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte("\x0a\x02m1")}, {Num: 2, Stamp: st, Value: []byte("\x12\x03web")}}}
	return row, st
}

// mergeChecker merges changes into a real store shared by a target's
// runs.
func mergeChecker(f *testing.F) func(t *testing.T, changes []store.Change) {
	s, err := store.Open(filepath.Join(f.TempDir(), "regional.db"), store.Options{Node: "fuzz", Clock: hlc.NewClock(nil, time.Minute), NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	return func(t *testing.T, changes []store.Change) {
		t.Helper()
		type rowKey struct{ table, key string }
		before := map[rowKey]store.Row{}
		for _, c := range changes {
			r, _ := s.GetAny(c.Table, c.Key)
			before[rowKey{c.Table, c.Key}] = r
		}
		_, rejected, err := s.Merge(context.Background(), changes)
		if err != nil {
			t.Fatalf("Merge failed as a whole (a bad item must refuse that item only): %v", err)
		}
		refused := map[rowKey]bool{}
		for _, r := range rejected {
			refused[rowKey{r.Change.Table, r.Change.Key}] = true
		}
		for _, c := range changes { // keys also written by an accepted change may move
			if k := (rowKey{c.Table, c.Key}); refused[k] {
				refused[k] = !slicesContainsAccepted(changes, rejected, k.table, k.key)
			}
		}
		for k, only := range refused {
			if !only {
				continue
			}
			if r, _ := s.GetAny(k.table, k.key); !r.Equal(before[k]) {
				t.Fatalf("%s/%s: every change to it was refused, but the row moved from %+v to %+v", k.table, k.key, before[k], r)
			}
		}
		root := s.Stats().Root
		applied, _, err := s.Merge(context.Background(), changes)
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != 0 || s.Stats().Root != root {
			t.Fatalf("merging the same changes again applied %d and moved the digest: merge is not idempotent", len(applied))
		}
	}
}

// slicesContainsAccepted tells whether a change to table/key is not among
// the rejected ones.
func slicesContainsAccepted(changes []store.Change, rejected []store.Rejected, table, key string) bool {
	n := 0
	for _, c := range changes {
		if c.Table == table && c.Key == key {
			n++
		}
	}
	for _, r := range rejected {
		if r.Change.Table == table && r.Change.Key == key {
			n--
		}
	}
	return n > 0
}

// FuzzChangesMessage: gossip broadcasts and stream pushes.
func FuzzChangesMessage(f *testing.F) {
	row, st := fuzzSeeds()
	future := store.Stamp{HLC: hlc.New(time.Now().Add(time.Hour).UnixMilli(), 0), Node: 8}
	merge := mergeChecker(f)
	fuzzMessage(f, msgChanges, []any{
		&changesMsg{header: header{Type: msgChanges, Sender: "n1"}, Changes: []store.Change{{Table: "machines", Key: "m1", Row: row}}},
		&changesMsg{header: header{Type: msgChanges, Sender: "n1"}, Changes: []store.Change{
			{Table: "machines", Key: "m1", Row: store.Row{CL: 2, Stamp: st}},
			{Table: "machines", Key: "m2", Row: store.Row{CL: 1, Stamp: future}},
			{Table: "", Key: "m3", Row: row},
		}},
	}, func(t *testing.T, m any) { merge(t, m.(*changesMsg).Changes) })
}

// FuzzSyncDigestMessage: the message that opens an anti-entropy exchange.
func FuzzSyncDigestMessage(f *testing.F) {
	fuzzMessage(f, msgSyncDigest, []any{
		&syncDigestMsg{header: header{Type: msgSyncDigest, Sender: "n1"}, Session: 9, Branches: make([]store.Hash, store.Branches)},
	}, nil)
}

// FuzzSyncLeavesMessage: the leaves of the branches that differ.
func FuzzSyncLeavesMessage(f *testing.F) {
	fuzzMessage(f, msgSyncLeaves, []any{
		&syncLeavesMsg{header: header{Type: msgSyncLeaves, Sender: "n2"}, Session: 9, Branch: []uint16{3}, Leaves: make([]store.Hash, store.BranchFanout)},
		&syncLeavesMsg{header: header{Type: msgSyncLeaves, Sender: "n2"}, Session: 1},
	}, nil)
}

// FuzzSyncKeysMessage: keys and row hashes of the differing leaves.
func FuzzSyncKeysMessage(f *testing.F) {
	fuzzMessage(f, msgSyncKeys, []any{
		&syncKeysMsg{header: header{Type: msgSyncKeys, Sender: "n1"}, Session: 9, Leaves: []uint16{200, 7}, Keys: []store.KeyHash{{Table: "machines", Key: "m1"}, {Table: "machines", Key: "m2"}}},
	}, nil)
}

// FuzzSyncRowsMessage: rows to merge and keys wanted back.
func FuzzSyncRowsMessage(f *testing.F) {
	row, _ := fuzzSeeds()
	merge := mergeChecker(f)
	fuzzMessage(f, msgSyncRows, []any{
		&syncRowsMsg{header: header{Type: msgSyncRows, Sender: "n2"}, Session: 9, Rows: []store.Change{{Table: "machines", Key: "m1", Row: row}}, Want: []store.KeyHash{{Table: "machines", Key: "m2"}}, Final: true},
	}, func(t *testing.T, m any) { merge(t, m.(*syncRowsMsg).Rows) })
}
