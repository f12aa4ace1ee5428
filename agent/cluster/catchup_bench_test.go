package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

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
