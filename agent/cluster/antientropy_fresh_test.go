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
	stamp := func(ms int64) store.Stamp { return store.Stamp{HLC: hlc.New(ms, 0), Node: 7} }
	row := func(key string, rowMs int64, fieldMs ...int64) store.Change {
		r := store.Row{CL: 1, Stamp: stamp(rowMs)}
		for i, ms := range fieldMs {
			r.Fields = append(r.Fields, store.Field{Num: uint32(i + 1), Stamp: stamp(ms), Value: []byte("v")})
		}
		return store.Change{Table: "machines", Key: key, Row: r}
	}
	rows := []store.Change{
		row("old", 100, 100, 150),
		row("new", 2000, 2000, 2000), // written at the window's start: left out whole
		row("just-old", 1999, 1999),
		row("hot", 100, 100, 2500),  // one field written over and over: the other goes
		row("recreated", 3000, 100), // its causal length is fresh: left out whole
		row("tombstone", 2900),
		row("ahead", 100, 100, 9000), // stamped past the window (a fast clock): goes
	}
	w := freshWindow{from: hlc.New(2000, 0), to: hlc.New(3000, 1<<16-1)}
	send, held := leaveFresh(rows, w)
	var got []string
	for _, c := range send {
		got = append(got, fmt.Sprintf("%s:%d", c.Key, len(c.Row.Fields)))
	}
	if fmt.Sprint(got) != "[old:2 just-old:1 hot:1 ahead:2]" || held != 4 {
		t.Fatalf("leaveFresh sent %v and left out %d rows; want [old:2 just-old:1 hot:1 ahead:2] and 4", got, held)
	}
	if f := send[2].Row.Fields[0]; f.Num != 1 {
		t.Fatalf("hot row sent field %d, want its older field 1", f.Num)
	}
	if len(rows[3].Row.Fields) != 2 {
		t.Fatal("leaveFresh changed its input's fields")
	}
	if send, held := leaveFresh(rows, freshWindow{}); held != 0 || len(send) != len(rows) {
		t.Fatalf("the zero window left out %d rows", held)
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
	slow := func(cfg *Config) { cfg.SyncInterval, cfg.freshHold = time.Hour, 30*time.Second }
	a := c.add("a", slow)
	b := c.add("b", slow)
	waitFor(t, 10*time.Second, membersSee(2, a, b))
	waitFor(t, 10*time.Second, func() (bool, string) {
		ea, eb := a.tier.Ready(), b.tier.Ready()
		return ea == nil && eb == nil, fmt.Sprintf("a: %v, b: %v", ea, eb)
	})
	// Rows merged quietly (not pushed, not gossiped), from a third
	// origin: a fresh and an old one on each side.
	row := func(key string, ts hlc.Timestamp) store.Change {
		st := store.Stamp{HLC: ts, Node: store.NodeIDOf("z")}
		return store.Change{Table: "machines", Key: key, Row: store.Row{CL: 1, Stamp: st,
			Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte("v")}}}}
	}
	old := hlc.New(time.Now().Add(-time.Minute).UnixMilli(), 0)
	// The fresh rows are stamped now; the hold is 30 s here, so that they
	// are still within it however slowly the exchange runs. The rows
	// stamped 25 s ahead come from a clock running fast: how fresh they
	// are cannot be told, and they are not held (holding them until this
	// node's clock caught up would hold them for the skew).
	now := hlc.New(time.Now().UnixMilli(), 0)
	ahead := hlc.New(time.Now().Add(25*time.Second).UnixMilli(), 0)
	for n, side := range map[*testNode]string{a: "a", b: "b"} {
		if _, _, err := n.store.Repair(context.Background(), []store.Change{row("fresh-"+side, now), row("old-"+side, old), row("skewed-"+side, ahead)}); err != nil {
			t.Fatal(err)
		}
	}
	a.tier.syncWith("b", true)
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, e1 := a.store.Get("machines", "old-b")
		_, e2 := b.store.Get("machines", "old-a")
		_, e3 := a.store.Get("machines", "skewed-b")
		_, e4 := b.store.Get("machines", "skewed-a")
		return e1 == nil && e2 == nil && e3 == nil && e4 == nil,
			fmt.Sprintf("old and fast-clock rows not exchanged: a: %v, %v; b: %v, %v", e1, e3, e2, e4)
	})
	// The old rows crossed in the same messages as the fresh ones would
	// have.
	if _, err := b.store.Get("machines", "fresh-a"); err == nil {
		t.Error("a shipped a row stamped within the hold in a periodic round")
	}
	if _, err := a.store.Get("machines", "fresh-b"); err == nil {
		t.Error("a merged a row stamped within the hold from its periodic round's answer")
	}
	// At least the two rows of this round (a's own periodic round may
	// have run meanwhile too).
	if got := testutil.ToFloat64(a.tier.m.synced.WithLabelValues(Regional, "left_to_push")); got < 2 {
		t.Errorf("left_to_push = %v, want at least 2", got)
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
