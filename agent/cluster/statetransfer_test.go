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
	const ttl = 1500 * time.Millisecond
	ctx := context.Background()
	c := newCluster(t)
	short := func(cfg *Config) { cfg.TombstoneTTL = ttl }
	a, b, x := c.add("a", short), c.add("b", short), c.add("x", short)
	waitFor(t, 10*time.Second, membersSee(3, a, b, x))
	for i := 0; i < 10; i++ {
		a.put(t, fmt.Sprintf("k%02d", i), "v")
	}
	waitFor(t, 10*time.Second, func() (bool, string) { return converged(a, b, x) })

	c.faults.Partition([]string{x.ft.Addr()}, []string{a.ft.Addr(), b.ft.Addr()})
	waitFor(t, 20*time.Second, membersSee(2, a, b))
	waitFor(t, 20*time.Second, membersSee(1, x))
	for i := 0; i < 5; i++ {
		if _, err := a.store.Apply(ctx, store.Mutation{Op: store.OpDelete, Table: "machines", Key: fmt.Sprintf("k%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, func() (bool, string) { return converged(a, b) })
	for _, n := range []*testNode{a, b} {
		if _, err := n.store.Reap(ctx, hlc.New(time.Now().UnixMilli(), 0)); err != nil {
			t.Fatal(err)
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
				if _, err := n.store.GetAny("machines", fmt.Sprintf("k%02d", i)); !errors.Is(err, store.ErrNotFound) {
					return false, fmt.Sprintf("deleted row k%02d is back on %s (err %v)", i, n.name, err)
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
