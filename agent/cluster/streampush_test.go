package cluster

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/store"
)

// TestStreamPushesAreBounded: while a peer takes only gossip (an older
// build), every change too large for a gossip packet is streamed to a few
// peers. A burst of 2,000 such changes is sent by a fixed set of workers
// from a bounded queue, so the node does not start a goroutine per change
// (it did: 2,000 goroutines, each dialling a stream, on both sides), and
// the changes that fit the queue arrive.
func TestStreamPushesAreBounded(t *testing.T) {
	const burst = 2000
	c := newCluster(t)
	a := c.add("a", noAntiEntropy)
	old := c.add("old", func(cfg *Config) { noAntiEntropy(cfg); cfg.Meta.Proto = []int{1, 1} })
	waitFor(t, 10*time.Second, membersSee(2, a, old))
	waitFor(t, 10*time.Second, allReady(a, old))
	waitFor(t, 10*time.Second, func() (bool, string) {
		return a.tier.plum.gossipNeeded.Load(), "a does not see that old needs gossip"
	})
	base := runtime.NumGoroutine()
	value := strings.Repeat("v", 2*maxGossipBytes)
	peak := 0
	for b := 0; b < burst/500; b++ {
		var muts []store.Mutation
		for i := b * 500; i < (b+1)*500; i++ {
			muts = append(muts, store.Mutation{Op: store.OpPut, Table: "machines", Key: fmt.Sprintf("big-%04d", i),
				Fields: []store.FieldValue{{Num: 1, Value: []byte(value)}}})
		}
		if _, err := a.store.Apply(context.Background(), muts...); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, runtime.NumGoroutine()-base)
	}
	t.Logf("at most %d more goroutines during the burst", peak)
	if peak > 100 {
		t.Fatalf("%d more goroutines during a burst of %d changes too large for gossip: stream pushes are not bounded", peak, burst)
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		n := old.store.Stats().Rows["machines"]
		return n >= streamPushQueue, fmt.Sprintf("old holds %d of the burst's rows, want at least the %d the queue holds", n, streamPushQueue)
	})
}
