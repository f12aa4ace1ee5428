package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/internal/testenv"
)

// benchNode is a node with the default regional settings (as agent.toml
// defaults: gossip every 100ms to 4 nodes, probe 1s/500ms), its store not
// fsyncing.
func benchNode(b *testing.B, name string, join string) *Tier {
	return throughputNode(b, name, join, true, false)
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func waitMembers(b *testing.B, n int, alive func() []int) {
	waitMembersOr(b, n, alive, true)
}

// waitMembersOr waits up to a minute for every node to see n alive
// members. When that does not happen it fails the benchmark if strict, or
// else reports the smallest view as min_view and goes on: with 64 nodes on
// 2 shared cores, probes can time out and a view lag behind for a while.
func waitMembersOr(b *testing.B, n int, alive func() []int, strict bool) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := true
		for _, a := range alive() {
			if a != n {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if strict {
				b.Fatalf("cluster of %d did not form: %v", n, alive())
			}
			b.ReportMetric(float64(slices.Min(alive())), "min_view")
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkPropagation measures how long a write on one node takes to be
// committed on every other node of an N-node region, with the default
// regional settings over loopback, and compares it with bare memberlist
// broadcast (re-queued on first receipt, same settings, same N) as the
// floor. Each iteration is 20 writes from random nodes, 100ms apart.
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{16, 32, 64} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			strata := propagationStrata(b, n)
			bare := propagationBare(b, n)
			b.ReportMetric(float64(percentile(strata, 0.50).Milliseconds()), "p50_ms")
			b.ReportMetric(float64(percentile(strata, 0.99).Milliseconds()), "p99_ms")
			b.ReportMetric(float64(percentile(bare, 0.50).Milliseconds()), "bare_p50_ms")
			b.ReportMetric(float64(percentile(bare, 0.99).Milliseconds()), "bare_p99_ms")
			b.ReportMetric(float64(percentile(strata, 0.99))/float64(percentile(bare, 0.99)), "p99_ratio")
		})
	}
}

// propagationStrata measures from a write's submission to its appearance
// in every other node's change feed (as a watch sees it).
func propagationStrata(b *testing.B, n int) []time.Duration {
	nodes := []*Tier{benchNode(b, "n0", "")}
	for i := 1; i < n; i++ {
		nodes = append(nodes, benchNode(b, fmt.Sprintf("n%d", i), nodes[0].Addr()))
	}
	waitMembersOr(b, n, func() (out []int) {
		for _, t := range nodes {
			out = append(out, t.NumAlive())
		}
		return out
	}, false)
	stop := make(chan struct{})
	defer close(stop)
	var watches []*feedWatch
	for _, t := range nodes {
		watches = append(watches, watchFeed(b, t.store, stop))
	}
	writes := 20 * b.N
	sent := map[string]time.Time{}
	writer := map[string]int{}
	b.ResetTimer()
	for i := 0; i < writes; i++ {
		w := rand.N(n)
		key := fmt.Sprintf("w%d", i)
		sent[key], writer[key] = time.Now(), w
		if _, err := nodes[w].store.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "machines", Key: key, Fields: []store.FieldValue{{Num: 1, Value: []byte("v")}}}); err != nil {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	collect := func() (lat []time.Duration) {
		for i, w := range watches {
			w.mu.Lock()
			for k, t0 := range sent {
				if d, ok := w.seen[k]; ok && writer[k] != i {
					lat = append(lat, d.Sub(t0))
				}
			}
			w.mu.Unlock()
		}
		return lat
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(collect()) < writes*(n-1) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	return withMissed(b, "missed", collect(), writes*(n-1))
}

// bareDelegate is memberlist with nothing but broadcast: a message is
// re-queued on first receipt, as strata does.
type bareDelegate struct {
	q    *memberlist.TransmitLimitedQueue
	mu   *sync.Mutex
	seen map[string]bool
	sent map[string]time.Time
	lat  *[]time.Duration
}

func (d *bareDelegate) NodeMeta(int) []byte { return nil }
func (d *bareDelegate) NotifyMsg(b []byte) {
	id := string(b)
	now := time.Now()
	d.mu.Lock()
	first := !d.seen[id]
	d.seen[id] = true
	if first {
		if t0, ok := d.sent[id]; ok {
			*d.lat = append(*d.lat, now.Sub(t0))
		}
	}
	d.mu.Unlock()
	if first {
		d.q.QueueBroadcast(broadcastMsg(append([]byte(nil), b...)))
	}
}
func (d *bareDelegate) GetBroadcasts(o, l int) [][]byte { return d.q.GetBroadcasts(o, l) }
func (d *bareDelegate) LocalState(bool) []byte          { return nil }
func (d *bareDelegate) MergeRemoteState([]byte, bool)   {}

func propagationBare(b *testing.B, n int) []time.Duration {
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var lat []time.Duration
	var mls []*memberlist.Memberlist
	var dels []*bareDelegate
	for i := 0; i < n; i++ {
		c := memberlist.DefaultLANConfig()
		c.Name = fmt.Sprintf("bare%d", i)
		c.BindAddr, c.BindPort = "127.0.0.1", 0
		c.GossipInterval, c.GossipNodes = 100*time.Millisecond, 4
		c.ProbeInterval, c.ProbeTimeout = time.Second, 500*time.Millisecond
		c.Logger = log.New(io.Discard, "", 0)
		d := &bareDelegate{mu: &mu, seen: map[string]bool{}, sent: sent, lat: &lat}
		c.Delegate = d
		ml, err := memberlist.Create(c)
		if err != nil {
			b.Fatal(err)
		}
		d.q = &memberlist.TransmitLimitedQueue{NumNodes: ml.NumMembers, RetransmitMult: c.RetransmitMult}
		if i > 0 {
			if _, err := ml.Join([]string{mls[0].LocalNode().Address()}); err != nil {
				b.Fatal(err)
			}
		}
		mls = append(mls, ml)
		dels = append(dels, d)
		b.Cleanup(func() { ml.Shutdown() })
	}
	waitMembersOr(b, n, func() (out []int) {
		for _, ml := range mls {
			out = append(out, ml.NumMembers())
		}
		return out
	}, false)
	writes := 20 * b.N
	for i := 0; i < writes; i++ {
		j := rand.N(n)
		id := fmt.Sprintf("w%d-%s", i, "x") // same size class as a small change
		mu.Lock()
		sent[id] = time.Now()
		dels[j].seen[id] = true
		mu.Unlock()
		dels[j].q.QueueBroadcast(broadcastMsg([]byte(id)))
		time.Sleep(100 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := len(lat)
		mu.Unlock()
		if got >= writes*(n-1) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	return withMissed(b, "bare_missed", lat, writes*(n-1))
}

// withMissed counts deliveries gossip did not make within the 10s window
// (anti-entropy repairs those later) as taking the whole window, so that
// percentiles never flatter, and reports how many there were.
func withMissed(b *testing.B, metric string, lat []time.Duration, want int) []time.Duration {
	out := slices.Clone(lat)
	for len(out) < want {
		out = append(out, 10*time.Second)
	}
	b.ReportMetric(float64(want-len(lat)), metric)
	return out
}

// BenchmarkAntiEntropyInSync measures the bytes one exchange between two
// replicas holding the same rows puts on the wire (both directions, as
// counted by the initiator's transport), for 100,000 and 1,000,000 rows.
func BenchmarkAntiEntropyInSync(b *testing.B) {
	for _, rows := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			a := benchNode(b, "a", "")
			c := benchNode(b, "c", a.Addr())
			waitMembers(b, 2, func() []int { return []int{a.NumAlive(), c.NumAlive()} })
			a.commits.Close()
			c.commits.Close()
			const batch = 10_000
			for i := 0; i < rows; i += batch {
				muts := make([]store.Mutation, 0, batch)
				for j := i; j < i+batch; j++ {
					muts = append(muts, store.Mutation{Op: store.OpPut, Table: "machines", Key: fmt.Sprintf("m%08d", j),
						Fields: []store.FieldValue{{Num: 1, Value: []byte("value-of-about-forty-bytes-xxxxxxxxxxxxx")}}})
				}
				if _, err := a.store.Apply(context.Background(), muts...); err != nil {
					b.Fatal(err)
				}
				var changes []store.Change
				rs, _, _ := a.store.List("machines", fmt.Sprintf("m%08d", i-1), batch)
				for _, r := range rs {
					changes = append(changes, store.Change{Table: "machines", Key: r.Key, Row: r.Row})
				}
				if _, _, err := c.store.Repair(context.Background(), changes); err != nil {
					b.Fatal(err)
				}
			}
			if a.store.Stats().Root != c.store.Stats().Root {
				b.Fatal("replicas differ before the exchange")
			}
			b.ResetTimer()
			var total int64
			for i := 0; i < b.N; i++ {
				for len(a.syncDone) > 0 { // results of background exchanges during the load
					<-a.syncDone
				}
				s0, r0 := a.m.WireBytes()
				a.SyncWith("c")
				res := <-a.syncDone
				s1, r1 := a.m.WireBytes()
				if !res.InSync {
					b.Fatalf("exchange found differences: %+v", res)
				}
				total += (s1 - s0) + (r1 - r0)
			}
			b.ReportMetric(float64(total)/float64(b.N), "wire_bytes/exchange")
		})
	}
}

// BenchmarkRepairAfterPartition cuts one node of an 8-node region off
// while k writes happen elsewhere, heals, and measures how long the node
// takes to be whole again (sync interval 1s), how many rows anti-entropy
// shipped and how many the push path's repair brought.
func BenchmarkRepairAfterPartition(b *testing.B) {
	const n, k = 8, 200
	faults := NewFaults()
	var nodes []*Tier
	var addrs []string
	for i := 0; i < n; i++ {
		st, err := store.Open(filepath.Join(b.TempDir(), "r.db"), store.Options{Node: fmt.Sprint(i), Clock: hlc.NewClock(nil, time.Minute), NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		ft, _ := NewFaultTransport(faults)
		cfg := Config{Node: fmt.Sprintf("n%d", i), Tier: Regional, Cluster: "bench", Region: "r1", Bind: ft.Addr(), Transport: ft,
			GossipInterval: 100 * time.Millisecond, GossipNodes: 4, ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond,
			SyncInterval: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if i > 0 {
			cfg.Join = []string{nodes[0].Addr()}
		}
		t, err := New(cfg, st)
		if err != nil {
			b.Fatal(err)
		}
		t.Start()
		b.Cleanup(func() { t.Close(); st.Close() })
		nodes = append(nodes, t)
		addrs = append(addrs, ft.Addr())
	}
	waitMembers(b, n, func() (out []int) {
		for _, t := range nodes {
			out = append(out, t.NumAlive())
		}
		return out
	})
	lone := nodes[n-1]
	var total time.Duration
	var shipped, byRepair float64
	for it := 0; it < b.N; it++ {
		faults.Partition(addrs[n-1:], addrs[:n-1])
		for i := 0; i < k; i++ {
			key := fmt.Sprintf("it%d-k%d", it, i)
			if _, err := nodes[i%(n-1)].store.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "machines", Key: key, Fields: []store.FieldValue{{Num: 1, Value: []byte("v")}}}); err != nil {
				b.Fatal(err)
			}
		}
		// Wait until gossip of the writes has died out among the others
		// (every broadcast queue empty); then heal. The lone node is
		// repaired by the push path's announcements or by anti-entropy,
		// whichever comes first.
		for quiet := false; !quiet; {
			quiet = true
			for _, t := range nodes {
				if t.queue.NumQueued() > 0 {
					quiet = false
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		received := func() float64 { return testutil.ToFloat64(lone.m.synced.WithLabelValues(Regional, "received")) }
		m0 := received()
		r0 := arrivals(lone)[pathRepair]
		want := nodes[0].store.Stats().Root
		faults.Heal()
		healed := time.Now()
		for lone.store.Stats().Root != want {
			if time.Since(healed) > 30*time.Second {
				b.Fatal("lone node not repaired within 30s of the heal")
			}
			time.Sleep(10 * time.Millisecond)
		}
		total += time.Since(healed)
		shipped += received() - m0
		byRepair += arrivals(lone)[pathRepair] - r0
	}
	b.ReportMetric(byRepair/float64(b.N), "rows_by_push_repair")
	b.ReportMetric(total.Seconds()/float64(b.N), "s_to_whole")
	b.ReportMetric(shipped/float64(b.N), "rows_repaired")
	b.ReportMetric(float64(k), "writes_missed")
}

// throughputNode is a node of BenchmarkRegionThroughput: default regional
// settings, its store fsyncing every commit unless noSync.
func throughputNode(b *testing.B, name, join string, noSync, gossipOnly bool) *Tier {
	b.Helper()
	st, err := store.Open(filepath.Join(b.TempDir(), "r.db"), store.Options{Node: name, Clock: hlc.NewClock(nil, time.Minute), NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	ft, err := NewFaultTransport(NewFaults())
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Node: name, Tier: Regional, Cluster: "bench", Region: "r1", Bind: ft.Addr(), Transport: ft,
		GossipInterval: 100 * time.Millisecond, GossipNodes: 4, ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond,
		SyncInterval: 10 * time.Second, Meta: Meta{Region: "r1"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if join != "" {
		cfg.Join = []string{join}
	}
	if gossipOnly {
		cfg.Meta.Proto = []int{protoGossip, protoGossip} // as nodes before the push path
	}
	// Push settings other than the defaults, to compare them in one run.
	cfg.Push.BatchDelay = time.Duration(testenv.Int(b, "STRATA_BENCH_PUSH_DELAY_US", 0)) * time.Microsecond
	cfg.Push.Fanout = int(testenv.Int(b, "STRATA_BENCH_PUSH_FANOUT", 0))
	cfg.Push.GraftTimeout = time.Duration(testenv.Int(b, "STRATA_BENCH_GRAFT_MS", 0)) * time.Millisecond
	t, err := New(cfg, st)
	if err != nil {
		b.Fatal(err)
	}
	t.Start()
	b.Cleanup(func() { t.Close(); st.Close() })
	return t
}

// machineRow is a machine-like row of about 150 bytes.
var machineRow = []store.FieldValue{{Num: 1, Value: []byte("\x0a\x0bm-000000000")}, {Num: 2, Value: []byte("\x12\x03web")},
	{Num: 3, Value: []byte{0x18, 1}}, {Num: 4, Value: []byte{0x20, 1}}, {Num: 5, Value: []byte("\x2a\x30host-ord-rack17-unit-42.internal.example.net.xx")},
	{Num: 6, Value: []byte("\x32\x0c10.17.42.199")}}

// feedWatch follows a store's change feed, as a watch does, and records
// when each key first appears.
type feedWatch struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func watchFeed(b *testing.B, st *store.Store, stop <-chan struct{}) *feedWatch {
	w := &feedWatch{seen: map[string]time.Time{}}
	pos := st.Seq()
	go func() {
		for {
			ch := st.Changed()
			for {
				evs, next, err := st.FeedSince(pos, "machines", 10_000)
				if err != nil {
					return
				}
				now := time.Now()
				w.mu.Lock()
				for _, ev := range evs {
					if _, ok := w.seen[ev.Key]; !ok {
						w.seen[ev.Key] = now
					}
				}
				w.mu.Unlock()
				if next == pos {
					break
				}
				pos = next
			}
			select {
			case <-ch:
			case <-stop:
				return
			}
		}
	}()
	return w
}

// BenchmarkRegionThroughput drives writes at a fixed rate into a region
// over loopback and measures, with a change-feed watch on every node, how
// long each write takes from its commit on the writer (its appearance in
// the writer's feed) to its appearance in a receiver's feed (propagation,
// p50_ms and p99_ms), and from its submission (e2e_p99_ms, which adds the
// writer's own group commit, ack_p99_ms); how many writes arrive later
// than 1 s after submission, how each row arrived at the receivers (push or gossip,
// repair, anti-entropy) and the bytes all nodes put on the wire per change
// per receiving node (the floor is a change's own size, sent once to each
// node).
//
//   - nodes=3: every write on n0, the propagation measured at n2; the
//     stores fsync every commit as the agent does, or not (fsync=off: the
//     dissemination path alone, without the disk);
//   - nodes=16: writes spread over all nodes, measured at every node,
//     stores without fsync (16 bbolt files on one disk would measure the
//     disk);
//   - path=gossip: every node advertises protocol 1 only, so changes ride
//     memberlist's gossip as before the push path: today's figures, in the
//     same run.
//
// Each run lasts `secs` seconds of writes, then waits up to 15 s (more
// than one anti-entropy interval) for stragglers; a write that never
// arrives counts as 15 s and is reported as missed.
func BenchmarkRegionThroughput(b *testing.B) {
	type tc struct {
		nodes, rate, secs int
		noSync, gossip    bool
	}
	var cases []tc
	for _, rate := range []int{200, 1000, 5000} {
		cases = append(cases, tc{3, rate, 5, false, false}, tc{3, rate, 5, true, false})
	}
	cases = append(cases, tc{3, 200, 10, false, true}, tc{3, 1000, 5, false, true})
	for _, rate := range []int{250, 500, 1000, 2000, 4000} {
		cases = append(cases, tc{16, rate, 5, true, false})
	}
	cases = append(cases, tc{16, 1000, 5, true, true})
	for _, c := range cases {
		name := fmt.Sprintf("nodes=%d/rate=%d", c.nodes, c.rate)
		if c.noSync {
			name += "/fsync=off"
		}
		if c.gossip {
			name += "/path=gossip"
		} else {
			name += "/path=push"
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				regionThroughput(b, c.nodes, c.rate, c.secs, c.noSync, c.gossip)
			}
		})
	}
}

func regionThroughput(b *testing.B, n, rate, secs int, noSync, gossipOnly bool) {
	spread := n > 3
	nodes := []*Tier{throughputNode(b, "n0", "", noSync, gossipOnly)}
	for i := 1; i < n; i++ {
		nodes = append(nodes, throughputNode(b, fmt.Sprintf("n%d", i), nodes[0].Addr(), noSync, gossipOnly))
	}
	waitMembers(b, n, func() (out []int) {
		for _, t := range nodes {
			out = append(out, t.NumAlive())
		}
		return out
	})
	// A region is measured once its nodes have caught up (each finished
	// its first anti-entropy exchange, as a node does before it reports
	// ready), not while the joins' exchanges still run.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var waiting []string
		for _, t := range nodes {
			if t.Ready() != nil {
				waiting = append(waiting, t.cfg.Node)
			}
		}
		if len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("nodes not ready a minute after the region formed: %v", waiting)
		}
	}
	stop := make(chan struct{})
	defer close(stop)
	// Every node's feed is watched: a write's commit time is when it shows
	// in its writer's feed, and it arrives when it shows in a receiver's.
	receivers := []int{2}
	if spread {
		receivers = nil
		for i := range nodes {
			receivers = append(receivers, i)
		}
	}
	var watches []*feedWatch
	for _, t := range nodes {
		watches = append(watches, watchFeed(b, t.store, stop))
	}
	var before []map[string]float64
	for _, r := range receivers {
		before = append(before, arrivals(nodes[r]))
	}
	var overlay0 []map[string]float64
	for _, t := range nodes {
		overlay0 = append(overlay0, overlayCounts(t))
	}
	var s0 int64
	for _, t := range nodes {
		s, _ := t.m.WireBytes()
		s0 += s
	}

	var commits0 uint64
	for _, t := range nodes {
		commits0 += t.store.Stats().Commits
	}
	cpu0 := processCPU()
	// Writes are paced by a 1 ms ticker; each is its own Apply call (its
	// own acknowledged write), issued concurrently so the store groups
	// them as it groups clients' writes.
	var mu sync.Mutex
	sent := map[string]time.Time{}
	writer := map[string]int{}
	var acks []time.Duration // submission to acknowledgement on the writer
	var wg sync.WaitGroup
	total := rate * secs
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	issued := 0
	for issued < total {
		now := <-tick.C
		due := min(total, int(float64(rate)*now.Sub(start).Seconds()))
		for ; issued < due; issued++ {
			key := fmt.Sprintf("m-%07d", issued)
			w := 0
			if spread {
				w = issued % n
			}
			mu.Lock()
			sent[key] = time.Now()
			writer[key] = w
			mu.Unlock()
			wg.Add(1)
			go func(t *Tier, key string, t0 time.Time) {
				defer wg.Done()
				if _, err := t.store.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "machines", Key: key, Fields: machineRow}); err != nil {
					b.Error(err)
				}
				d := time.Since(t0)
				mu.Lock()
				acks = append(acks, d)
				mu.Unlock()
			}(nodes[w], key, time.Now())
		}
	}
	tick.Stop()
	wg.Wait()
	elapsed := time.Since(start)

	// Wait for every receiver to see every write (or 15 s).
	want := 0
	for _, r := range receivers {
		for _, w := range writer {
			if w != r {
				want++
			}
		}
	}
	// A receiver's feed holds this run's keys only, its own writes
	// included (all acknowledged by now): counting is cheap, so the wait
	// costs the nodes under test little CPU.
	own := map[int]int{}
	for _, w := range writer {
		own[w]++
	}
	deadline := time.Now().Add(15 * time.Second)
	got := 0
	for {
		got = 0
		for _, r := range receivers {
			w := watches[r]
			w.mu.Lock()
			got += len(w.seen) - own[r]
			w.mu.Unlock()
		}
		if got >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cpu := processCPU() - cpu0
	var commits uint64
	for _, t := range nodes {
		commits += t.store.Stats().Commits
	}
	commits -= commits0
	var s1 int64
	for _, t := range nodes {
		s, _ := t.m.WireBytes()
		s1 += s
	}

	// Propagation: from the write's commit on its writer (in the writer's
	// feed) to its arrival in the receiver's feed. End to end: from its
	// submission on the writer. A write that never arrived counts as 15 s.
	var lat, e2e []time.Duration
	late := 0
	for _, w := range watches {
		w.mu.Lock()
	}
	for _, r := range receivers {
		for k, t0 := range sent {
			if writer[k] == r {
				continue
			}
			l, e := 15*time.Second, 15*time.Second
			if d, ok := watches[r].seen[k]; ok {
				e = d.Sub(t0)
				l = max(0, d.Sub(watches[writer[k]].seen[k]))
			}
			if e > time.Second {
				late++
			}
			lat = append(lat, l)
			e2e = append(e2e, e)
		}
	}
	for _, w := range watches {
		w.mu.Unlock()
	}
	by := map[string]float64{}
	for i, r := range receivers {
		for path, v := range arrivals(nodes[r]) {
			by[path] += v - before[i][path]
		}
	}
	ov := map[string]float64{}
	for i, t := range nodes {
		for k, v := range overlayCounts(t) {
			ov[k] += v - overlay0[i][k]
		}
	}
	// Per change per receiving node: pushed copies already seen, and
	// batches received; grafts in all.
	b.ReportMetric(ov["dups"]/float64(total*(n-1)), "dups/change/node")
	b.ReportMetric(ov["batches"]/float64(total*(n-1)), "batches/change/node")
	b.ReportMetric(ov["grafts"], "grafts")
	eager := 0.0
	for _, t := range nodes {
		eager += testutil.ToFloat64(t.m.bcast.peers.WithLabelValues(t.cfg.Tier, "eager"))
	}
	b.ReportMetric(eager/float64(n), "eager/node") // as last reconciled (each second)
	b.ReportMetric(float64(total)/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(percentile(e2e, 0.99).Microseconds())/1000, "e2e_p99_ms")
	b.ReportMetric(float64(percentile(acks, 0.99).Microseconds())/1000, "ack_p99_ms")
	b.ReportMetric(float64(late), "late")
	b.ReportMetric(float64(want-got), "missed")
	for _, path := range []string{"gossip", "push", "repair", "anti_entropy"} {
		if v, ok := by[path]; ok {
			b.ReportMetric(v, "rows_"+path)
		}
	}
	// The floor: each change's own encoding crossing to each other node once.
	floor := len(encodeMessage(&changesMsg{header: header{Type: msgChanges, Sender: "n0"}, Changes: []store.Change{{Table: "machines", Key: "m-0000000", Row: sampleRow()}}}))
	perChange := float64(s1-s0) / float64(total*(n-1))
	b.ReportMetric(perChange, "wire_B/change/node")
	b.ReportMetric(perChange/float64(floor), "x_floor")
	// CPU time of the whole process (every node, the writers and the
	// watches) per write, from the first write until every receiver had
	// every write: unlike the latencies it hardly depends on how much of
	// a shared machine the benchmark got.
	b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu_us/write")
	// Store transactions on all nodes per write: the writer's own commit
	// and the receivers' merges (a merge commits many changes at once).
	b.ReportMetric(float64(commits)/float64(total), "commits/write")
}

// overlayCounts reads a node's push overlay counters: duplicates,
// batches received, grafts.
func overlayCounts(t *Tier) map[string]float64 {
	b := t.m.bcast
	return map[string]float64{
		"dups":    testutil.ToFloat64(b.dups.WithLabelValues(t.cfg.Tier)),
		"batches": testutil.ToFloat64(b.batches.WithLabelValues(t.cfg.Tier, "received")),
		"grafts":  testutil.ToFloat64(b.repairs.WithLabelValues(t.cfg.Tier, "graft")),
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sampleRow is machineRow as a store row, for sizing.
func sampleRow() store.Row {
	r := store.Row{CL: 1}
	for _, f := range machineRow {
		r.Fields = append(r.Fields, store.Field{Num: f.Num, Value: f.Value, Stamp: store.Stamp{HLC: hlc.Timestamp(1) << 40, Node: store.NodeIDOf("n0")}})
	}
	return r
}

// BenchmarkIdleBytes measures the bytes a 16-node region with no writes
// puts on the wire per node per second (membership probes, gossip and
// push/pull), with the push path and, in the same run, with every node
// advertising protocol 1 only (gossip, as before the push path).
func BenchmarkIdleBytes(b *testing.B) {
	for _, gossipOnly := range []bool{false, true} {
		name := "path=push"
		if gossipOnly {
			name = "path=gossip"
		}
		b.Run(name, func(b *testing.B) {
			const n, secs = 16, 10
			nodes := []*Tier{throughputNode(b, "n0", "", true, gossipOnly)}
			for i := 1; i < n; i++ {
				nodes = append(nodes, throughputNode(b, fmt.Sprintf("n%d", i), nodes[0].Addr(), true, gossipOnly))
			}
			waitMembers(b, n, func() (out []int) {
				for _, t := range nodes {
					out = append(out, t.NumAlive())
				}
				return out
			})
			sent := func() (total int64) {
				for _, t := range nodes {
					s, _ := t.m.WireBytes()
					total += s
				}
				return total
			}
			// The join traffic has settled when two consecutive 2-second
			// windows send within 25% of each other (each window is a
			// measurement, not a wait for an event).
			settled := false
			for deadline, prev := time.Now().Add(30*time.Second), int64(-1); time.Now().Before(deadline); {
				a := sent()
				time.Sleep(2 * time.Second)
				rate := sent() - a
				if prev >= 0 && rate <= prev+prev/4 && rate >= prev-prev/4 {
					settled = true
					break
				}
				prev = rate
			}
			if !settled {
				b.Fatal("the join traffic did not settle within 30 s: two 2-second windows never sent within 25% of each other")
			}
			s0 := sent()
			start := time.Now()
			time.Sleep(secs * time.Second)
			s1 := sent()
			b.ReportMetric(float64(s1-s0)/time.Since(start).Seconds()/n, "sent_B/s/node")
		})
	}
}
