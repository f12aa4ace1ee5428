package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// BenchmarkCatchUpAfterRestart measures the catch-up target of issue 11:
// three nodes, one stopped while 1,000 rows are written, then restarted
// from its data dir (rejoining through its persisted peers) with the
// default 10 s sync interval. It reports the time from the start of the
// restart (store open, tier created, join) until Ready, the rows still
// missing when Ready first returns nil, and the time from Ready until
// every missed row is held (0 when all arrived before Ready).
func BenchmarkCatchUpAfterRestart(b *testing.B) {
	const missed = 1000
	var toReady, readyToAll, toAll []time.Duration
	missingAtReady := 0
	for i := 0; i < b.N; i++ {
		c := newCluster(b)
		def := func(cfg *Config) { cfg.SyncInterval = 10 * time.Second }
		a, bb, x := c.add("a", def), c.add("b", def), c.add("x", def)
		waitFor(b, 10*time.Second, membersSee(3, a, bb, x))
		x.tier.savePeers()
		dir := x.dir
		x.stop()
		var muts []store.Mutation
		for j := 0; j < missed; j++ {
			muts = append(muts, store.Mutation{Op: store.OpPut, Table: "machines", Key: fmt.Sprintf("missed-%04d", j),
				Fields: []store.FieldValue{{Num: 1, Value: []byte("host-17")}, {Num: 2, Value: []byte("started")}}})
			if len(muts) == 50 {
				if _, err := a.store.Apply(context.Background(), muts...); err != nil {
					b.Fatal(err)
				}
				muts = nil
			}
		}
		waitFor(b, 20*time.Second, func() (bool, string) { return converged(a, bb) })

		t0 := time.Now()
		x2 := c.start("x", dir, func(cfg *Config) { def(cfg); cfg.Join = nil })
		for x2.tier.Ready() != nil {
			if time.Since(t0) > 20*time.Second {
				b.Fatalf("not ready after 20s: %v", x2.tier.Ready())
			}
			time.Sleep(time.Millisecond)
		}
		tReady := time.Now()
		have := int(x2.store.Stats().Rows["machines"])
		missingAtReady = max(missingAtReady, missed-have)
		for x2.store.Stats().Rows["machines"] < missed {
			if time.Since(tReady) > 20*time.Second {
				b.Fatalf("ready, but %d of %d rows after 20s", x2.store.Stats().Rows["machines"], missed)
			}
			time.Sleep(time.Millisecond)
		}
		toReady = append(toReady, tReady.Sub(t0))
		readyToAll = append(readyToAll, time.Since(tReady))
		toAll = append(toAll, time.Since(t0))
		for _, n := range c.nodes {
			n.stop()
		}
	}
	slices.Sort(toReady)
	slices.Sort(readyToAll)
	slices.Sort(toAll)
	b.ReportMetric(float64(toReady[len(toReady)/2].Microseconds())/1000, "ms-restart-to-ready(median)")
	b.ReportMetric(float64(toReady[len(toReady)-1].Microseconds())/1000, "ms-restart-to-ready(max)")
	b.ReportMetric(float64(readyToAll[len(readyToAll)-1].Microseconds())/1000, "ms-ready-to-all-rows(max)")
	b.ReportMetric(float64(toAll[len(toAll)-1].Microseconds())/1000, "ms-restart-to-all-rows(max)")
	b.ReportMetric(float64(missingAtReady), "rows-missing-at-ready(max)")
}

// BenchmarkStateTransferOnRestart measures a restart after longer than the
// tombstone TTL: two nodes hold 10,000 rows; node x restarts from a data
// dir whose last exchange is two TTLs old and that holds, besides those
// rows, 1,000 rows the others have deleted and reaped. It reports the time
// from the start of the restart until x is ready (its store replaced by a
// peer's snapshot), and fails unless x then holds exactly the peers' rows.
func BenchmarkStateTransferOnRestart(b *testing.B) {
	const rows, stale = 10_000, 1_000
	const ttl = time.Hour
	var toReady []time.Duration
	for i := 0; i < b.N; i++ {
		c := newCluster(b)
		cfg := func(cfg *Config) { cfg.SyncInterval = 10 * time.Second; cfg.TombstoneTTL = ttl }
		a, bb := c.add("a", cfg), c.add("b", cfg)
		waitFor(b, 10*time.Second, membersSee(2, a, bb))
		var changes []store.Change
		for j := 0; j < rows; j++ {
			changes = append(changes, liveChange("a", "machines", fmt.Sprintf("row-%05d", j), "host-17"))
		}
		for _, n := range []*testNode{a, bb} {
			if _, _, err := n.store.Repair(context.Background(), changes); err != nil {
				b.Fatal(err)
			}
			if err := n.store.MarkSynced(time.Now()); err != nil {
				b.Fatal(err)
			}
		}
		dir := b.TempDir()
		xs, err := store.Open(filepath.Join(dir, "regional.db"), store.Options{Node: "x", Clock: hlc.NewClock(nil, time.Minute), NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		// Rows deleted by the peers more than a TTL ago: written before
		// their tombstone horizon, which they have moved past them.
		longAgo := hlc.New(time.Now().Add(-3*ttl).UnixMilli(), 0)
		for j := 0; j < stale; j++ {
			c := liveChange("a", "machines", fmt.Sprintf("deleted-%05d", j), "host-17")
			c.Row.Stamp.HLC, c.Row.Fields[0].Stamp.HLC = longAgo, longAgo
			changes = append(changes, c)
		}
		for _, n := range []*testNode{a, bb} {
			if _, err := n.store.Reap(context.Background(), hlc.New(time.Now().Add(-ttl).UnixMilli(), 0)); err != nil {
				b.Fatal(err)
			}
		}
		if _, _, err := xs.Repair(context.Background(), changes); err != nil {
			b.Fatal(err)
		}
		if err := xs.MarkSynced(time.Now().Add(-2 * ttl)); err != nil {
			b.Fatal(err)
		}
		xs.Close()

		t0 := time.Now()
		x := c.start("x", dir, func(c *Config) { cfg(c); c.Join = []string{a.tier.Addr()} })
		for x.tier.Ready() != nil {
			if time.Since(t0) > 60*time.Second {
				b.Fatalf("not ready after 60s: %v", x.tier.Ready())
			}
			time.Sleep(time.Millisecond)
		}
		toReady = append(toReady, time.Since(t0))
		if x.tier.Transfers() != 1 {
			b.Fatalf("ready after %d state transfers, want 1", x.tier.Transfers())
		}
		if ok, why := converged(a, bb, x); !ok || x.store.Stats().Rows["machines"] != rows {
			b.Fatalf("after the transfer: %s; x has %d rows", why, x.store.Stats().Rows["machines"])
		}
		for _, n := range c.nodes {
			n.stop()
		}
	}
	slices.Sort(toReady)
	b.ReportMetric(float64(toReady[len(toReady)/2].Microseconds())/1000, "ms-restart-to-ready(median)")
	b.ReportMetric(float64(toReady[len(toReady)-1].Microseconds())/1000, "ms-restart-to-ready(max)")
}
