package cluster_test

// The convergence checker: a seeded, randomized run of writes, deletes,
// re-inserts and patches on random nodes of one region while the network
// partitions, loses and delays packets, nodes crash and restart and
// clocks are skewed; after healing, every replica must equal a model of
// the CRDT semantics. It uses only exported surfaces (cluster.New,
// cluster.Faults, store.Open, hlc.NewClock), so it keeps testing the
// same promise as the code beneath it changes.
//
// Environment (docs/RELIABILITY.md):
//
//	STRATA_CONVERGE_SEED   the first seed (default: random; a failure prints it)
//	STRATA_CONVERGE_SEEDS  how many seeds, one run each (default 1)
//	STRATA_CONVERGE_OPS    operations per seed (default 1000)

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/internal/testenv"
	"github.com/strata-state/strata/internal/waitfor"
)

const (
	convTable    = "machines"
	convKeys     = 40          // keys written: few, so that writes conflict
	convFields   = 3           // field numbers 1..3
	convDrift    = time.Minute // max_clock_drift of every node
	convNodes    = 4
	convConverge = 90 * time.Second // after healing, to converge
	// convTTL is every node's tombstone_ttl. The tier measures a node's
	// absence on the wall clock (time.Since its last exchange), so an
	// away phase really lasts this long; the tombstones' age is measured
	// on the nodes' skewable clocks, which the checker moves ahead.
	// 5 s is 16 sync intervals: the nodes that stay must never look
	// away themselves, even on a loaded machine (a node asked for a
	// snapshot by one that is away answers that it has none worth
	// taking when it looks away too, and when all do, the one back from
	// away falls back to anti-entropy, as a whole tier away must).
	convTTL = 5 * time.Second
	// convReapAge is the age, on the nodes' clocks, past which the
	// checker reaps tombstones. Longer than max_clock_drift, as
	// tombstone_ttl is in any real deployment (24 h against 1 min): a
	// node's clock set back within the drift must not stamp new writes
	// behind its peers' horizon.
	convReapAge = 10 * time.Minute
)

// fault kinds, one per phase of the run.
var faultKinds = []string{"none", "halves", "isolate", "asymmetric", "loss", "delay", "crash", "skew-within", "skew-beyond", "away-stopped", "away-partitioned"}

// TestConvergence runs the checker: STRATA_CONVERGE_SEEDS runs of
// STRATA_CONVERGE_OPS operations each.
func TestConvergence(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("runs a cluster for tens of seconds; .ci/run runs it without -race")
	}
	first := testenv.Int(t, "STRATA_CONVERGE_SEED", int64(rand.Uint32()))
	seeds := testenv.Int(t, "STRATA_CONVERGE_SEEDS", 1)
	ops := int(testenv.Int(t, "STRATA_CONVERGE_OPS", 1000))
	total := map[string]int{}
	for s := first; s < first+seeds; s++ {
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			w := newWorld(t, s, ops)
			w.run()
			for k, n := range w.faultCount {
				total[k] += n
			}
			t.Logf("seed %d: %d operations (%d acknowledged, %d with an outcome the model cannot pin and leaves out), faults %v, %d tombstones reaped, %d state transfers by nodes back from away, %d keys left out of the model (written anew while away, reaped by the others), converged in %v, %d keys checked on %d nodes",
				s, ops, w.acked, w.unpinned, w.faultCount, w.reapedRows, w.transfers, w.looseKeys, w.convergedIn.Round(time.Millisecond), len(w.model), len(w.nodes))
		})
	}
	t.Logf("%d seeds from %d, %d operations each; phases by fault kind: %v", seeds, first, ops, total)
}

// world is one run: the nodes, the network, the model.
type world struct {
	t      *testing.T
	seed   int64
	ops    int
	rng    *rand.Rand
	faults *cluster.Faults
	cuts   *oneWayCuts
	nodes  []*convNode
	// advance moves every node's clock: healing skew moves it past
	// every skewed stamp, as time passing would.
	advance atomic.Int64
	// awayNode is the node an away phase took away.
	awayNode *convNode

	model map[string][]delta
	// reaped marks keys whose tombstone the checker reaped: a row every
	// node must lack (or hold deleted) unless a later write brought it
	// back. A put on a node that lacks the row starts its history anew.
	reaped map[string]bool
	// awayWrites are the keys whose row the node away wrote anew (a put
	// on a row it did not hold alive) while away; loose the
	// keys whose outcome the model cannot pin since (see reapWhileAway):
	// the check requires only that replicas agree on them.
	awayWrites map[string]bool
	loose      map[string]bool
	// rejoining are the nodes back from an away phase: each takes no
	// client writes until it has taken its state transfer (as clients
	// asking /v1/health?ready=1 would not send it any), since the model
	// cannot pin the outcome of a write racing its store's replacement.
	// A node may still be rejoining when the next away phase ends.
	rejoining   map[*convNode]rejoin
	transfers   int64 // state transfers taken by rejoining nodes
	reapedRows  int   // tombstones reaped
	looseKeys   int   // keys left out of the model (see loose)
	acked       int
	unpinned    int
	faultCount  map[string]int
	history     []string // the last operations and faults, for a failure
	convergedIn time.Duration
}

// delta is the effect of one acknowledged write on its row: its causal
// length, and for a put or patch the fields it set, all with its stamp.
type delta struct {
	cl     uint64
	stamp  store.Stamp
	fields map[uint32][]byte
}

type convNode struct {
	w    *world
	name string
	dir  string
	skew atomic.Int64 // ns added to this node's clock
	// lastSynced is the store's LastSynced when the node was stopped.
	lastSynced time.Time
	st         *store.Store
	tier       *cluster.Tier
	addr       string // of the transport: for partitions
}

func newWorld(t *testing.T, seed int64, ops int) *world {
	w := &world{t: t, seed: seed, ops: ops, rng: rand.New(rand.NewPCG(uint64(seed), 0x5747)),
		faults: cluster.NewFaults(), cuts: &oneWayCuts{blocked: map[[2]string]bool{}},
		model: map[string][]delta{}, reaped: map[string]bool{}, rejoining: map[*convNode]rejoin{}, awayWrites: map[string]bool{}, loose: map[string]bool{}, faultCount: map[string]int{}}
	for i := range convNodes {
		n := &convNode{w: w, name: fmt.Sprintf("n%d", i), dir: t.TempDir()}
		w.nodes = append(w.nodes, n)
		n.start()
	}
	t.Cleanup(func() {
		for _, n := range w.nodes {
			n.stop()
		}
	})
	w.waitMembers()
	return w
}

// rejoin is a node's tier, and its state transfers, when it came back
// from away.
type rejoin struct {
	tier *cluster.Tier
	from int64
}

// fail reports a failure with the seed and how to replay it.
func (w *world) fail(format string, args ...any) {
	w.t.Helper()
	hist := w.history[max(0, len(w.history)-40):]
	if os.Getenv("STRATA_CONVERGE_TRACE") != "" {
		hist = w.history
	}
	w.t.Fatalf("seed %d: %s\nlast events:\n  %s\nreplay: STRATA_CONVERGE_SEED=%d STRATA_CONVERGE_OPS=%d go test -count=1 -run TestConvergence ./agent/cluster\n(the seed fixes the operations and faults; message timing still varies from run to run)",
		w.seed, fmt.Sprintf(format, args...), strings.Join(hist, "\n  "), w.seed, w.ops)
}

func (w *world) note(format string, args ...any) {
	w.history = append(w.history, fmt.Sprintf(format, args...))
}

func (n *convNode) now() time.Time {
	return time.Now().Add(time.Duration(n.w.advance.Load() + n.skew.Load()))
}

func (n *convNode) start() {
	w := n.w
	st, err := store.Open(filepath.Join(n.dir, "regional.db"), store.Options{Node: n.name, Clock: hlc.NewClock(n.now, convDrift), NoSync: true})
	if err != nil {
		w.t.Fatalf("seed %d: reopening %s: %v", w.seed, n.name, err)
	}
	ft, err := cluster.NewFaultTransport(w.faults)
	if err != nil {
		w.t.Fatal(err)
	}
	tr := &cutTransport{FaultTransport: ft, cuts: w.cuts}
	n.addr = ft.Addr()
	cfg := cluster.Config{
		Node: n.name, Tier: cluster.Regional, Cluster: "converge", Region: "r1",
		Bind: ft.Addr(), Transport: tr, PeersFile: filepath.Join(n.dir, "peers.json"),
		GossipInterval: 50 * time.Millisecond, GossipNodes: 3,
		ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		SyncInterval: 300 * time.Millisecond, TombstoneTTL: convTTL,
		Meta:   cluster.Meta{Region: "r1"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range w.nodes {
		if o != n && o.tier != nil {
			cfg.Join = append(cfg.Join, o.tier.Addr())
		}
	}
	tier, err := cluster.New(cfg, st)
	if err != nil {
		st.Close()
		w.t.Fatalf("seed %d: starting %s: %v", w.seed, n.name, err)
	}
	tier.Start()
	n.st, n.tier = st, tier
}

// stop closes the node's tier and store, as a crash that loses nothing
// acknowledged would (durability itself is the crash rounds' subject).
func (n *convNode) stop() {
	if n.tier != nil {
		n.tier.Close()
		n.tier = nil
	}
	if n.st != nil {
		n.lastSynced = n.st.LastSynced()
		n.st.Close()
		n.st = nil
	}
}

func (w *world) up() []*convNode {
	var up []*convNode
	for _, n := range w.nodes {
		if n.st != nil {
			up = append(up, n)
		}
	}
	return up
}

func (w *world) addrs(nodes []*convNode) []string {
	var a []string
	for _, n := range nodes {
		a = append(a, n.addr)
	}
	return a
}

func (w *world) run() {
	phaseLeft := 0
	var (
		crashed *convNode
		away    *convNode // of an away phase
		gap     time.Duration
	)
	for i := 0; i < w.ops; i++ {
		if phaseLeft == 0 {
			if away != nil {
				w.reapWhileAway(away)
				rj := rejoin{tier: away.tier}
				if away.tier != nil {
					rj.from = away.tier.Transfers()
				}
				w.rejoining[away] = rj
				away = nil
			}
			if crashed != nil {
				crashed.start()
				w.note("restart %s", crashed.name)
				crashed = nil
			}
			w.heal()
			kind := faultKinds[w.rng.IntN(len(faultKinds))]
			w.faultCount[kind]++
			crashed = w.inject(kind)
			if strings.HasPrefix(kind, "away-") {
				away = w.awayNode
			}
			phaseLeft = 50 + w.rng.IntN(150)
			// A phase lasts 0.3 to 2.5 s, long enough for failure
			// detection (probes every 200 ms) to declare nodes dead.
			gap = (300*time.Millisecond + time.Duration(w.rng.Int64N(int64(2200*time.Millisecond)))) / time.Duration(phaseLeft)
		}
		phaseLeft--
		w.operate()
		// The workload's pace, not a synchronisation: operations are
		// spread over the phase.
		time.Sleep(gap)
	}
	if away != nil {
		w.reapWhileAway(away)
		clear(w.rejoining)
	}
	if crashed != nil {
		crashed.start()
		w.note("restart %s", crashed.name)
	}
	w.heal()
	w.advance.Add(int64(3*convDrift + 10*time.Minute)) // past every skewed stamp
	w.note("healed; clocks moved 13 min ahead")
	start := time.Now()
	w.waitConverged()
	w.convergedIn = time.Since(start)
	if os.Getenv("STRATA_CONVERGE_TRACE") != "" {
		w.t.Logf("events:\n  %s", strings.Join(w.history, "\n  "))
	}
	w.check()
}

// inject starts a fault of the kind; it returns a node it crashed.
func (w *world) inject(kind string) (crashed *convNode) {
	nodes := slices.Clone(w.nodes)
	w.rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	switch kind {
	case "halves":
		w.faults.Partition(w.addrs(nodes[:len(nodes)/2]), w.addrs(nodes[len(nodes)/2:]))
		w.note("partition %v | %v", names(nodes[:len(nodes)/2]), names(nodes[len(nodes)/2:]))
	case "isolate":
		w.faults.Partition(w.addrs(nodes[:1]), w.addrs(nodes[1:]))
		w.note("isolate %s", nodes[0].name)
	case "asymmetric":
		w.cuts.cut(nodes[0].addr, w.addrs(nodes[1:]))
		w.note("cut %s -> others (one way)", nodes[0].name)
	case "loss":
		rate := 0.1 + 0.4*w.rng.Float64()
		w.faults.SetDrop(rate)
		w.note("drop %.0f%%", rate*100)
	case "delay":
		d := time.Duration(5+w.rng.IntN(60)) * time.Millisecond
		w.faults.SetDelay(d)
		w.note("delay %v", d)
	case "crash":
		nodes[0].stop()
		w.note("crash %s", nodes[0].name)
		return nodes[0]
	case "skew-within":
		d := time.Duration(w.rng.Int64N(int64(convDrift))) - convDrift/2
		nodes[0].skew.Store(int64(d))
		w.note("skew %s by %v (within drift)", nodes[0].name, d)
	case "skew-beyond":
		d := convDrift + time.Duration(w.rng.Int64N(int64(2*convDrift)))
		nodes[0].skew.Store(int64(d))
		w.note("skew %s by +%v (beyond drift)", nodes[0].name, d)
	case "away-stopped":
		// Away longer than tombstone_ttl, stopped: it comes back by a
		// restart, its last exchange older than the TTL.
		doomed := w.doom(nodes[0], nodes[1:])
		w.awayNode = nodes[0]
		clear(w.awayWrites)
		nodes[0].stop()
		w.note("stop %s for longer than tombstone_ttl", nodes[0].name)
		w.deleteAll(doomed, nodes[1:])
		return nodes[0]
	case "away-partitioned":
		// Away longer than tombstone_ttl, running: cut off, it keeps
		// taking writes; it comes back when the partition heals.
		doomed := w.doom(nodes[0], nodes[1:])
		w.awayNode = nodes[0]
		clear(w.awayWrites)
		w.faults.Partition(w.addrs(nodes[:1]), w.addrs(nodes[1:]))
		w.note("isolate %s for longer than tombstone_ttl", nodes[0].name)
		w.deleteAll(doomed, nodes[1:])
	}
	return nil
}

// doom writes a few rows no random operation touches, on the others,
// and waits until every node, x too, holds them: the rows x will hold alive while
// the others delete them and reap the tombstones. Being never written
// again, any of them x brings back stays back, and the check sees it.
func (w *world) doom(x *convNode, others []*convNode) []string {
	w.t.Helper()
	// A node skewed beyond the drift in the phase before still stamps
	// up to 3 min ahead (an HLC does not go back), and its peers refuse
	// that until their clocks catch up: move every clock past it, as
	// time passing would, so the rows reach x.
	w.advance.Add(int64(3 * convDrift))
	w.note("clocks moved %v ahead", 3*convDrift)
	var keys []string
	for i := range 4 {
		key := fmt.Sprintf("away%03d-%d", w.faultCount["away-stopped"]+w.faultCount["away-partitioned"], i)
		keys = append(keys, key)
		n := others[w.rng.IntN(len(others))]
		w.apply(n, store.Mutation{Op: store.OpPut, Table: convTable, Key: key,
			Fields: []store.FieldValue{{Num: 1, Value: []byte(fmt.Sprintf("%s/1/%x", n.name, w.rng.Uint32()))}}})
	}
	deadline := time.Now().Add(convConverge)
	for {
		// Every node, not x only: a delete on a node the put has not
		// reached yet would be refused, or, reached in between, not pinned.
		var missing []string
		for _, n := range w.up() {
			for _, key := range keys {
				if row, err := n.st.GetAny(convTable, key); err != nil || !row.Alive() {
					missing = append(missing, fmt.Sprintf("%s on %s (%v)", key, n.name, err))
				}
			}
		}
		if len(missing) == 0 {
			return keys
		}
		if time.Now().After(deadline) {
			w.fail("the rows %s will be away for are not on every node after %v: %v\n%s", x.name, convConverge, missing, w.apart(w.up()))
		}
		time.Sleep(waitfor.Interval)
	}
}

// deleteAll deletes the rows on random nodes of others.
func (w *world) deleteAll(keys []string, others []*convNode) {
	for _, key := range keys {
		w.apply(others[w.rng.IntN(len(others))], store.Mutation{Op: store.OpDelete, Table: convTable, Key: key})
	}
}

// reapWhileAway ends an away phase: it waits until x's last exchange is
// older than the TTL (on the wall clock, as the tier measures it) and
// the others have converged, moves every clock ahead by the reaping age
// (the time the tombstones age by) and reaps, on every node but x, the
// tombstones older than that, as the agent's reaper does: every delete
// made so far, x's own excepted. The rows x still holds alive but its peers
// deleted are now forgotten by the peers: when x is back, only a state
// transfer keeps them from coming back.
func (w *world) reapWhileAway(x *convNode) {
	w.t.Helper()
	waitfor.Until(w.t, convTTL+30*time.Second, fmt.Sprintf("seed %d: %s away longer than tombstone_ttl %v", w.seed, x.name, convTTL), func() error {
		last := x.lastSynced
		if x.st != nil {
			last = x.st.LastSynced()
		}
		if away := time.Since(last); away <= convTTL+50*time.Millisecond {
			return fmt.Errorf("last exchange %v ago", away.Round(time.Millisecond))
		}
		return nil
	})
	var others []*convNode
	for _, n := range w.nodes {
		if n != x && n.st != nil {
			others = append(others, n)
		}
	}
	// An HLC runs ahead of its wall clock by up to max_clock_drift (it
	// takes in peers' stamps up to that far ahead), so moving the clocks
	// by the reaping age plus the drift ages every tombstone past it (and
	// lets the others accept the stamps of a clock skewed beyond the
	// drift in an earlier phase).
	w.advance.Add(int64(convReapAge + convDrift))
	deadline := time.Now().Add(convConverge)
	for {
		err := sameRoots(others)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			w.fail("%v did not converge in %v while %s is away: %v\n%s", names(others), convConverge, x.name, err, w.apart(others))
		}
		time.Sleep(waitfor.Interval)
	}
	// The others have exchanged within the TTL (they would answer x's
	// request for a snapshot that they have none worth taking otherwise).
	waitfor.Until(w.t, convConverge, fmt.Sprintf("seed %d: %v have exchanged within half the TTL", w.seed, names(others)), func() error {
		for _, n := range others {
			if ago := time.Since(n.st.LastSynced()); ago > convTTL/2 {
				return fmt.Errorf("%s last exchanged %v ago", n.name, ago.Round(time.Millisecond))
			}
		}
		return nil
	})
	for _, n := range others {
		horizon := hlc.New(n.now().Add(-convReapAge).UnixMilli(), 0)
		reaped, err := n.st.Reap(context.Background(), horizon)
		if err != nil {
			w.fail("%s: reaping: %v", n.name, err)
		}
		if n == others[0] {
			w.reapedRows += reaped
		}
	}
	if err := sameRoots(others); err != nil {
		w.fail("reaping the same tombstones left different replicas: %v", err)
	}
	var gone, loose []string
	for key, ds := range w.model {
		if cl, _ := expected(ds); cl%2 == 1 || w.reaped[key] {
			continue // x's re-insert, or a row alive everywhere
		}
		if _, err := others[0].st.GetAny(convTable, key); !errors.Is(err, store.ErrNotFound) {
			continue
		}
		if w.awayWrites[key] {
			// x wrote the row anew while away and the others deleted it and
			// reaped the tombstone: x's state transfer keeps a write that
			// began a new life of the row (an own later write, which the
			// design keeps), while causal lengths would let the delete
			// win. Once the tombstone is gone the two cannot be ordered:
			// the model leaves the key out.
			w.loose[key] = true
			delete(w.model, key)
			loose = append(loose, key)
			continue
		}
		w.reaped[key] = true
		gone = append(gone, key)
	}
	clear(w.awayWrites)
	slices.Sort(gone)
	slices.Sort(loose)
	w.looseKeys += len(loose)
	w.note("clocks moved %v ahead; tombstones reaped on %v: %v; left out of the model, written anew by %s while away: %v", convReapAge+convDrift, names(others), gone, x.name, loose)
}

// sameRoots reports whether the nodes hold the same digest.
func sameRoots(nodes []*convNode) error {
	var roots []string
	same := true
	for _, n := range nodes {
		st := n.st.Stats()
		roots = append(roots, fmt.Sprintf("%s:%x rows=%d", n.name, st.Root[:6], st.Rows[convTable]))
		same = same && st.Root == nodes[0].st.Stats().Root
	}
	if !same {
		return errors.New(strings.Join(roots, "; "))
	}
	return nil
}

// heal ends every network fault and clock skew. A skewed clock set back
// does not move the node's HLC back: its later writes stay after those it
// made while ahead, as on a real host.
func (w *world) heal() {
	w.faults.Heal()
	w.faults.SetDrop(0)
	w.faults.SetDelay(0)
	w.cuts.heal()
	for _, n := range w.nodes {
		n.skew.Store(0)
	}
}

func names(nodes []*convNode) []string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.name)
	}
	return s
}

// operate makes one write on a random running node and records what it
// did in the model.
func (w *world) operate() {
	up := w.up()
	for x, rj := range w.rejoining {
		// A node restarted since counts its transfers from 0.
		if x.tier != nil && (x.tier != rj.tier && x.tier.Transfers() > 0 || x.tier.Transfers() > rj.from) {
			w.transfers++
			w.note("%s took its state transfer", x.name)
			delete(w.rejoining, x)
		} else if i := slices.Index(up, x); i >= 0 {
			up = slices.Delete(up, i, i+1)
		}
	}
	if len(up) == 0 {
		up = w.up() // every running node rejoining: write anyway
	}
	n := up[w.rng.IntN(len(up))]
	key := fmt.Sprintf("k%02d", w.rng.IntN(convKeys))
	m := store.Mutation{Table: convTable, Key: key}
	switch r := w.rng.IntN(100); {
	case r < 45:
		m.Op = store.OpPut // a re-insert when the row is deleted
		for f := uint32(1); f <= convFields; f++ {
			m.Fields = append(m.Fields, store.FieldValue{Num: f, Value: []byte(fmt.Sprintf("%s/%d/%x", n.name, f, w.rng.Uint32()))})
		}
	case r < 75:
		m.Op = store.OpPatch
		for f := uint32(1); f <= convFields; f++ {
			if w.rng.IntN(2) == 0 || (f == convFields && len(m.Fields) == 0) {
				m.Fields = append(m.Fields, store.FieldValue{Num: f, Value: []byte(fmt.Sprintf("%s/%d/%x", n.name, f, w.rng.Uint32()))})
			}
		}
	default:
		m.Op = store.OpDelete
	}
	w.apply(n, m)
}

// apply makes one write on node n and records what it did in the model.
func (w *world) apply(n *convNode, m store.Mutation) {
	key := m.Key
	before, _ := n.st.GetAny(convTable, key)
	stamps, err := n.st.Apply(context.Background(), m)
	var nf *store.NotFoundError
	switch {
	case errors.As(err, &nf) && m.Op != store.OpPut:
		w.note("%s %s %s: not found", n.name, opName(m.Op), key)
		return // refused: changes nothing
	case err != nil:
		w.fail("%s %s %s: %v", n.name, opName(m.Op), key, err)
	}
	w.acked++
	if n == w.awayNode && m.Op == store.OpPut && !before.Alive() {
		w.awayWrites[key] = true // a new life of the row
	}
	if w.loose[key] {
		w.note("%s %s %s: acknowledged (a key the model left out)", n.name, opName(m.Op), key)
		return
	}
	after, err := n.st.GetAny(convTable, key)
	if err != nil {
		w.fail("%s: %s just written is not there: %v", n.name, key, err)
	}
	d := delta{stamp: stamps[0]}
	pinned := false
	if m.Op == store.OpDelete {
		// The delete bumped the causal length the node had to the next
		// even one; a remote change merged between the two reads leaves
		// it unknown (and then, being no newer than that change's, it
		// cannot decide the row: leaving it out is safe).
		d.cl = before.CL + 1
		pinned = after.CL == d.cl && before.Alive()
	} else {
		// A field still carrying the write's stamp pins its causal length:
		// fields belong to the row's current one. If every field was
		// overwritten already, by newer writes, it decides nothing.
		d.fields = map[uint32][]byte{}
		for _, f := range m.Fields {
			d.fields[f.Num] = f.Value
			if g, ok := after.Field(f.Num); ok && g.Stamp == d.stamp {
				pinned = true
			}
		}
		d.cl = after.CL
	}
	if w.reaped[key] && before.CL == 0 {
		// A row written anew after its tombstone was reaped: its history
		// starts again at causal length 1.
		delete(w.reaped, key)
		delete(w.model, key)
	}
	if !pinned {
		w.unpinned++
		w.note("%s %s %s at %v: outcome not pinned (before cl %d, after cl %d)", n.name, opName(m.Op), key, d.stamp, before.CL, after.CL)
		return
	}
	w.model[key] = append(w.model[key], d)
	w.note("%s %s %s at %v: cl %d", n.name, opName(m.Op), key, d.stamp, d.cl)
}

func opName(op store.Op) string {
	return map[store.Op]string{store.OpPut: "put", store.OpPatch: "patch", store.OpDelete: "delete"}[op]
}

func (w *world) waitMembers() {
	w.t.Helper()
	waitfor.Until(w.t, 20*time.Second, fmt.Sprintf("seed %d: %d nodes see each other", w.seed, convNodes), func() error {
		for _, n := range w.nodes {
			if a := n.tier.NumAlive(); a != convNodes {
				return fmt.Errorf("%s sees %d alive", n.name, a)
			}
		}
		return nil
	})
}

// waitConverged waits until every node holds the same digest.
func (w *world) waitConverged() {
	w.t.Helper()
	deadline := time.Now().Add(convConverge)
	for {
		var roots []string
		same := true
		for _, n := range w.nodes {
			st := n.st.Stats()
			roots = append(roots, fmt.Sprintf("%s:%x rows=%d alive=%d", n.name, st.Root[:6], st.Rows[convTable], n.tier.NumAlive()))
			if st.Root != w.nodes[0].st.Stats().Root {
				same = false
			}
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			w.fail("replicas did not converge %v after healing: %s\n%s\n%s", convConverge, strings.Join(roots, "; "), w.diff(), w.apart(w.nodes))
		}
		time.Sleep(waitfor.Interval)
	}
}

// expected folds the deltas of a key as the CRDT semantics say: the
// highest causal length wins; at it, each field is last-writer-wins by
// stamp.
func expected(ds []delta) (cl uint64, fields map[uint32]delta) {
	for _, d := range ds {
		cl = max(cl, d.cl)
	}
	fields = map[uint32]delta{}
	for _, d := range ds {
		if d.cl != cl {
			continue
		}
		for num := range d.fields {
			if cur, ok := fields[num]; !ok || d.stamp.Compare(cur.stamp) > 0 {
				fields[num] = d
			}
		}
	}
	return cl, fields
}

// check compares every replica's every modelled row with the model.
func (w *world) check() {
	w.t.Helper()
	if msg := w.diff(); msg != "" {
		w.fail("replicas converged to a state the model does not allow:\n%s", msg)
	}
}

// diff lists where replicas differ from the model, "" if nowhere.
func (w *world) diff() string {
	var out []string
	keys := make([]string, 0, len(w.model))
	for k := range w.model {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		cl, fields := expected(w.model[key])
		for _, n := range w.nodes {
			row, err := n.st.GetAny(convTable, key)
			if w.reaped[key] && cl%2 == 0 {
				// Reaped: no node may hold it alive (a tombstone kept by
				// a node that deleted it while away may come back).
				if err == nil && row.Alive() {
					out = append(out, fmt.Sprintf("%s %s: alive at cl %d, its delete (cl %d) reaped: a deleted row resurrected", n.name, key, row.CL, cl))
				} else if err != nil && !errors.Is(err, store.ErrNotFound) {
					out = append(out, fmt.Sprintf("%s %s: %v", n.name, key, err))
				}
				continue
			}
			if err != nil {
				out = append(out, fmt.Sprintf("%s %s: %v, model has cl %d", n.name, key, err, cl))
				continue
			}
			if row.CL != cl {
				what := ""
				if cl%2 == 0 && row.Alive() {
					what = " (a deleted row resurrected)"
				}
				out = append(out, fmt.Sprintf("%s %s: cl %d (set at %v), model %d%s", n.name, key, row.CL, row.Stamp, cl, what))
				continue
			}
			for num, d := range fields {
				g, ok := row.Field(num)
				if ok && g.Stamp.Compare(d.stamp) > 0 && string(g.Value) == string(d.fields[num]) {
					// A state transfer stamps afresh an own row its peers
					// lack; every value is unique to its write, so the
					// value still names the write that won.
					continue
				}
				if !ok || g.Stamp != d.stamp || string(g.Value) != string(d.fields[num]) {
					out = append(out, fmt.Sprintf("%s %s field %d: %q at %v, model %q at %v (an acknowledged write lost)", n.name, key, num, g.Value, g.Stamp, d.fields[num], d.stamp))
				}
			}
			for _, g := range row.Fields {
				if _, ok := fields[g.Num]; !ok {
					out = append(out, fmt.Sprintf("%s %s field %d: %q at %v, not in the model", n.name, key, g.Num, g.Value, g.Stamp))
				}
			}
		}
	}
	return strings.Join(out, "\n")
}

// apart lists the modelled rows the nodes hold differently, and each
// node's state transfer state.
func (w *world) apart(nodes []*convNode) string {
	var out []string
	for _, n := range nodes {
		out = append(out, fmt.Sprintf("%s: last exchange %v ago, horizon %v, %d state transfers taken, %d members alive, ready: %v",
			n.name, time.Since(n.st.LastSynced()).Round(time.Millisecond), n.st.Horizon(), n.tier.Transfers(), n.tier.NumAlive(), n.tier.Ready()))
	}
	keys := slices.Sorted(maps.Keys(w.model))
	for _, key := range keys {
		var states []string
		differ := false
		for _, n := range nodes {
			row, err := n.st.GetAny(convTable, key)
			st := fmt.Sprintf("%s: %v", n.name, err)
			if err == nil {
				st = fmt.Sprintf("%s: cl %d at %v, %d fields, latest %v", n.name, row.CL, row.Stamp, len(row.Fields), row.Latest())
			}
			differ = differ || len(states) > 0 && strings.SplitN(st, ": ", 2)[1] != strings.SplitN(states[0], ": ", 2)[1]
			states = append(states, st)
		}
		if differ {
			out = append(out, fmt.Sprintf("%s held apart: %s", key, strings.Join(states, "; ")))
		}
	}
	return strings.Join(out, "\n")
}

// oneWayCuts are links cut in one direction only: an asymmetric
// partition, which Faults (cutting both ways) does not make.
type oneWayCuts struct {
	mu      sync.RWMutex
	blocked map[[2]string]bool
}

func (c *oneWayCuts) cut(from string, to []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range to {
		c.blocked[[2]string{from, x}] = true
	}
}

func (c *oneWayCuts) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blocked = map[[2]string]bool{}
}

func (c *oneWayCuts) isCut(from, to string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.blocked[[2]string{from, to}]
}

// cutTransport is a FaultTransport that also loses what a node sends
// over a one-way cut (packets, and streams it dials; a stream the other
// side dials still carries answers back).
type cutTransport struct {
	*cluster.FaultTransport
	cuts *oneWayCuts
}

var _ memberlist.NodeAwareTransport = (*cutTransport)(nil)

func (c *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return c.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (c *cutTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	if c.cuts.isCut(c.Addr(), addr.Addr) {
		return time.Now(), nil
	}
	return c.FaultTransport.WriteToAddress(b, addr)
}

func (c *cutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return c.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (c *cutTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if c.cuts.isCut(c.Addr(), addr.Addr) {
		return nil, errors.New("one-way cut (fault injection)")
	}
	return c.FaultTransport.DialAddressTimeout(addr, timeout)
}
