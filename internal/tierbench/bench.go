// Package tierbench measures strata's two-tier design against one cluster
// that spans every region, built from the same agent by configuration: it
// starts R regions × N agents in this process on loopback, drives the same
// seeded fleet workload through each topology in turn, and reports the
// bytes sent between regions (counted at the memberlist transport), how
// fast writes spread, and what it cost. `strata bench tiers` runs it.
package tierbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/strata-state/strata/agent"
	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/contracts"
)

// Topology names, as in the JSON report.
const (
	TwoTier = "two_tier"
	Single  = "single"
)

// Fault values for Config.Fault. The fault is always in the first region
// (ord); with one, placement propagation is measured on the other regions'
// placements only.
const (
	// FaultNone runs no fault.
	FaultNone = "none"
	// FaultReducer has the first region's gateways run a faulty reducer
	// (testdata/reducers/leakid, which copies machine ids, regional_only,
	// into its records; Config.FaultWasm). The single topology has no
	// reducers: it runs fault-free.
	FaultReducer = "reducer"
	// FaultWrites sends the first region a burst of invalid writes through
	// the API during the window: global records that break the contract
	// (two-tier) or machine rows that do (single).
	FaultWrites = "writes"
)

// faultRegion is the index of the region a fault is injected in.
const faultRegion = 0

// ErrConfig is returned for a Config that cannot run.
var ErrConfig = errors.New("tierbench: bad configuration")

// Config is one benchmark run. Both topologies run it with the same seed.
type Config struct {
	// Regions is the number of regions (R); at least 2.
	Regions int `json:"regions"`
	// Nodes is the number of agents per region (N).
	Nodes int `json:"nodes"`
	// Gateways is the number of gateways per region in the two-tier
	// topology (G ≤ N).
	Gateways int `json:"gateways"`
	// Machines is the number of machine rows per region.
	Machines int `json:"machines"`
	// Churn is the machine state and health flips per second per region.
	Churn int `json:"churn"`
	// Placements is the apps starting in or leaving a region per minute
	// per region.
	Placements int `json:"placements"`
	// Duration is the measured window, after loading and convergence.
	Duration time.Duration `json:"-"`
	// DurationS is Duration in seconds, for the report.
	DurationS float64 `json:"duration_s"`
	// Seed seeds the workload.
	Seed uint64 `json:"seed"`
	// Fault is FaultNone, FaultReducer or FaultWrites.
	Fault string `json:"fault"`
	// Wasm is the path of the built app-regions reducer.
	Wasm string `json:"-"`
	// FaultWasm is the path of the faulty reducer, for FaultReducer.
	FaultWasm string `json:"-"`
	// Dir holds the agents' data directories; default a temporary one.
	Dir string `json:"-"`
	// Progress, when set, receives a progress line every few seconds.
	Progress io.Writer `json:"-"`

	only      string // run this topology only (tests)
	seedCache string // see fleet.seedCache
}

// Result is what one topology measured. Every figure is measured in the
// window; none is computed from a model.
type Result struct {
	// CrossRegionBytesPerS is the gossip bytes per second sent between
	// nodes of different regions, both tiers, counted at the transport.
	CrossRegionBytesPerS float64 `json:"cross_region_bytes_per_s"`
	// BytesPerNodePerS is all gossip bytes per second divided by the nodes.
	BytesPerNodePerS float64 `json:"bytes_per_node_per_s"`
	// RegionalP50Ms and RegionalP99Ms time a regional write from its
	// request to its visibility on every node of its region.
	// Nil (left out) when no write was seen everywhere in the window.
	RegionalP50Ms *float64 `json:"regional_p50_ms,omitempty"`
	RegionalP99Ms *float64 `json:"regional_p99_ms,omitempty"`
	// PlacementP50Ms and PlacementP99Ms time an app starting in or
	// leaving a region, from the regional write to its visibility on every
	// gateway (two-tier: the app_placements record) or every node (single:
	// the machine row) of every other region.
	PlacementP50Ms *float64 `json:"placement_p50_ms,omitempty"`
	PlacementP99Ms *float64 `json:"placement_p99_ms,omitempty"`
	// CPUSecondsPerNode is this process's CPU time in the window (agents,
	// workload driver and probes alike) divided by the nodes.
	CPUSecondsPerNode float64 `json:"cpu_seconds_per_node"`
	// PeakHeapBytes is the largest live heap of the process seen in the
	// window, sampled every 250 ms.
	PeakHeapBytes uint64 `json:"peak_heap_bytes"`
	// InvalidRecords counts global records, on any gateway, that fail the
	// contract's write checks. Nil for the single topology, which has no
	// global records.
	InvalidRecords *int `json:"invalid_records,omitempty"`

	// Not in the JSON report: the samples, their counts and misses, for
	// the table and the charts (package tierchart).
	RegionalMs, PlacementMs []float64 `json:"-"`
	// OthersP50Ms and OthersP99Ms are the placement percentiles of the
	// regions other than the first (where --fault injects its fault), from
	// OthersSamples samples: with a fault they equal PlacementP50Ms and
	// PlacementP99Ms; without, they are what to compare a fault run with.
	OthersP50Ms, OthersP99Ms *float64 `json:"-"`
	OthersSamples            int      `json:"-"`
	RegionalSamples          int      `json:"-"`
	PlacementSamples         int      `json:"-"`
	PlacementMissed          int      `json:"-"`
	Writes                   int      `json:"-"`
	ChurnSkipped             int      `json:"-"`
	// InvalidSent and InvalidAcked count FaultWrites' invalid writes and
	// those the API acknowledged (must be 0).
	InvalidSent, InvalidAcked int `json:"-"`
	// FaultyRejected is the records the faulty region's publishers refused
	// to publish in their last run (reducer.Status.Rejected; FaultReducer,
	// two-tier): above 0 shows the fault was injected and caught.
	FaultyRejected int `json:"-"`
	// RegionalArrivals and GlobalArrivals are the changes the nodes (the
	// gateways, for the global tier) applied in the window and after it
	// while the last placements were waited for, by the path they arrived
	// on: push, repair (asked for after an announcement) or anti_entropy.
	RegionalArrivals, GlobalArrivals arrivals `json:"-"`
}

// Report is the JSON document of `strata bench tiers --json`.
type Report struct {
	Config  Config  `json:"config"`
	TwoTier *Result `json:"two_tier"`
	Single  *Result `json:"single"`
	// CrossRegionRatio is two-tier cross-region bytes over single's.
	CrossRegionRatio *float64 `json:"cross_region_ratio,omitempty"`
}

// regionNames are the first regions' names; beyond them, r9, r10, …
var regionNames = []string{"ord", "ams", "syd", "iad", "fra", "sin", "gru", "nrt"}

// RegionName is the name of region i (from 0) of a run; a fault is in
// RegionName(0).
func RegionName(i int) string { return regionName(i) }

func regionName(i int) string {
	if i < len(regionNames) {
		return regionNames[i]
	}
	return "r" + strconv.Itoa(i+1)
}

func (c *Config) check() error {
	switch {
	case c.Regions < 2:
		return fmt.Errorf("%w: --regions %d: want at least 2", ErrConfig, c.Regions)
	case c.Nodes < 1:
		return fmt.Errorf("%w: --nodes %d: want at least 1", ErrConfig, c.Nodes)
	case c.Gateways < 1 || c.Gateways > c.Nodes:
		return fmt.Errorf("%w: --gateways %d: want 1 to --nodes (%d)", ErrConfig, c.Gateways, c.Nodes)
	case c.Machines < 1:
		return fmt.Errorf("%w: --machines %d: want at least 1", ErrConfig, c.Machines)
	case c.Churn < 0 || c.Placements < 0:
		return fmt.Errorf("%w: --churn and --placements must not be negative", ErrConfig)
	case c.Duration <= 0:
		return fmt.Errorf("%w: --duration %s: want more than 0", ErrConfig, c.Duration)
	case c.Fault != FaultNone && c.Fault != FaultReducer && c.Fault != FaultWrites:
		return fmt.Errorf("%w: --fault %q: want none, reducer or writes", ErrConfig, c.Fault)
	case c.Fault == FaultReducer && c.FaultWasm == "":
		return fmt.Errorf("%w: --fault reducer: no faulty reducer module", ErrConfig)
	case c.Wasm == "":
		return fmt.Errorf("%w: no app-regions module", ErrConfig)
	}
	return nil
}

// Run runs the two-tier topology, then the single one, and reports both.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Fault == "" {
		cfg.Fault = FaultNone
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg.DurationS = cfg.Duration.Seconds()
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "strata-bench-tiers-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		cfg.Dir = d
	}
	if cfg.only != Single {
		seed := filepath.Join(cfg.Dir, "wazero-seed")
		if err := precompile(ctx, seed, cfg.Wasm, cfg.FaultWasm); err != nil {
			return nil, err
		}
		cfg.seedCache = seed
	}
	rep := &Report{Config: cfg}
	for _, topo := range []string{TwoTier, Single} {
		if cfg.only != "" && topo != cfg.only {
			continue
		}
		res, err := runTopology(ctx, cfg, topo)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", topo, err)
		}
		if topo == TwoTier {
			rep.TwoTier = res
		} else {
			rep.Single = res
		}
		runtime.GC()
	}
	if rep.TwoTier != nil && rep.Single != nil && rep.Single.CrossRegionBytesPerS > 0 {
		r := rep.TwoTier.CrossRegionBytesPerS / rep.Single.CrossRegionBytesPerS
		rep.CrossRegionRatio = &r
	}
	return rep, nil
}

// precompile compiles the reducer modules into a compilation cache at dir,
// once, instead of once per gateway: on a small machine, compiling a Go
// reducer for each of the two-tier topology's gateways took most of its
// start-up.
func precompile(ctx context.Context, dir string, modules ...string) error {
	h, err := reducer.NewHost(reducer.HostOptions{CacheDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer h.Close(ctx)
	for _, m := range modules {
		if m == "" {
			continue
		}
		bin, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		if err := h.Precompile(ctx, bin); err != nil {
			return fmt.Errorf("tierbench: compiling %s: %w", m, err)
		}
	}
	return nil
}

// node is one agent of the bench.
type node struct {
	name    string
	region  string // the region it stands for (in single, not its config's)
	gateway bool   // two-tier: has a [global] section
	a       *agent.Agent
	client  *api.Client
}

// fleet is one topology's running agents.
type fleet struct {
	cfg     Config
	topo    string
	wire    *wire
	regions [][]*node // by region index
	stop    context.CancelFunc
	runCtx  context.Context // the agents' Run context; stop ends it
	runs    sync.WaitGroup
	log     *slog.Logger

	firstRegional, firstGlobal string // tier addresses new agents join
	// seedCache, when set, is a reducer compilation cache (the reducer
	// host's data_dir/wazero-cache) copied into every gateway's data
	// directory before it starts.
	seedCache string
}

func (f *fleet) all() []*node {
	var out []*node
	for _, r := range f.regions {
		out = append(out, r...)
	}
	return out
}

// start runs the first agent of every region of topo (a gateway in
// two-tier); join starts the others.
func start(ctx context.Context, cfg Config, topo string) (f *fleet, err error) {
	runCtx, stop := context.WithCancel(context.Background())
	f = &fleet{cfg: cfg, topo: topo, wire: newWire(), stop: stop, runCtx: runCtx,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), regions: make([][]*node, cfg.Regions), seedCache: cfg.seedCache}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	for ri := range cfg.Regions {
		n, err := f.add(ctx, ri, 1)
		if err != nil {
			return f, err
		}
		f.regions[ri] = append(f.regions[ri], n)
		if f.firstRegional == "" {
			f.firstRegional = n.a.Tier().Addr()
		}
		if n.gateway && f.firstGlobal == "" {
			f.firstGlobal = n.a.GlobalTier().Addr()
		}
	}
	return f, nil
}

// join starts the agents beyond every region's first, a few at a time,
// and has each start an anti-entropy exchange with its region's first
// agent, which holds the rows loaded before (single, see runTopology).
func (f *fleet) join(ctx context.Context) error {
	added := make([][]*node, f.cfg.Regions)
	for ri := range added {
		added[ri] = make([]*node, f.cfg.Nodes-1)
	}
	// The other gateways first, one at a time: a reducer host's start
	// (the Go module's initialisation) is bounded by the reducer's timeout,
	// which several starting at once on a small machine can exceed.
	for ri := range f.cfg.Regions {
		for i := 2; i <= f.cfg.Nodes && f.topo == TwoTier && i <= f.cfg.Gateways; i++ {
			n, err := f.add(ctx, ri, i)
			if err != nil {
				return err
			}
			added[ri][i-2] = n
		}
	}
	errs := make([]error, f.cfg.Regions*f.cfg.Nodes)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for ri := range f.cfg.Regions {
		for i := 2; i <= f.cfg.Nodes; i++ {
			if added[ri][i-2] != nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				added[ri][i-2], errs[ri*f.cfg.Nodes+i-1] = f.add(ctx, ri, i)
			}()
		}
	}
	wg.Wait()
	for ri, ns := range added {
		for _, n := range ns {
			if n != nil {
				f.regions[ri] = append(f.regions[ri], n)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for ri, ns := range added {
		for _, n := range ns {
			wg.Add(1)
			go func() { defer wg.Done(); n.a.Tier().SyncWith(f.regions[ri][0].name) }()
		}
	}
	wg.Wait()
	// A gateway whose reducer did not load would stand by as publisher
	// without it: not the topology this claims to measure.
	for _, n := range f.all() {
		if n.a.Publisher() == nil {
			continue
		}
		for _, st := range n.a.Publisher().Status() {
			if st.LastError != nil && st.LastError.Kind == "load" {
				return fmt.Errorf("tierbench: gateway %s: reducer %s did not load (is the machine too busy?): %s", n.name, st.Name, st.LastError.Message)
			}
		}
	}
	return nil
}

// add starts agent i (from 1) of region ri; the region's first agent must
// be running before any other.
func (f *fleet) add(ctx context.Context, ri, i int) (*node, error) {
	cfg, topo := f.cfg, f.topo
	region := regionName(ri)
	n := &node{name: fmt.Sprintf("%s-%d", region, i), region: region, gateway: topo == TwoTier && i <= cfg.Gateways}
	rt, err := newTransport(f.wire, region)
	if err != nil {
		return nil, err
	}
	var gt *countingTransport
	if n.gateway {
		if gt, err = newTransport(f.wire, region); err != nil {
			rt.Shutdown()
			return nil, err
		}
	}
	var rjoin, gjoin string
	switch {
	case topo == Single && f.firstRegional != "":
		rjoin = f.firstRegional
	case topo == TwoTier && len(f.regions[ri]) > 0:
		rjoin = f.regions[ri][0].a.Tier().Addr()
	}
	if n.gateway && f.firstGlobal != "" {
		gjoin = f.firstGlobal
	}
	dir := filepath.Join(cfg.Dir, topo, n.name)
	if n.gateway && f.seedCache != "" {
		// The reducer host's compilation cache, compiled once for all
		// gateways (see seedCache).
		if err := os.CopyFS(filepath.Join(dir, "data", "wazero-cache"), os.DirFS(f.seedCache)); err != nil {
			return nil, fmt.Errorf("%s: seeding the compilation cache: %w", n.name, err)
		}
	}
	c, err := nodeConfig(cfg, topo, n, dir, rt.addr, rjoin, gt, gjoin)
	if err != nil {
		return nil, err
	}
	a, err := agent.New(ctx, c, agent.Options{Logger: f.log.With("node", n.name), ContractFS: contracts.Example,
		Transport: func(tier string) (memberlist.NodeAwareTransport, error) {
			if tier == cluster.Global {
				if gt == nil {
					return nil, fmt.Errorf("tierbench: %s is not a gateway", n.name)
				}
				return gt, nil
			}
			return rt, nil
		}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.name, err)
	}
	n.a, n.client = a, api.NewClient(a.Addr(), "")
	f.runs.Add(1)
	go func() { defer f.runs.Done(); a.Run(f.runCtx) }()
	return n, nil
}

// silent reports whether region ri publishes nothing by design: its
// reducer is the faulty one.
func (f *fleet) silent(ri int) bool {
	return f.topo == TwoTier && f.cfg.Fault == FaultReducer && ri == faultRegion
}

func (f *fleet) close() {
	f.stop()
	f.runs.Wait()
}

// nodeConfig is a node's agent.toml, with the agent's defaults for
// gossip, anti-entropy and the reducer's debounce. In the single topology
// every node is in one region ("fleet") of one regional tier and no node
// is a gateway: every machine row reaches every node.
func nodeConfig(cfg Config, topo string, n *node, dir, rbind, rjoin string, gt *countingTransport, gjoin string) (*config.Config, error) {
	q := func(s string) string {
		if s == "" {
			return ""
		}
		return strconv.Quote(s)
	}
	region := n.region
	if topo == Single {
		region = "fleet"
	}
	text := fmt.Sprintf(`node = %q
cluster = "bench"
data_dir = %q
[contracts]
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = %q
bind = %q
join = [%s]
[api]
addr = "127.0.0.1:0"
`, n.name, filepath.Join(dir, "data"), region, rbind, q(rjoin))
	if gt != nil {
		name, wasm := "app-regions", cfg.Wasm
		if cfg.Fault == FaultReducer && n.region == regionName(faultRegion) {
			name, wasm = "faulty", cfg.FaultWasm
		}
		text += fmt.Sprintf(`[global]
bind = %q
join = [%s]
[[reducers]]
name = %q
wasm = %q
inputs = ["machines"]
outputs = ["app_placements"]
`, gt.addr, q(gjoin), name, wasm)
	}
	return config.Parse([]byte(text), n.name+".toml")
}

// runTopology starts topo, loads the fleet, waits for it to converge,
// drives the workload for the window and measures.
func runTopology(ctx context.Context, cfg Config, topo string) (*Result, error) {
	// Two-tier starts every agent, then loads: a loaded row reaches its
	// region's agents by broadcast. Single loads its first agent of each
	// region, then starts the others, which catch up by anti-entropy: there
	// every loaded row goes to every agent of every region, and loading
	// 8,000 rows into 32 agents at once by broadcast took over 3 minutes on
	// a busy 2-core machine, against 2-4 s into 4 agents.
	staged := topo == Single
	progress(cfg, "%s: starting %d regions × %d agents", topo, cfg.Regions, cfg.Nodes)
	t0 := time.Now()
	f, err := start(ctx, cfg, topo)
	if err != nil {
		return nil, err
	}
	defer f.close()
	if !staged {
		if err := f.join(ctx); err != nil {
			return nil, err
		}
	}
	progress(cfg, "%s: %d agents started in %.1fs", topo, len(f.all()), time.Since(t0).Seconds())

	w := newWorkload(cfg)
	progress(cfg, "%s: loading %d machines per region", topo, cfg.Machines)
	t0 = time.Now()
	if err := w.load(ctx, f); err != nil {
		return nil, err
	}
	progress(cfg, "%s: loaded in %.1fs", topo, time.Since(t0).Seconds())
	if err := f.converge(ctx, w); err != nil {
		return nil, err
	}
	if staged {
		progress(cfg, "%s: starting the other %d agents of each region", topo, cfg.Nodes-1)
		t0 = time.Now()
		if err := f.join(ctx); err != nil {
			return nil, err
		}
		progress(cfg, "%s: started in %.1fs", topo, time.Since(t0).Seconds())
		if err := f.converge(ctx, w); err != nil {
			return nil, err
		}
	}

	res := &Result{}
	regional0, err := f.arrivals(ctx, "regional")
	if err != nil {
		return nil, err
	}
	global0, err := f.arrivals(ctx, "global")
	if err != nil {
		return nil, err
	}
	var usage0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &usage0)
	total0, cross0 := f.wire.total.Load(), f.wire.cross.Load()
	t0 = time.Now()

	winCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var peak peakHeap
	var wg sync.WaitGroup
	var regional, placement, others samples
	var inv invalidWrites
	if cfg.Fault == FaultWrites {
		wg.Add(1)
		go func() { defer wg.Done(); f.invalidWrites(winCtx, &inv) }()
	}
	wg.Add(3)
	go func() { defer wg.Done(); peak.sample(winCtx) }()
	go func() { defer wg.Done(); w.churn(winCtx, f) }()
	go func() { defer wg.Done(); f.probeRegional(winCtx, &regional) }()
	tick := time.NewTicker(5 * time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-winCtx.Done():
				return
			case <-tick.C:
				el := time.Since(t0).Seconds()
				progress(cfg, "%s: %3.0fs/%.0fs  writes %d  cross-region %.1f KB/s  all %.1f KB/s",
					topo, el, cfg.Duration.Seconds(), w.writes.Load(),
					float64(f.wire.cross.Load()-cross0)/el/1024, float64(f.wire.total.Load()-total0)/el/1024)
			}
		}
	}()
	wg.Add(1)
	go func() { defer wg.Done(); f.placements(winCtx, w, &placement, &others) }()
	<-winCtx.Done()
	// The window's figures stop here; placement probes still in flight
	// finish below (within visibleWithin) and only add latency samples.
	el := time.Since(t0).Seconds()
	cross1, total1 := f.wire.cross.Load(), f.wire.total.Load()
	var usage1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &usage1)
	writes, skipped := w.writes.Load(), w.skipped.Load()
	tick.Stop()
	<-done
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	nodes := float64(cfg.Regions * cfg.Nodes)
	res.CrossRegionBytesPerS = float64(cross1-cross0) / el
	res.BytesPerNodePerS = float64(total1-total0) / el / nodes
	res.CPUSecondsPerNode = (cpu(usage1) - cpu(usage0)) / nodes
	res.PeakHeapBytes = peak.max
	res.RegionalP50Ms, res.RegionalP99Ms = regional.percentiles()
	res.PlacementP50Ms, res.PlacementP99Ms = placement.percentiles()
	res.RegionalSamples, res.PlacementSamples, res.PlacementMissed = regional.n(), placement.n(), placement.missed
	res.RegionalMs, res.PlacementMs = regional.values(), placement.values()
	res.OthersP50Ms, res.OthersP99Ms = others.percentiles()
	res.OthersSamples = others.n()
	res.Writes, res.ChurnSkipped = int(writes), int(skipped)
	res.InvalidSent, res.InvalidAcked = int(inv.sent.Load()), int(inv.acked.Load())
	if topo == TwoTier && cfg.Fault == FaultReducer {
		for _, n := range f.regions[faultRegion] {
			if n.a.Publisher() != nil {
				for _, st := range n.a.Publisher().Status() {
					res.FaultyRejected += int(st.Rejected)
				}
			}
		}
	}
	regional1, err := f.arrivals(ctx, "regional")
	if err != nil {
		return nil, err
	}
	global1, err := f.arrivals(ctx, "global")
	if err != nil {
		return nil, err
	}
	res.RegionalArrivals, res.GlobalArrivals = regional1.since(regional0), global1.since(global0)
	if topo == TwoTier {
		n, err := f.invalidRecords()
		if err != nil {
			return nil, err
		}
		res.InvalidRecords = &n
	}
	progress(cfg, "%s: done", topo)
	return res, nil
}

func cpu(u syscall.Rusage) float64 {
	return time.Duration(u.Utime.Nano() + u.Stime.Nano()).Seconds()
}

func progress(cfg Config, format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, format+"\n", args...)
	}
}

// converge waits until every running node holds the rows it should: its
// region's (two-tier) or every region's (single), and in two-tier until
// every gateway holds every region's placements. A node that stops
// catching up is asked to run an anti-entropy exchange with a node that
// holds everything: a joining node catches up with a random peer, which
// may be another newcomer holding nothing yet, and then waits for the
// periodic exchange.
func (f *fleet) converge(ctx context.Context, w *workload) error {
	want := int64(f.cfg.Machines)
	if f.topo == Single {
		want *= int64(f.cfg.Regions)
	}
	deadline := time.Now().Add(4*time.Minute + time.Duration(f.cfg.Regions*f.cfg.Nodes*f.cfg.Machines)*50*time.Microsecond)
	t0, said := time.Now(), time.Now()
	var inFlight once
	defer inFlight.wait()
	// A lagging node whose rows have not grown for stalled is asked to
	// start an exchange with a random node of its tier that holds them all
	// (its region's first node, at least), so that complete nodes become
	// sources too and no source gets every request.
	const stalled = 4 * time.Second
	rows, moved := map[string]int64{}, map[string]time.Time{}
	for {
		var lagging []string
		complete := make([][]string, len(f.regions))
		for ri, nodes := range f.regions {
			for _, n := range nodes {
				if n.a.Store().Stats().Rows["machines"] >= want {
					complete[ri] = append(complete[ri], n.name)
				}
			}
		}
		if f.topo == Single { // one tier: any complete node is a source
			all := slices.Concat(complete...)
			for ri := range complete {
				complete[ri] = all
			}
		}
		for ri, nodes := range f.regions {
			seed := nodes[0].name
			for _, n := range nodes {
				if got := n.a.Store().Stats().Rows["machines"]; got < want {
					lagging = append(lagging, fmt.Sprintf("%s holds %d of %d machine rows", n.name, got, want))
					if got != rows[n.name] || moved[n.name].IsZero() {
						rows[n.name], moved[n.name] = got, time.Now()
					} else if time.Since(moved[n.name]) >= stalled && len(complete[ri]) > 0 {
						moved[n.name] = time.Now()
						src := complete[ri][rand.N(len(complete[ri]))]
						inFlight.do(n.name, func() { n.a.Tier().SyncWith(src) })
					}
					continue
				}
				if !n.gateway {
					continue
				}
				for rj := range f.regions {
					recs, err := listPlacements(n, regionName(rj))
					if err != nil {
						return err
					}
					if len(recs) < len(w.apps) && !f.silent(rj) {
						lagging = append(lagging, fmt.Sprintf("%s holds %d of %s's %d placements", n.name, len(recs), regionName(rj), len(w.apps)))
						key := n.name + "/global"
						if moved[key].IsZero() {
							moved[key] = time.Now()
						} else if time.Since(moved[key]) >= stalled && n.name != seed {
							moved[key] = time.Now()
							inFlight.do(key, func() { n.a.GlobalTier().SyncWith(seed) })
						}
						break
					}
				}
			}
		}
		if len(lagging) == 0 {
			progress(f.cfg, "%s: %d agents converged in %.1fs", f.topo, len(f.all()), time.Since(t0).Seconds())
			return nil
		}
		if time.Since(said) >= 5*time.Second {
			said = time.Now()
			progress(f.cfg, "%s: converging (%.0fs): %d agents lagging, e.g. %s", f.topo, time.Since(t0).Seconds(), len(lagging), lagging[0])
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tierbench: the fleet did not converge after loading: %s", strings.Join(lagging, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// once runs a function in the background unless one of the same name is
// still running.
type once struct {
	mu      sync.Mutex
	running map[string]bool
	wg      sync.WaitGroup
}

func (o *once) do(name string, fn func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.running[name] {
		return
	}
	if o.running == nil {
		o.running = map[string]bool{}
	}
	o.running[name] = true
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		fn()
		o.mu.Lock()
		delete(o.running, name)
		o.mu.Unlock()
	}()
}

func (o *once) wait() { o.wg.Wait() }

// samples are latencies in milliseconds.
type samples struct {
	mu     sync.Mutex
	ms     []float64
	missed int
}

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.ms = append(s.ms, float64(d)/float64(time.Millisecond))
	s.mu.Unlock()
}

func (s *samples) miss() {
	s.mu.Lock()
	s.missed++
	s.mu.Unlock()
}

func (s *samples) n() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ms)
}

// values returns a copy of the samples.
func (s *samples) values() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ms)
}

// percentiles returns the 50th and 99th percentiles (nearest rank), or
// nil when there are no samples.
func (s *samples) percentiles() (p50, p99 *float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ms) == 0 {
		return nil, nil
	}
	v := slices.Clone(s.ms)
	slices.Sort(v)
	rank := func(p float64) *float64 {
		i := int(math.Ceil(p*float64(len(v)))) - 1
		return &v[max(i, 0)]
	}
	return rank(0.50), rank(0.99)
}

// peakHeap samples the live heap.
type peakHeap struct{ max uint64 }

func (p *peakHeap) sample(ctx context.Context) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		metrics.Read(s)
		if s[0].Value.Kind() == metrics.KindUint64 {
			p.max = max(p.max, s[0].Value.Uint64())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
