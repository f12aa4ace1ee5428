package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// TestNodeAwayPastTTLTakesAStateTransfer: node x is partitioned from its
// region (without restarting) longer than a short tombstone TTL while the
// others delete rows and reap the tombstones. x writes a row of its own
// meanwhile. When the partition heals, x takes a full state transfer: no
// deleted row comes back anywhere, x's own write survives and reaches the
// others, and all converge.
func TestNodeAwayPastTTLTakesAStateTransfer(t *testing.T) {
	const ttl = 4 * time.Second // well above the 300 ms sync interval, even under -race on a loaded machine
	ctx := context.Background()
	c := newCluster(t)
	short := func(cfg *Config) { cfg.TombstoneTTL = ttl }
	a, b, x := c.add("a", short), c.add("b", short), c.add("x", short)
	waitFor(t, 10*time.Second, membersSee(3, a, b, x))
	for i := 0; i < 10; i++ {
		a.put(t, fmt.Sprintf("k%02d", i), "v")
	}
	waitFor(t, 10*time.Second, func() (bool, string) { return converged(a, b, x) })
	waitFor(t, 10*time.Second, func() (bool, string) {
		return !x.store.LastSynced().IsZero(), "x has completed no exchange"
	})

	c.faults.Partition([]string{x.ft.Addr()}, []string{a.ft.Addr(), b.ft.Addr()})
	waitFor(t, 20*time.Second, membersSee(2, a, b))
	waitFor(t, 20*time.Second, membersSee(1, x))
	for i := 0; i < 5; i++ {
		if _, err := a.store.Apply(ctx, store.Mutation{Op: store.OpDelete, Table: "machines", Key: fmt.Sprintf("k%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, func() (bool, string) { return converged(a, b) })
	// Reap every tombstone: the horizon is just past the newest delete.
	var horizon hlc.Timestamp
	for i := 0; i < 5; i++ {
		row, err := a.store.GetAny("machines", fmt.Sprintf("k%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		horizon = max(horizon, row.Stamp.HLC+1)
	}
	for _, n := range []*testNode{a, b} {
		if reaped, err := n.store.Reap(ctx, horizon); err != nil || reaped != 5 {
			t.Fatalf("%s reaped %d tombstones, want 5 (err %v)", n.name, reaped, err)
		}
	}
	x.put(t, "x-own", "written while away")
	waitFor(t, 10*time.Second, func() (bool, string) {
		return x.tier.awayTooLong(), fmt.Sprintf("x last synced at %s", x.store.LastSynced().Format(time.StampMilli))
	})

	c.faults.Heal()
	waitFor(t, 20*time.Second, func() (bool, string) {
		for _, n := range []*testNode{a, b, x} {
			for i := 0; i < 5; i++ {
				if row, err := n.store.GetAny("machines", fmt.Sprintf("k%02d", i)); !errors.Is(err, store.ErrNotFound) {
					return false, fmt.Sprintf("deleted row k%02d is back on %s: %+v", i, n.name, row)
				}
			}
			if _, err := n.store.Get("machines", "x-own"); err != nil {
				return false, fmt.Sprintf("%s lacks x's own write: %v", n.name, err)
			}
		}
		if x.tier.Transfers() == 0 {
			return false, "x has taken no state transfer"
		}
		return converged(a, b, x)
	})
	if n := x.store.Stats().Rows["machines"]; n != 6 {
		t.Fatalf("x holds %d rows, want k05-k09 and x-own", n)
	}
	if err := x.tier.Ready(); err != nil {
		t.Fatalf("x not ready after its transfer: %v", err)
	}
}

// TestWholeTierAwayFallsBackToAntiEntropy: both nodes of a two-node tier
// are apart longer than the TTL, so neither has a snapshot worth taking.
// Each answers the other's transfer request as unavailable, and they
// reconcile by anti-entropy instead of waiting for each other forever.
func TestWholeTierAwayFallsBackToAntiEntropy(t *testing.T) {
	const ttl = 4 * time.Second // well above the 300 ms sync interval, even under -race on a loaded machine
	c := newCluster(t)
	short := func(cfg *Config) { cfg.TombstoneTTL = ttl }
	a, b := c.add("a", short), c.add("b", short)
	waitFor(t, 10*time.Second, membersSee(2, a, b))
	waitFor(t, 10*time.Second, func() (bool, string) {
		return !a.store.LastSynced().IsZero() && !b.store.LastSynced().IsZero(), "a or b has completed no exchange"
	})
	c.faults.Partition([]string{a.ft.Addr()}, []string{b.ft.Addr()})
	waitFor(t, 20*time.Second, membersSee(1, a, b))
	a.put(t, "from-a", "v")
	b.put(t, "from-b", "v")
	waitFor(t, 10*time.Second, func() (bool, string) {
		return a.tier.awayTooLong() && b.tier.awayTooLong(), "a and b not yet away longer than the TTL"
	})
	c.faults.Heal()
	waitFor(t, 20*time.Second, func() (bool, string) {
		if a.tier.awayTooLong() || b.tier.awayTooLong() {
			return false, fmt.Sprintf("still away: a %v, b %v", a.tier.awayTooLong(), b.tier.awayTooLong())
		}
		if n := a.store.Stats().Rows["machines"]; n != 2 {
			return false, fmt.Sprintf("a has %d rows, want 2", n)
		}
		return converged(a, b)
	})
}

// TestAwayAmongOlderBuildsReconcilesByAntiEntropy: in a region being
// upgraded, a node away longer than the TTL whose peers all advertise
// only protocol 1 (builds before state transfer, which drop a transfer
// request) does not ask them for one and wait: it reconciles by
// anti-entropy, as those builds do.
func TestAwayAmongOlderBuildsReconcilesByAntiEntropy(t *testing.T) {
	const ttl = 4 * time.Second
	c := newCluster(t)
	old := func(cfg *Config) { cfg.TombstoneTTL = ttl; cfg.Meta.Proto = []int{1, 1} }
	a, b := c.add("a", old), c.add("b", old)
	x := c.add("x", func(cfg *Config) { cfg.TombstoneTTL = ttl })
	waitFor(t, 10*time.Second, membersSee(3, a, b, x))
	waitFor(t, 10*time.Second, func() (bool, string) {
		return !x.store.LastSynced().IsZero(), "x has completed no exchange"
	})
	c.faults.Partition([]string{x.ft.Addr()}, []string{a.ft.Addr(), b.ft.Addr()})
	waitFor(t, 20*time.Second, membersSee(1, x))
	a.put(t, "from-a", "v")
	x.put(t, "from-x", "v")
	waitFor(t, 10*time.Second, func() (bool, string) {
		return x.tier.awayTooLong(), "x not yet away longer than the TTL"
	})
	c.faults.Heal()
	waitFor(t, 20*time.Second, func() (bool, string) {
		if x.tier.awayTooLong() {
			return false, "x is still away: it has completed no exchange since the heal"
		}
		return converged(a, b, x)
	})
	if n := x.tier.Transfers(); n != 0 {
		t.Fatalf("x took %d state transfers from peers that advertise protocol 1 only, want 0", n)
	}
}
