package cluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// slowSync leaves anti-entropy to what the test exercises: the periodic
// exchange does not come for an hour.
func slowSync(cfg *Config) { cfg.SyncInterval = time.Hour }

// TestRestartedNodeCatchesUpBeforeReady: a node stops, misses 300 writes,
// and restarts from its data dir (rejoining through its persisted peers).
// With the periodic exchange an hour away, it catches up as it joins, and
// when Ready first returns nil it already holds every missed row.
func TestRestartedNodeCatchesUpBeforeReady(t *testing.T) {
	c := newCluster(t)
	a, b, x := c.add("a", slowSync), c.add("b", slowSync), c.add("x", slowSync)
	waitFor(t, 10*time.Second, membersSee(3, a, b, x))
	x.tier.savePeers()
	dir := x.dir
	x.stop()
	const missed = 300
	for i := 0; i < missed; i++ {
		a.put(t, fmt.Sprintf("while-down-%03d", i), "v")
	}
	waitFor(t, 10*time.Second, func() (bool, string) { return converged(a, b) })

	x2 := c.start("x", dir, func(cfg *Config) { slowSync(cfg); cfg.Join = nil })
	waitFor(t, 10*time.Second, func() (bool, string) {
		err := x2.tier.Ready()
		return err == nil, fmt.Sprint(err)
	})
	if n := x2.store.Stats().Rows["machines"]; n != missed {
		t.Fatalf("ready with %d of the %d missed rows", n, missed)
	}
	if ok, why := converged(a, b, x2); !ok {
		t.Fatalf("ready but not converged: %s", why)
	}
}

// TestMembersExchangeWithANodeThatJoins: a node that holds rows its tier
// never saw (written while it ran alone, before this start: no gossip
// of them is pending) joins a running tier. The members start an
// exchange with it as it joins, so its rows reach them long before the
// periodic exchange.
func TestMembersExchangeWithANodeThatJoins(t *testing.T) {
	c := newCluster(t)
	a, b := c.add("a", slowSync), c.add("b", slowSync)
	waitFor(t, 10*time.Second, membersSee(2, a, b))
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "regional.db"), store.Options{Node: "loner", Clock: hlc.NewClock(nil, time.Minute), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := st.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "machines", Key: fmt.Sprintf("alone-%02d", i),
			Fields: []store.FieldValue{{Num: 1, Value: []byte("v")}}}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	loner := c.start("loner", dir, func(cfg *Config) { slowSync(cfg); cfg.Join = nil })
	if err := loner.tier.Ready(); err != nil {
		t.Fatalf("a node alone in its tier is not ready: %v", err)
	}
	if _, err := loner.tier.ml.Join([]string{a.tier.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		na, nb := a.store.Stats().Rows["machines"], b.store.Stats().Rows["machines"]
		return na == 50 && nb == 50, fmt.Sprintf("a has %d, b has %d of the loner's 50 rows", na, nb)
	})
}

// TestNotReadyBeforeStart: a tier that has not joined yet says so.
func TestNotReadyBeforeStart(t *testing.T) {
	c := newCluster(t)
	c.add("a", nil)
	n := c.add("b", nil) // started: joins a, then catches up
	waitFor(t, 10*time.Second, func() (bool, string) { err := n.tier.Ready(); return err == nil, fmt.Sprint(err) })

	st := n.store
	n.tier.Close()
	tier, err := New(n.cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	defer tier.Close()
	if err := tier.Ready(); !errors.Is(err, ErrNotReady) {
		t.Fatalf("before Start: Ready() = %v, want ErrNotReady", err)
	}
	n.tier = tier
}
