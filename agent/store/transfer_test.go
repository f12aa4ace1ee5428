package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/hlc"
)

// TestReplaceTakesThePeersStateKeepingOwnLaterWrites: a store away too
// long takes a peer's snapshot. Rows the peer lacks go (their deletes were
// reaped), rows both hold take the peer's state, the peer's old rows come
// in despite this store's tombstone horizon, and this node's writes after
// its last sync, and rows changed while the snapshot was in flight, stay,
// merged. Only this node's own later writes are reported to OnCommit, to
// be broadcast again. The digest ends equal to the expected state's.
func TestReplaceTakesThePeersStateKeepingOwnLaterWrites(t *testing.T) {
	ctx := context.Background()
	peer := openTest(t, "", Options{Node: "peer"})
	s := openTest(t, "", Options{Node: "away"})
	expect := openTest(t, "", Options{Node: "model"})

	old := hlc.New(time.Now().Add(-48*time.Hour).UnixMilli(), 0)
	oldRow := Row{CL: 1, Stamp: Stamp{HLC: old, Node: NodeIDOf("peer")},
		Fields: []Field{{Num: 1, Stamp: Stamp{HLC: old, Node: NodeIDOf("peer")}, Value: []byte("ancient")}}}
	// The away node's state before it left.
	mustApply(t, s, put("deleted-while-away", "v"), put("changed-while-away", "before"))
	if _, err := s.Reap(ctx, hlc.New(time.Now().Add(-time.Hour).UnixMilli(), 0)); err != nil {
		t.Fatal(err)
	}
	lastSync := s.clock.Now()
	mustApply(t, s, put("mine-after-sync", "kept"))
	// The peer's state: one row changed, one created long ago, the
	// deleted row gone.
	mustApply(t, peer, put("changed-while-away", "after"))
	if _, _, err := peer.Merge(ctx, []Change{{Table: "machines", Key: "ancient", Row: oldRow}}); err != nil {
		t.Fatal(err)
	}
	var snapshot []Change
	keys, _ := peer.LeafKeys(allLeaves())
	snapshot, _ = peer.Rows(keys)

	since := s.Seq()
	// Gossip reaches the away node while the snapshot is in flight.
	fresh := Change{Table: "machines", Key: "gossiped", Row: Row{CL: 1, Stamp: Stamp{HLC: peer.clock.Now(), Node: NodeIDOf("other")}}}
	fresh.Row.Fields = []Field{{Num: 1, Stamp: fresh.Row.Stamp, Value: []byte("new")}}
	if _, _, err := s.Merge(ctx, []Change{fresh}); err != nil {
		t.Fatal(err)
	}

	// And gossip that the peer has reaped since: dropped.
	staleAt := hlc.New(time.Now().Add(-30*time.Minute).UnixMilli(), 0)
	stale := Change{Table: "machines", Key: "reaped-by-peer", Row: Row{CL: 2, Stamp: Stamp{HLC: staleAt, Node: NodeIDOf("other")}}}
	if _, rej, err := s.Merge(ctx, []Change{stale}); err != nil || len(rej) != 0 {
		t.Fatalf("merging a tombstone: %v %v", err, rej)
	}
	peerHorizon := hlc.New(time.Now().Add(-10*time.Minute).UnixMilli(), 0)

	var reported []Change
	s.SetOnCommit(func(local, remote []Change) { reported = append(reported, remote...) })
	rejected, err := s.Replace(ctx, Replacement{Rows: snapshot, OwnAfter: lastSync, ChangedAfter: since, Horizon: peerHorizon})
	if err != nil || len(rejected) != 0 {
		t.Fatalf("Replace: %v, rejected %v", err, rejected)
	}

	for key, want := range map[string]string{"changed-while-away": "after", "ancient": "ancient", "mine-after-sync": "kept", "gossiped": "new"} {
		row, err := s.Get("machines", key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if got := fieldValue(t, row, 1); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	for _, key := range []string{"deleted-while-away", "reaped-by-peer"} {
		if _, err := s.GetAny("machines", key); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s, deleted and reaped by the peer, survived the transfer: %v", key, err)
		}
	}
	if len(reported) != 1 || reported[0].Key != "mine-after-sync" {
		t.Fatalf("reported for broadcast: %+v, want only mine-after-sync", reported)
	}
	// The peer does not hold the own row: it is stamped afresh, so peers
	// whose horizon passed its first stamp still take it.
	if st := reported[0].Row.Latest().HLC; st <= peerHorizon || st <= lastSync {
		t.Errorf("own row re-broadcast with stamp %s, not after the horizon %s", st, peerHorizon)
	}
	if s.Horizon() != peerHorizon {
		t.Errorf("horizon after Replace %s, want the peer's %s", s.Horizon(), peerHorizon)
	}
	// The expected state, built by merging the same rows into a fresh
	// store, has the same digest.
	var want []Change
	for _, key := range []string{"changed-while-away", "ancient", "mine-after-sync", "gossiped"} {
		row, _ := s.GetAny("machines", key)
		want = append(want, Change{Table: "machines", Key: key, Row: row})
	}
	if _, _, err := expect.Merge(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, exp := s.Stats(), expect.Stats(); got.Root != exp.Root || got.Rows["machines"] != 4 {
		t.Fatalf("after Replace: root %x, %v rows; want root %x, 4 rows", got.Root[:4], got.Rows, exp.Root[:4])
	}
}

// TestReplaceFailsAloneWhenTheFeedWasTrimmed: a transfer that cannot know
// what changed while it was in flight fails without changing anything.
func TestReplaceFailsAloneWhenTheFeedWasTrimmed(t *testing.T) {
	s := openTest(t, "", Options{FeedRetention: 2})
	mustApply(t, s, put("a", "1"), put("b", "1"), put("c", "1"), put("d", "1"))
	before := s.Stats().Root
	_, err := s.Replace(context.Background(), Replacement{ChangedAfter: 0})
	if !errors.Is(err, ErrFeedTrimmed) {
		t.Fatalf("Replace after a trimmed feed: %v, want ErrFeedTrimmed", err)
	}
	if s.Stats().Root != before {
		t.Fatal("a failed Replace changed the store")
	}
}

func allLeaves() []int {
	out := make([]int, Leaves)
	for i := range out {
		out[i] = i
	}
	return out
}

// TestReplaceDoesNotReviveAReapedLife: while a node was away, it patched
// rows its peers deleted and reaped meanwhile; one of them the peers
// have written anew since, so its causal length starts again at 1. The
// patches are this node's own later writes, but they are concurrent with
// the deletes, which win (the higher causal length): the transfer must
// neither bring the deleted row back nor let the reaped life override the
// new one. Found by the convergence checker (agent/cluster
// TestConvergence, away-partitioned phases).
func TestReplaceDoesNotReviveAReapedLife(t *testing.T) {
	ctx := context.Background()
	peer := openTest(t, "", Options{Node: "peer"})
	s := openTest(t, "", Options{Node: "away"})
	// Before the node left, both held the rows, in a later life (cl 3).
	for _, st := range []*Store{s, peer} {
		mustApply(t, st, put("gone", "v"), put("reborn", "v"))
	}
	for _, key := range []string{"gone", "reborn"} {
		row, _ := s.GetAny("machines", key)
		for _, st := range []*Store{s, peer} {
			if _, _, err := st.Merge(ctx, []Change{{Table: "machines", Key: key, Row: Row{CL: 3, Stamp: row.Stamp, Fields: row.Fields}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	lastSync := s.clock.Now()
	// Away: this node patches both rows ...
	for _, key := range []string{"gone", "reborn"} {
		mustApply(t, s, Mutation{Op: OpPatch, Table: "machines", Key: key, Fields: []FieldValue{{Num: 2, Value: []byte("patched while away")}}})
	}
	// ... while the peer deletes them, reaps the tombstones, and writes
	// "reborn" anew.
	for _, key := range []string{"gone", "reborn"} {
		mustApply(t, peer, Mutation{Op: OpDelete, Table: "machines", Key: key})
	}
	horizon := peer.clock.Now() + 1
	if n, err := peer.Reap(ctx, horizon); err != nil || n != 2 {
		t.Fatalf("peer reaped %d, %v", n, err)
	}
	mustApply(t, peer, put("reborn", "new life"))
	want, _ := peer.GetAny("machines", "reborn")
	keys, _ := peer.LeafKeys(allLeaves())
	snapshot, _ := peer.Rows(keys)

	if rejected, err := s.Replace(ctx, Replacement{Rows: snapshot, OwnAfter: lastSync, ChangedAfter: s.Seq(), Horizon: horizon}); err != nil || len(rejected) != 0 {
		t.Fatalf("Replace: %v, rejected %v", err, rejected)
	}
	if row, err := s.GetAny("machines", "gone"); err == nil && row.Alive() {
		t.Errorf("gone, deleted and reaped by the peer, is alive again after the transfer: %+v", row)
	}
	if got, _ := s.GetAny("machines", "reborn"); !got.Equal(want) {
		t.Errorf("reborn after the transfer: %+v, want the peer's new life %+v", got, want)
	}
}

// TestReplacePassesOnOwnWritesOlderThanThePeersHorizon: while away, a
// node deleted and patched rows its peer still holds; by the time it
// comes back, the peer's tombstone horizon has moved past those writes.
// The transfer keeps them, and what it passes on must be accepted by the
// peer, which refuses changes older than its horizon that are new to it:
// so they go out stamped afresh, and both end with the same rows. Found by
// the convergence checker (agent/cluster TestConvergence, seed 1000, a
// node back from away-partitioned held deletes its peers refused).
func TestReplacePassesOnOwnWritesOlderThanThePeersHorizon(t *testing.T) {
	ctx := context.Background()
	peer := openTest(t, "", Options{Node: "peer"})
	s := openTest(t, "", Options{Node: "away"})
	mustApply(t, s, put("deleted-away", "v"), put("patched-away", "v", "w"))
	for _, key := range []string{"deleted-away", "patched-away"} {
		row, _ := s.GetAny("machines", key)
		if _, _, err := peer.Merge(ctx, []Change{{Table: "machines", Key: key, Row: row}}); err != nil {
			t.Fatal(err)
		}
	}
	lastSync := s.clock.Now()
	mustApply(t, s, Mutation{Op: OpDelete, Table: "machines", Key: "deleted-away"},
		Mutation{Op: OpPatch, Table: "machines", Key: "patched-away", Fields: []FieldValue{{Num: 2, Value: []byte("patched while away")}}})
	// The peer reaps (nothing here to reap): its horizon passes the
	// away node's writes.
	horizon := peer.clock.Now() + 1
	if _, err := peer.Reap(ctx, horizon); err != nil {
		t.Fatal(err)
	}
	keys, _ := peer.LeafKeys(allLeaves())
	snapshot, _ := peer.Rows(keys)

	var passedOn []Change
	s.SetOnCommit(func(local, remote []Change) { passedOn = append(passedOn, remote...) })
	if rejected, err := s.Replace(ctx, Replacement{Rows: snapshot, OwnAfter: lastSync, ChangedAfter: s.Seq(), Horizon: horizon}); err != nil || len(rejected) != 0 {
		t.Fatalf("Replace: %v, rejected %v", err, rejected)
	}
	if len(passedOn) != 2 {
		t.Fatalf("passed on %d changes, want the 2 own writes", len(passedOn))
	}
	if _, rejected, err := peer.Merge(ctx, passedOn); err != nil || len(rejected) != 0 {
		t.Fatalf("the peer refused the away node's own writes: %v, %v", rejected, err)
	}
	if s.Stats().Root != peer.Stats().Root {
		t.Fatal("the away node and its peer hold different rows after the transfer")
	}
	if row, _ := peer.GetAny("machines", "deleted-away"); row.Alive() {
		t.Fatal("the away node's delete did not reach the peer")
	}
	if row, _ := peer.Get("machines", "patched-away"); fieldValue(t, row, 2) != "patched while away" || fieldValue(t, row, 1) != "v" {
		t.Fatalf("patched-away on the peer: %+v", row)
	}
}
