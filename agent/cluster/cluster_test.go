package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/internal/waitfor"
)

// testNode is one node of an in-process cluster: a real store file and a
// real memberlist over loopback UDP/TCP, behind a fault-injecting transport.
type testNode struct {
	name  string
	dir   string
	store *store.Store
	tier  *Tier
	ft    *FaultTransport
	cfg   Config
}

// testCluster builds nodes that share one Faults network.
type testCluster struct {
	t      testing.TB
	faults *Faults
	nodes  []*testNode
	mu     sync.Mutex
}

func newCluster(t testing.TB) *testCluster {
	return &testCluster{t: t, faults: NewFaults()}
}

// fastConfig is a regional tier tuned for quick tests.
func fastConfig(name string) Config {
	return Config{
		Node: name, Tier: Regional, Cluster: "test", Region: "r1",
		GossipInterval: 50 * time.Millisecond, GossipNodes: 4,
		ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		SyncInterval: 300 * time.Millisecond,
		Meta:         Meta{Region: "r1"},
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// add starts a node; join lists the nodes to join (nil: the first node).
func (c *testCluster) add(name string, mutate func(*Config)) *testNode {
	c.t.Helper()
	dir := c.t.TempDir()
	return c.start(name, dir, mutate)
}

func (c *testCluster) start(name, dir string, mutate func(*Config)) *testNode {
	c.t.Helper()
	st, err := store.Open(filepath.Join(dir, "regional.db"), store.Options{Node: name, Clock: hlc.NewClock(nil, time.Minute), NoSync: true})
	if err != nil {
		c.t.Fatal(err)
	}
	ft, err := NewFaultTransport(c.faults)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := fastConfig(name)
	cfg.Bind = ft.Addr()
	cfg.Transport = ft
	cfg.PeersFile = filepath.Join(dir, "peers.json")
	c.mu.Lock()
	if len(c.nodes) > 0 {
		cfg.Join = []string{c.nodes[0].tier.Addr()}
	}
	c.mu.Unlock()
	if mutate != nil {
		mutate(&cfg)
	}
	tier, err := New(cfg, st)
	if err != nil {
		st.Close()
		c.t.Fatal(err)
	}
	tier.Start()
	n := &testNode{name: name, dir: dir, store: st, tier: tier, ft: ft, cfg: cfg}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	c.t.Cleanup(func() { n.stop() })
	return n
}

func (n *testNode) stop() {
	if n.tier != nil {
		n.tier.Close()
		n.tier = nil
	}
	if n.store != nil {
		n.store.Close()
		n.store = nil
	}
}

func (n *testNode) put(t *testing.T, key string, fields ...string) {
	t.Helper()
	m := store.Mutation{Op: store.OpPut, Table: "machines", Key: key}
	for i, f := range fields {
		m.Fields = append(m.Fields, store.FieldValue{Num: uint32(i + 1), Value: []byte(f)})
	}
	if _, err := n.store.Apply(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing with cond's description of
// what did not converge.
func waitFor(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	waitfor.Until(t, timeout, "cluster", func() error {
		if ok, why := cond(); !ok {
			return errors.New(why)
		}
		return nil
	})
}

// converged reports whether the running nodes hold identical digests.
func converged(nodes ...*testNode) (bool, string) {
	var roots []string
	ok := true
	first := nodes[0].store.Stats().Root
	for _, n := range nodes {
		st := n.store.Stats()
		roots = append(roots, fmt.Sprintf("%s:%x rows=%v", n.name, st.Root[:4], st.Rows))
		if st.Root != first {
			ok = false
		}
	}
	return ok, strings.Join(roots, "; ")
}

func membersSee(n int, nodes ...*testNode) func() (bool, string) {
	return func() (bool, string) {
		var out []string
		ok := true
		for _, x := range nodes {
			a := x.tier.NumAlive()
			out = append(out, fmt.Sprintf("%s sees %d", x.name, a))
			if a != n {
				ok = false
			}
		}
		return ok, strings.Join(out, ", ")
	}
}

func TestWritesReachAllNodes(t *testing.T) {
	c := newCluster(t)
	var nodes []*testNode
	for i := 0; i < 5; i++ {
		nodes = append(nodes, c.add(fmt.Sprintf("n%d", i), nil))
	}
	waitFor(t, 10*time.Second, membersSee(5, nodes...))
	for i := 0; i < 50; i++ {
		nodes[i%5].put(t, fmt.Sprintf("k%02d", i), "v", fmt.Sprint(i))
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		for _, n := range nodes {
			if got := n.store.Stats().Rows["machines"]; got != 50 {
				return false, fmt.Sprintf("%s has %d rows", n.name, got)
			}
		}
		return converged(nodes...)
	})
}

func TestConcurrentWritesConvergeToLastWriter(t *testing.T) {
	c := newCluster(t)
	var nodes []*testNode
	for i := 0; i < 4; i++ {
		nodes = append(nodes, c.add(fmt.Sprintf("n%d", i), nil))
	}
	waitFor(t, 10*time.Second, membersSee(4, nodes...))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				m := store.Mutation{Op: store.OpPatch, Table: "machines", Key: "hot", Fields: []store.FieldValue{{Num: uint32(1 + i%2), Value: []byte(fmt.Sprintf("%s-%d", n.name, j))}}}
				if j == 0 {
					m.Op = store.OpPut
				}
				n.store.Apply(context.Background(), m)
			}
		}()
	}
	wg.Wait()
	waitFor(t, 10*time.Second, func() (bool, string) { return converged(nodes...) })
	// Every replica shows, per field, the value with the greatest stamp.
	want, _ := nodes[0].store.Get("machines", "hot")
	for _, n := range nodes[1:] {
		got, _ := n.store.Get("machines", "hot")
		if !got.Equal(want) {
			t.Fatalf("%s holds %+v, n0 holds %+v", n.name, got, want)
		}
	}
}

func TestPartitionHealConverges(t *testing.T) {
	c := newCluster(t)
	var nodes []*testNode
	for i := 0; i < 6; i++ {
		nodes = append(nodes, c.add(fmt.Sprintf("n%d", i), nil))
	}
	waitFor(t, 10*time.Second, membersSee(6, nodes...))
	left, right := nodes[:3], nodes[3:]
	addrs := func(ns []*testNode) (out []string) {
		for _, n := range ns {
			out = append(out, n.ft.Addr())
		}
		return out
	}
	c.faults.Partition(addrs(left), addrs(right))
	// Let failure detection declare the other side dead: memberlist never
	// probes dead nodes again, so only the tier's reconnect loop can heal
	// this.
	waitFor(t, 20*time.Second, membersSee(3, nodes...))
	for i := 0; i < 30; i++ {
		left[i%3].put(t, fmt.Sprintf("L%02d", i), "left")
		right[i%3].put(t, fmt.Sprintf("R%02d", i), "right")
		// Both sides write the same rows too: LWW must pick one everywhere.
		left[i%3].put(t, fmt.Sprintf("S%02d", i), "from-left")
		right[i%3].put(t, fmt.Sprintf("S%02d", i), "from-right")
	}
	waitFor(t, 10*time.Second, func() (bool, string) { return converged(left...) })
	waitFor(t, 10*time.Second, func() (bool, string) { return converged(right...) })
	if ok, _ := converged(left[0], right[0]); ok {
		t.Fatal("the partition leaked: both sides already agree")
	}
	c.faults.Heal()
	waitFor(t, 20*time.Second, func() (bool, string) {
		if ok, why := converged(nodes...); !ok {
			return false, why
		}
		n := nodes[0].store.Stats().Rows["machines"]
		return n == 90, fmt.Sprintf("rows %d, want 90", n)
	})
}

func TestRestartedAndFreshNodesCatchUp(t *testing.T) {
	c := newCluster(t)
	a, b, x := c.add("a", nil), c.add("b", nil), c.add("x", nil)
	waitFor(t, 10*time.Second, membersSee(3, a, b, x))
	a.put(t, "before", "1")
	waitFor(t, 10*time.Second, func() (bool, string) { return converged(a, b, x) })
	// x stops; writes go on; x restarts from its data dir with no join
	// list: it must rejoin through its persisted peers and catch up.
	x.tier.savePeers()
	dir := x.dir
	x.stop()
	for i := 0; i < 20; i++ {
		a.put(t, fmt.Sprintf("while-down-%d", i), "v")
	}
	x2 := c.start("x", dir, func(cfg *Config) { cfg.Join = nil })
	fresh := c.add("fresh", nil)
	waitFor(t, 15*time.Second, func() (bool, string) {
		if ok, why := converged(a, b, x2, fresh); !ok {
			return false, why
		}
		n := fresh.store.Stats().Rows["machines"]
		return n == 21, fmt.Sprintf("fresh has %d rows, want 21", n)
	})
}

func TestWrongKeyOrLabelNeverExchangesRows(t *testing.T) {
	key1 := []byte("0123456789abcdef")
	key2 := []byte("fedcba9876543210")
	c := newCluster(t)
	a := c.add("a", func(cfg *Config) { cfg.Keys = [][]byte{key1} })
	b := c.add("b", func(cfg *Config) { cfg.Keys = [][]byte{key1} })
	waitFor(t, 10*time.Second, membersSee(2, a, b))
	wrongKey := c.add("wrong-key", func(cfg *Config) { cfg.Keys = [][]byte{key2} })
	wrongLabel := c.add("wrong-label", func(cfg *Config) { cfg.Keys = [][]byte{key1}; cfg.Region = "r2" })
	noKey := c.add("no-key", nil)
	a.put(t, "secret", "v")
	wrongKey.put(t, "injected", "v")
	wrongLabel.put(t, "injected2", "v")
	noKey.put(t, "injected3", "v")
	// Give gossip and several sync rounds a chance, then check nothing
	// crossed either way.
	waitFor(t, 10*time.Second, func() (bool, string) {
		n := b.store.Stats().Rows["machines"]
		return n == 1, fmt.Sprintf("b has %d rows", n)
	})
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range []*testNode{wrongKey, wrongLabel, noKey} {
			if _, err := n.store.Get("machines", "secret"); err == nil {
				t.Fatalf("%s got a row from the keyed cluster", n.name)
			}
			if n.tier.NumAlive() != 1 {
				t.Fatalf("%s joined the keyed cluster: sees %d members", n.name, n.tier.NumAlive())
			}
		}
		for _, n := range []*testNode{a, b} {
			if got := n.store.Stats().Rows["machines"]; got != 1 {
				t.Fatalf("%s has %d rows: an outsider injected one", n.name, got)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBadMessagesAreRejectedAndCounted(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", nil)
	d := (*delegate)(a.tier)
	future := store.Stamp{HLC: hlc.New(time.Now().Add(time.Hour).UnixMilli(), 0), Node: 9}
	good := encodeMessage(&changesMsg{header: header{Type: msgChanges, Sender: "peer"}, Changes: []store.Change{
		{Table: "machines", Key: "k", Row: store.Row{CL: 1, Stamp: future, Fields: []store.Field{{Num: 1, Stamp: future, Value: []byte("x")}}}},
	}})
	for _, b := range [][]byte{
		nil,
		{0xff},
		{byte(msgChanges)},
		good[:len(good)-3],                      // truncated
		append(append([]byte{}, good...), 0, 0), // trailing bytes
		good,                                    // clock drift: an hour ahead
	} {
		d.NotifyMsg(b)
	}
	waitFor(t, 5*time.Second, func() (bool, string) {
		m := testutil.ToFloat64(a.tier.m.rejected.WithLabelValues(Regional, "malformed"))
		dr := testutil.ToFloat64(a.tier.m.rejected.WithLabelValues(Regional, "clock_drift"))
		return m == 5 && dr == 1, fmt.Sprintf("malformed=%v clock_drift=%v", m, dr)
	})
	if st := a.store.Stats(); st.Seq != 0 {
		t.Fatalf("a bad message changed the store: %+v", st)
	}
}

func TestAcceptRejectsBeforeStoring(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", nil)
	b := c.add("b", func(cfg *Config) {
		cfg.Accept = func(ch store.Change, from string) error {
			if ch.Table != "machines" {
				return fmt.Errorf("unknown table %q", ch.Table)
			}
			return nil
		}
	})
	waitFor(t, 10*time.Second, membersSee(2, a, b))
	if _, err := a.store.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "bogus", Key: "k", Fields: []store.FieldValue{{Num: 1, Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	a.put(t, "ok", "v")
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, err := b.store.Get("machines", "ok")
		rej := testutil.ToFloat64(b.tier.m.rejected.WithLabelValues(Regional, "contract"))
		return err == nil && rej >= 1, fmt.Sprintf("ok row err=%v, rejected=%v", err, rej)
	})
	if _, err := b.store.GetAny("bogus", "k"); err == nil {
		t.Fatal("a change the contract refused was stored")
	}
}

// TestAntiEntropyRepairsOnlyWhatDiffers checks an exchange between nodes
// in sync costs a few KB and that a node that missed k writes receives
// about k rows, not the table.
func TestAntiEntropyRepairsOnlyWhatDiffers(t *testing.T) {
	c := newCluster(t)
	slow := func(cfg *Config) { cfg.SyncInterval = time.Hour } // exchanges only when the test asks
	a := c.add("a", slow)
	b := c.add("b", slow)
	waitFor(t, 10*time.Second, membersSee(2, a, b))
	var muts []store.Mutation
	for i := 0; i < 5000; i++ {
		muts = append(muts, store.Mutation{Op: store.OpPut, Table: "machines", Key: fmt.Sprintf("m%05d", i), Fields: []store.FieldValue{{Num: 1, Value: []byte("v")}}})
	}
	// Load both stores directly, as if long in sync: a's writes are not
	// gossiped (subscription closed), b gets them by Repair (never gossiped).
	a.tier.commits.Close()
	if _, err := a.store.Apply(context.Background(), muts...); err != nil {
		t.Fatal(err)
	}
	var changes []store.Change
	rows, _, _ := a.store.List("machines", "", 0)
	for _, r := range rows {
		changes = append(changes, store.Change{Table: "machines", Key: r.Key, Row: r.Row})
	}
	if _, _, err := b.store.Repair(context.Background(), changes); err != nil {
		t.Fatal(err)
	}
	if ok, why := converged(a, b); !ok {
		t.Fatal(why)
	}
	// Exchanges started by the join (catch-up, members greeting a
	// newcomer) are over once both are ready; drop their results.
	waitFor(t, 10*time.Second, func() (bool, string) {
		ea, eb := a.tier.Ready(), b.tier.Ready()
		return ea == nil && eb == nil, fmt.Sprintf("a: %v, b: %v", ea, eb)
	})
	for len(a.tier.syncDone) > 0 {
		<-a.tier.syncDone
	}
	sent0, _ := a.tier.m.WireBytes()
	a.tier.SyncWith("b")
	r := <-a.tier.syncDone
	sent1, _ := a.tier.m.WireBytes()
	if !r.InSync {
		t.Fatalf("in-sync exchange reported %+v", r)
	}
	if cost := sent1 - sent0; cost > 8<<10 {
		t.Fatalf("in-sync exchange sent %d bytes, want ≤ 8 KiB", cost)
	}
	// b misses k writes.
	const k = 7
	for i := 0; i < k; i++ {
		k := fmt.Sprintf("m%05d", i*701)
		if _, err := a.store.Apply(context.Background(), store.Mutation{Op: store.OpPatch, Table: "machines", Key: k, Fields: []store.FieldValue{{Num: 1, Value: []byte("new")}}}); err != nil {
			t.Fatal(err)
		}
	}
	b.tier.SyncWith("a")
	waitFor(t, 5*time.Second, func() (bool, string) { return converged(a, b) })
	// a ships the k rows b lacks; b ships back its older versions of the
	// same rows (their hashes differ), which a merges as no-ops.
	shipped := testutil.ToFloat64(a.tier.m.synced.WithLabelValues(Regional, "sent"))
	if shipped < k || shipped > k {
		t.Fatalf("repair of %d missed writes shipped %v rows from a", k, shipped)
	}
}
