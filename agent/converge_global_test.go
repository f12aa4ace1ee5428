package agent

// The convergence checker of the global tier: two regions, each a
// regional cluster of two gateways running the app-regions reducer, all
// four on one global tier behind the fault-injecting transport. A seeded
// run of regional writes through the API (puts, patches, deletes of
// machines) drives the published records while the global tier is
// partitioned between the regions, a gateway is cut off, packets are lost
// or delayed, and gateways crash and restart. After healing, every
// gateway must hold the same records, each passing the contract and
// signed by its owning region's key, written by a gateway of that region,
// and each region's records must be the projection of its final rows.
//
// Environment (docs/RELIABILITY.md), shared with agent/cluster's checker:
//
//	STRATA_CONVERGE_SEED   the first seed (default: random; a failure prints it)
//	STRATA_CONVERGE_SEEDS  how many seeds, one run each (default 1)
//	STRATA_CONVERGE_OPS    regional writes per seed (default 300)

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/reducertest"
	"github.com/strata-state/strata/internal/testenv"
	"github.com/strata-state/strata/internal/waitfor"
)

const (
	gcRecord   = "app_placements"
	gcMachines = 12               // machine ids per region
	gcConverge = 90 * time.Second // after healing, to converge
)

var (
	gcRegions = []string{"ams", "ord"}
	gcApps    = []string{"web", "api", "db", "jobs", "cache"}
	gcStates  = []string{"MACHINE_STATE_STARTED", "MACHINE_STATE_STARTED", "MACHINE_STATE_STOPPED", "MACHINE_STATE_SUSPENDED"}
	// gcFaults are the fault kinds of the global tier, one per phase.
	gcFaults = []string{"none", "regions-apart", "isolate", "loss", "delay", "crash"}
)

// TestGlobalConvergence runs the global tier's checker:
// STRATA_CONVERGE_SEEDS runs of STRATA_CONVERGE_OPS regional writes.
func TestGlobalConvergence(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("runs four gateways with reducers for tens of seconds; .ci/run runs it without -race")
	}
	first := testenv.Int(t, "STRATA_CONVERGE_SEED", int64(rand.Uint32()))
	seeds := testenv.Int(t, "STRATA_CONVERGE_SEEDS", 1)
	ops := int(testenv.Int(t, "STRATA_CONVERGE_OPS", 300))
	wasm := reducertest.Module(t, "app-regions")
	total := map[string]int{}
	for s := first; s < first+seeds; s++ {
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			w := newGlobalWorld(t, s, ops, wasm)
			w.run()
			for k, n := range w.faultCount {
				total[k] += n
			}
			t.Logf("seed %d: %d regional writes (%d acknowledged), faults %v, converged in %v; %d records on each of %d gateways checked: contract, region signature, writer",
				s, ops, w.acked, w.faultCount, w.convergedIn.Round(time.Millisecond), w.records, len(w.nodes))
		})
	}
	t.Logf("%d seeds from %d, %d regional writes each; phases by fault kind: %v", seeds, first, ops, total)
}

// globalWorld is one run of the global checker.
type globalWorld struct {
	t      *testing.T
	seed   int64
	ops    int
	rng    *rand.Rand
	wasm   string
	keys   *trustKeys
	faults *cluster.Faults // the global tier's network
	nodes  []*gcNode

	acked       int
	records     int
	faultCount  map[string]int
	history     []string
	convergedIn time.Duration
}

// gcNode is one gateway: its configuration (data directory kept across
// restarts) and, while it runs, the agent.
type gcNode struct {
	name, region string
	cfg          *config.Config
	run          *runningAgent
	gaddr        string // its global tier transport address, for partitions
}

func newGlobalWorld(t *testing.T, seed int64, ops int, wasm string) *globalWorld {
	w := &globalWorld{t: t, seed: seed, ops: ops, rng: rand.New(rand.NewPCG(uint64(seed), 0x610b)), wasm: wasm,
		keys: newTrustKeys(t, gcRegions...), faults: cluster.NewFaults(), faultCount: map[string]int{}}
	for _, region := range gcRegions {
		for i := 1; i <= 2; i++ {
			name := fmt.Sprintf("%s-%d", region, i)
			cfg := gatewayConfig(t, name, region, wasm, nil, nil)
			cfg.Global.Keyring = w.keys.gossip
			cfg.Global.RegionKey = w.keys.keyFiles[region]
			cfg.Global.TrustedRegions = w.keys.trusted
			n := &gcNode{name: name, region: region, cfg: cfg}
			w.nodes = append(w.nodes, n)
			w.start(n)
		}
	}
	waitfor.Until(t, 30*time.Second, fmt.Sprintf("seed %d: four gateways see each other on the global tier", seed), func() error {
		for _, n := range w.nodes {
			if a := n.run.a.GlobalTier().NumAlive(); a != len(w.nodes) {
				return fmt.Errorf("%s sees %d alive", n.name, a)
			}
		}
		return nil
	})
	return w
}

// start runs n's agent on its data directory, joining the running
// gateways; its global tier sends through the faulty network.
func (w *globalWorld) start(n *gcNode) {
	n.cfg.Regional.Join, n.cfg.Global.Join = nil, nil
	for _, o := range w.nodes {
		if o == n || o.run == nil {
			continue
		}
		if o.region == n.region {
			n.cfg.Regional.Join = append(n.cfg.Regional.Join, o.run.a.Tier().Addr())
		}
		n.cfg.Global.Join = append(n.cfg.Global.Join, o.run.a.GlobalTier().Addr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logw io.Writer = io.Discard
	if os.Getenv("STRATA_TEST_LOG") != "" {
		logw = os.Stderr
	}
	a, err := New(ctx, n.cfg, Options{
		Logger:     slog.New(slog.NewTextHandler(logw, nil)).With("node", n.name),
		ContractFS: contracts.Example,
		Transport: func(tier string) (memberlist.NodeAwareTransport, error) {
			if tier != cluster.Global {
				return nil, nil
			}
			ft, err := cluster.NewFaultTransport(w.faults)
			if err != nil {
				return nil, err
			}
			n.gaddr = ft.Addr()
			return ft, nil
		},
	})
	if err != nil {
		cancel()
		w.fail("starting %s: %v", n.name, err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	w.t.Cleanup(stop)
	n.run = &runningAgent{a: a, client: api.NewClient(a.Addr(), ""), stop: stop}
}

func (w *globalWorld) stop(n *gcNode) {
	n.run.stop()
	n.run = nil
}

func (w *globalWorld) fail(format string, args ...any) {
	w.t.Helper()
	hist := w.history[max(0, len(w.history)-40):]
	w.t.Fatalf("seed %d: %s\nlast events:\n  %s\nreplay: STRATA_CONVERGE_SEED=%d STRATA_CONVERGE_OPS=%d go test -count=1 -run TestGlobalConvergence ./agent\n(the seed fixes the writes and faults; message timing still varies from run to run)",
		w.seed, fmt.Sprintf(format, args...), strings.Join(hist, "\n  "), w.seed, w.ops)
}

func (w *globalWorld) note(format string, args ...any) {
	w.history = append(w.history, fmt.Sprintf(format, args...))
}

func (w *globalWorld) run() {
	phaseLeft := 0
	var (
		crashed *gcNode
		gap     time.Duration
	)
	for i := 0; i < w.ops; i++ {
		if phaseLeft == 0 {
			if crashed != nil {
				w.start(crashed)
				w.note("restart %s", crashed.name)
				crashed = nil
			}
			w.heal()
			kind := gcFaults[w.rng.IntN(len(gcFaults))]
			w.faultCount[kind]++
			crashed = w.inject(kind)
			phaseLeft = 20 + w.rng.IntN(40)
			// A phase lasts 1 to 3 s: longer than failure detection on
			// the global tier (probes every 200 ms) and the publisher's
			// debounce (50 ms).
			gap = (time.Second + time.Duration(w.rng.Int64N(int64(2*time.Second)))) / time.Duration(phaseLeft)
		}
		phaseLeft--
		w.operate()
		time.Sleep(gap) // the workload's pace, not a synchronisation
	}
	if crashed != nil {
		w.start(crashed)
		w.note("restart %s", crashed.name)
	}
	w.heal()
	w.note("healed")
	start := time.Now()
	w.waitConverged()
	w.convergedIn = time.Since(start)
	w.check()
}

// inject starts a fault of the kind on the global tier; it returns the
// gateway it crashed.
func (w *globalWorld) inject(kind string) *gcNode {
	nodes := slices.Clone(w.nodes)
	w.rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	switch kind {
	case "regions-apart":
		var a, b []string
		for _, n := range w.nodes {
			if n.region == gcRegions[0] {
				a = append(a, n.gaddr)
			} else {
				b = append(b, n.gaddr)
			}
		}
		w.faults.Partition(a, b)
		w.note("global tier: %s apart from %s", gcRegions[0], gcRegions[1])
	case "isolate":
		var others []string
		for _, n := range nodes[1:] {
			others = append(others, n.gaddr)
		}
		w.faults.Partition([]string{nodes[0].gaddr}, others)
		w.note("global tier: %s cut off", nodes[0].name)
	case "loss":
		rate := 0.1 + 0.4*w.rng.Float64()
		w.faults.SetDrop(rate)
		w.note("global tier: drop %.0f%%", rate*100)
	case "delay":
		d := time.Duration(5+w.rng.IntN(60)) * time.Millisecond
		w.faults.SetDelay(d)
		w.note("global tier: delay %v", d)
	case "crash":
		w.stop(nodes[0])
		w.note("crash %s", nodes[0].name)
		return nodes[0]
	}
	return nil
}

func (w *globalWorld) heal() {
	w.faults.Heal()
	w.faults.SetDrop(0)
	w.faults.SetDelay(0)
}

// operate makes one regional write through the API of a random running
// gateway of a random region.
func (w *globalWorld) operate() {
	region := gcRegions[w.rng.IntN(len(gcRegions))]
	var up []*gcNode
	for _, n := range w.nodes {
		if n.region == region && n.run != nil {
			up = append(up, n)
		}
	}
	n := up[w.rng.IntN(len(up))]
	id := fmt.Sprintf("m-%s-%02d", region, w.rng.IntN(gcMachines))
	ctx := context.Background()
	var (
		what string
		err  error
	)
	switch r := w.rng.IntN(100); {
	case r < 50:
		row := fmt.Sprintf(`{"id":%q,"app":%q,"state":%q,"healthy":%v,"host":"h-%s","private_ip":"10.9.%d.%d"}`,
			id, gcApps[w.rng.IntN(len(gcApps))], gcStates[w.rng.IntN(len(gcStates))], w.rng.IntN(2) == 0, id, w.rng.IntN(256), w.rng.IntN(256))
		what = "put " + row
		_, err = n.run.client.Put(ctx, "machines", id, []byte(row))
	case r < 80:
		var patch string
		switch w.rng.IntN(3) {
		case 0:
			patch = fmt.Sprintf(`{"state":%q}`, gcStates[w.rng.IntN(len(gcStates))])
		case 1:
			patch = fmt.Sprintf(`{"healthy":%v}`, w.rng.IntN(2) == 0)
		default:
			patch = fmt.Sprintf(`{"app":%q}`, gcApps[w.rng.IntN(len(gcApps))])
		}
		what = "patch " + patch
		_, err = n.run.client.Patch(ctx, "machines", id, []byte(patch))
	default:
		what = "delete"
		_, err = n.run.client.Delete(ctx, "machines", id)
	}
	var ae *api.Error
	switch {
	case errors.As(err, &ae) && ae.Status == 404 && !strings.HasPrefix(what, "put"):
		w.note("%s %s %s: not found", n.name, id, what)
	case err != nil:
		w.fail("%s %s %s: %v", n.name, id, what, err)
	default:
		w.acked++
		w.note("%s %s %s", n.name, id, what)
	}
}

// projection is the set of apps with a started machine in the region's
// rows, read from a gateway of the region: the keys of the records the
// region must publish, whatever else each record holds.
func (w *globalWorld) projection(n *gcNode) (map[string]bool, error) {
	apps := map[string]bool{}
	after := ""
	for {
		page, err := n.run.client.List(context.Background(), "machines", after, 0)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Rows {
			var m struct{ App, State string }
			if err := json.Unmarshal(r.Row, &m); err != nil {
				return nil, fmt.Errorf("machine %s: %v", r.Key, err)
			}
			if m.State == "MACHINE_STATE_STARTED" {
				apps[m.App] = true
			}
		}
		if page.Next == "" {
			return apps, nil
		}
		after = page.Next
	}
}

// held is a gateway's live records, as "region/key → value@stamp".
func held(n *gcNode) (map[string]string, error) {
	recs, err := global.List(n.run.a.Global(), gcRecord, "")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range recs {
		out[s.Region+"/"+s.Key] = fmt.Sprintf("%x@%v", s.Value, s.Stamp)
	}
	return out, nil
}

// waitConverged waits until each region's gateways hold the same rows,
// every gateway holds the same records, and each region's records are
// the projection of its rows.
func (w *globalWorld) waitConverged() {
	w.t.Helper()
	deadline := time.Now().Add(gcConverge)
	for {
		err := w.converged()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			w.fail("not converged %v after healing: %v", gcConverge, err)
		}
		time.Sleep(waitfor.Interval)
	}
}

func (w *globalWorld) converged() error {
	first := map[string]*gcNode{}
	for _, n := range w.nodes {
		f, ok := first[n.region]
		if !ok {
			first[n.region] = n
			continue
		}
		if a, b := f.run.a.Store().Stats().Root, n.run.a.Store().Stats().Root; a != b {
			return fmt.Errorf("region %s: %s and %s hold different rows (%x, %x)", n.region, f.name, n.name, a[:6], b[:6])
		}
	}
	want, err := held(w.nodes[0])
	if err != nil {
		return err
	}
	for _, n := range w.nodes[1:] {
		got, err := held(n)
		if err != nil {
			return err
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("%s holds %d records, %s %d, not the same: %s", w.nodes[0].name, len(want), n.name, len(got), recordsApart(want, got))
		}
	}
	for _, region := range gcRegions {
		apps, err := w.projection(first[region])
		if err != nil {
			return err
		}
		var published []string
		for k := range want {
			if r, key, _ := strings.Cut(k, "/"); r == region {
				published = append(published, key)
			}
		}
		slices.Sort(published)
		if exp := slices.Sorted(maps.Keys(apps)); !slices.Equal(published, exp) {
			return fmt.Errorf("region %s publishes %v, its rows project to %v", region, published, exp)
		}
	}
	return nil
}

func recordsApart(a, b map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if b[k] != a[k] {
			out = append(out, fmt.Sprintf("%s: %q vs %q", k, a[k], b[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s: only in the second", k))
		}
	}
	return strings.Join(out, "; ")
}

// check reads every row of the global tables on every gateway and
// requires each to be a well-formed record that passes the contract
// (global.Batch.Check, as a write of its owning region), whose proof
// verifies under its owning region's trusted key, written by a gateway
// of that region, and carrying no regional-only value of any row.
func (w *globalWorld) check() {
	w.t.Helper()
	trust, err := global.LoadTrust(w.keys.trusted)
	if err != nil {
		w.t.Fatal(err)
	}
	writers := map[store.NodeID]string{}
	for _, n := range w.nodes {
		writers[store.NodeIDOf(n.name)] = n.region
	}
	var problems []string
	for _, n := range w.nodes {
		verifier := global.NewVerifier(trust)
		st := n.run.a.Global()
		for _, table := range []string{gcRecord, global.HeartbeatTable} {
			rows, _, err := st.List(table, "", 0)
			if err != nil {
				w.fail("%s: listing %s: %v", n.name, table, err)
			}
			for _, kr := range rows {
				s, err := global.FromRow(table, kr.Key, kr.Row)
				if err == nil {
					err = verifier.Verify(&s)
				}
				if err == nil && writers[s.Stamp.Node] != s.Region {
					err = fmt.Errorf("written by node %v, not a gateway of region %s", s.Stamp.Node, s.Region)
				}
				if err == nil && table == gcRecord {
					if !slices.Contains(gcRegions, s.Region) {
						err = fmt.Errorf("owned by unknown region %q", s.Region)
					} else if strings.Contains(string(s.Value), "m-") || strings.Contains(string(s.Value), "10.9.") {
						err = fmt.Errorf("carries a regional-only value: %q", s.Value)
					} else {
						b := &global.Batch{Contract: n.run.a.Contract(), Holdings: global.NoHoldings{}, Now: time.Now()}
						err = b.Check(global.Write{Record: s.Record, Writer: s.Region})
					}
				}
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s: %s %s: %v", n.name, table, kr.Key, err))
				}
				if table == gcRecord && n == w.nodes[0] && !s.Deleted() {
					w.records++
				}
			}
		}
	}
	if len(problems) > 0 {
		w.fail("records that fail the global tier's promises:\n  %s", strings.Join(problems, "\n  "))
	}
}
