package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

func TestLeaveFresh(t *testing.T) {
	at := func(ms int64) store.Change {
		st := store.Stamp{HLC: hlc.New(ms, 0), Node: 7}
		return store.Change{Table: "machines", Key: fmt.Sprint(ms), Row: store.Row{CL: 1, Stamp: st,
			Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte("v")}}}}
	}
	rows := []store.Change{at(100), at(2000), at(1999), at(5000)}
	send, held := leaveFresh(rows, hlc.New(2000, 0))
	if held != 2 || len(send) != 2 || send[0].Key != "100" || send[1].Key != "1999" {
		t.Fatalf("leaveFresh kept %v, left %d; want 100 and 1999 kept, 2 left", send, held)
	}
	if send, held := leaveFresh(rows, 0); held != 4 || len(send) != 0 {
		t.Fatalf("since 0 leaves out everything: got %d kept, %d left", len(send), held)
	}
}

// A periodic anti-entropy round leaves to the push path the rows it is
// still carrying: rows stamped within the hold are neither shipped by
// the node that started the round nor merged from its peer's answer,
// while older rows of the same exchange go. An exchange asked for ships
// them all. (In the 16-node benchmark, periodic rounds delivered rows
// 69-709 ms old, on their way by push.)
func TestPeriodicRoundLeavesFreshRowsToThePushPath(t *testing.T) {
	c := newCluster(t)
	slow := func(cfg *Config) { cfg.SyncInterval = 10 * time.Second } // a hold of 2 s
	a := c.add("a", slow)
	b := c.add("b", slow)
	waitFor(t, 10*time.Second, membersSee(2, a, b))
	waitFor(t, 10*time.Second, func() (bool, string) {
		ea, eb := a.tier.Ready(), b.tier.Ready()
		return ea == nil && eb == nil, fmt.Sprintf("a: %v, b: %v", ea, eb)
	})
	// Rows merged quietly (not pushed, not gossiped), from a third
	// origin: a fresh and an old one on each side.
	clock := hlc.NewClock(nil, time.Minute)
	row := func(key string, ts hlc.Timestamp) store.Change {
		st := store.Stamp{HLC: ts, Node: store.NodeIDOf("z")}
		return store.Change{Table: "machines", Key: key, Row: store.Row{CL: 1, Stamp: st,
			Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte("v")}}}}
	}
	old := hlc.New(time.Now().Add(-time.Minute).UnixMilli(), 0)
	for n, side := range map[*testNode]string{a: "a", b: "b"} {
		if _, _, err := n.store.Repair(context.Background(), []store.Change{row("fresh-"+side, clock.Now()), row("old-"+side, old)}); err != nil {
			t.Fatal(err)
		}
	}
	a.tier.syncWith("b", true)
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, e1 := a.store.Get("machines", "old-b")
		_, e2 := b.store.Get("machines", "old-a")
		return e1 == nil && e2 == nil, fmt.Sprintf("old rows not exchanged: a: %v, b: %v", e1, e2)
	})
	// The old rows crossed in the same messages as the fresh ones would
	// have.
	if _, err := b.store.Get("machines", "fresh-a"); err == nil {
		t.Error("a shipped a row stamped within the hold in a periodic round")
	}
	if _, err := a.store.Get("machines", "fresh-b"); err == nil {
		t.Error("a merged a row stamped within the hold from its periodic round's answer")
	}
	if got := testutil.ToFloat64(a.tier.m.synced.WithLabelValues(Regional, "left_to_push")); got != 2 {
		t.Errorf("left_to_push = %v, want 2", got)
	}
	// An exchange asked for (a join, a restart, a graft that gave up)
	// ships every row.
	a.tier.SyncWith("b")
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, e1 := a.store.Get("machines", "fresh-b")
		_, e2 := b.store.Get("machines", "fresh-a")
		return e1 == nil && e2 == nil, fmt.Sprintf("fresh rows not exchanged when asked: a: %v, b: %v", e1, e2)
	})
}
