package cluster

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// noAntiEntropy makes anti-entropy rare enough that a test sees only what
// the push path delivered.
func noAntiEntropy(cfg *Config) { cfg.SyncInterval = time.Hour }

func TestPushDeliversWithoutAntiEntropyOrGossip(t *testing.T) {
	c := newCluster(t)
	var nodes []*testNode
	for i := 0; i < 5; i++ {
		nodes = append(nodes, c.add(fmt.Sprintf("n%d", i), noAntiEntropy))
	}
	waitFor(t, 10*time.Second, membersSee(5, nodes...))
	// Until a node's push loop has taken in the membership, it gossips its
	// writes as well (it cannot tell yet that every peer pushes).
	waitFor(t, 10*time.Second, pushPeersSee(4, nodes...))
	for i := 0; i < 300; i++ {
		nodes[i%5].put(t, fmt.Sprintf("k%03d", i), "v")
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		if ok, why := converged(nodes...); !ok {
			return false, why
		}
		n := nodes[4].store.Stats().Rows["machines"]
		return n == 300, fmt.Sprintf("rows %d, want 300", n)
	})
	// Each remote write arrives once, none by gossip; the push path may
	// fall back to anti-entropy for a range it could not get repaired in
	// time (the machine running the tests is shared), but rarely.
	// The counters move just after the commit the digests show: poll.
	waitFor(t, 5*time.Second, func() (bool, string) {
		for _, n := range nodes {
			a := arrivals(n.tier)
			if a[pathPush]+a[pathRepair]+a[pathAntiEntropy] != 240 {
				return false, fmt.Sprintf("%s: rows arrived %v, want 240 in all", n.name, a)
			}
		}
		return true, ""
	})
	for _, n := range nodes {
		if a := arrivals(n.tier); a[pathGossip] != 0 || a[pathAntiEntropy] > 12 {
			t.Errorf("%s: rows arrived %v, want them by push and repair (at most 12 by anti-entropy), none by gossip", n.name, a)
		}
	}
}

// A partition shorter than failure detection: pushes fail, the sender
// keeps announcing, and the cut node catches up by repair, not by
// anti-entropy, within a second of the heal.
func TestPartitionedNodeCatchesUpByRepair(t *testing.T) {
	c := newCluster(t)
	slowFD := func(cfg *Config) {
		noAntiEntropy(cfg)
		cfg.ProbeInterval, cfg.ProbeTimeout = 5*time.Second, 2*time.Second
	}
	a, b, x := c.add("a", slowFD), c.add("b", slowFD), c.add("x", slowFD)
	waitFor(t, 10*time.Second, membersSee(3, a, b, x))
	// The joins' catch-up exchanges could bring the first row to x before
	// the push path does.
	waitFor(t, 10*time.Second, allReady(a, b, x))
	waitFor(t, 10*time.Second, pushPeersSee(2, a, b, x))
	a.put(t, "before", "v")
	waitFor(t, 5*time.Second, func() (bool, string) { return converged(a, b, x) })
	c.faults.Partition([]string{x.ft.Addr()}, []string{a.ft.Addr(), b.ft.Addr()})
	for i := 0; i < 50; i++ {
		a.put(t, fmt.Sprintf("during-%02d", i), "v")
	}
	waitFor(t, 5*time.Second, func() (bool, string) { return converged(a, b) })
	if ok, _ := converged(a, x); ok {
		t.Fatal("the partition leaked")
	}
	c.faults.Heal()
	healed := time.Now()
	waitFor(t, 5*time.Second, func() (bool, string) { return converged(a, b, x) })
	if d := time.Since(healed); d > time.Second {
		t.Errorf("x caught up %v after the heal, want within 1s", d)
	}
	waitFor(t, 5*time.Second, func() (bool, string) {
		got := arrivals(x.tier)
		return got[pathRepair] >= 50, fmt.Sprintf("x's rows arrived %v, want ≥ 50 by repair", got)
	})
	if got := arrivals(x.tier); got[pathAntiEntropy] != 0 {
		t.Errorf("x's rows arrived %v, want none by anti-entropy", got)
	}
}

// An old node (protocol 1 only) in a region of new ones: the new nodes do
// not push to it but gossip, and its writes reach them by gossip.
func TestOldProtocolPeerGetsGossip(t *testing.T) {
	c := newCluster(t)
	a, b := c.add("a", noAntiEntropy), c.add("b", noAntiEntropy)
	old := c.add("old", func(cfg *Config) { noAntiEntropy(cfg); cfg.Meta.Proto = []int{1, 1} })
	waitFor(t, 10*time.Second, membersSee(3, a, b, old))
	for _, m := range a.tier.Members() {
		want := "1-2"
		if m.Name == "old" {
			want = "1-1"
		}
		if m.Protocol != want || m.Build == "" {
			t.Errorf("a sees member %s with protocol %q build %q, want %s and a build", m.Name, m.Protocol, m.Build, want)
		}
	}
	// The exchanges that joins start could bring a row written now before
	// gossip does: wait for the catch-up, and write a few.
	waitFor(t, 10*time.Second, allReady(a, b, old))
	for i := 0; i < 5; i++ {
		a.put(t, fmt.Sprintf("from-new-%d", i), "v")
	}
	old.put(t, "from-old", "v")
	waitFor(t, 10*time.Second, func() (bool, string) { return converged(a, b, old) })
	if n := testutil.ToFloat64(old.tier.m.bcast.batches.WithLabelValues(Regional, "received")); n != 0 {
		t.Errorf("the old node received %v push batches, want 0", n)
	}
	waitFor(t, 5*time.Second, func() (bool, string) {
		got := arrivals(old.tier)
		return got[pathGossip] >= 1, fmt.Sprintf("old node's rows arrived %v, want by gossip", got)
	})
}

// A node whose range shares no version with the region is refused at join,
// with a log line naming both ranges.
func TestNoCommonProtocolIsRefusedAtJoin(t *testing.T) {
	c := newCluster(t)
	var logs syncBuffer
	a := c.add("a", func(cfg *Config) { cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	b := c.add("b", nil)
	waitFor(t, 10*time.Second, membersSee(2, a, b))
	c.add("future", func(cfg *Config) { cfg.Meta.Proto = []int{3, 4} })
	waitFor(t, 10*time.Second, func() (bool, string) {
		s := logs.String()
		return strings.Contains(s, "member_protocol=3-4") && strings.Contains(s, "protocol=1-2"), "no refusal logged yet"
	})
	for _, m := range a.tier.Members() {
		if m.Name == "future" {
			t.Fatalf("a lists the refused member: %+v", m)
		}
	}
	if a.tier.NumAlive() != 2 {
		t.Fatalf("a sees %d alive members, want 2", a.tier.NumAlive())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)

// pushPeersSee waits until every node's push loop counts n peers.
func pushPeersSee(n int, nodes ...*testNode) func() (bool, string) {
	return func() (bool, string) {
		for _, nd := range nodes {
			b := nd.tier.m.bcast.peers
			got := testutil.ToFloat64(b.WithLabelValues(Regional, "eager")) + testutil.ToFloat64(b.WithLabelValues(Regional, "lazy"))
			if int(got) != n || nd.tier.plum.gossipNeeded.Load() {
				return false, fmt.Sprintf("%s's push loop knows %v peers, want %d", nd.name, got, n)
			}
		}
		return true, ""
	}
}

// allReady waits until every node has caught up with its tier.
func allReady(nodes ...*testNode) func() (bool, string) {
	return func() (bool, string) {
		for _, n := range nodes {
			if err := n.tier.Ready(); err != nil {
				return false, n.name + ": " + err.Error()
			}
		}
		return true, ""
	}
}
