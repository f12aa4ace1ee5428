package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent"
	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/contracts"
)

func newDemoCmd() *cobra.Command {
	var duration time.Duration
	var machines, rate int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run 3 regions of 3 agents in this process and show the two tiers at work",
		Long: `Starts, in one process on loopback, 3 regions (ord, ams, syd) of 3 agents
each, 2 of them gateways, with the example contract. ord and ams publish
app_placements with the app-regions reducer; syd runs a deliberately faulty
reducer that copies machine ids (regional_only) into its records, and every
such record is rejected by the contract's leak guard while the other regions
keep publishing. A simulated fleet churns machines in every region.

Every second it shows: rows and write rate per region, the global
app → regions map as a gateway of another region sees it, regional and global
bytes on the wire, how long the last placement change took to reach another
region, and the rejected leak attempts. Run it from a strata checkout (it
builds plugins/app-regions and testdata/reducers/leakid with the Go toolchain).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cmd.OutOrStdout(), machines, rate, duration)
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long, counted from when the agents are up (default: until Ctrl-C)")
	cmd.Flags().IntVar(&machines, "machines", 60, "machines per region")
	cmd.Flags().IntVar(&rate, "rate", 40, "machine updates per second per region")
	return cmd
}

// demoRegion is one region of the demo.
type demoRegion struct {
	name    string
	faulty  bool
	agents  []*agent.Agent
	clients []*api.Client
	writes  int64 // updates sent by the simulator
	mu      sync.Mutex
}

// runDemo runs the demo until ctx ends or, when duration > 0, for
// duration from the moment the 9 agents are up (building the reducers and
// starting the agents take a while, and do not count).
func runDemo(ctx context.Context, out io.Writer, machines, rate int, duration time.Duration) error {
	for _, dir := range []string{"plugins/app-regions", "testdata/reducers/leakid"} {
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("strata demo builds its reducers from %s: run it from the root of a strata checkout", dir)
		}
	}
	tmp, err := os.MkdirTemp("", "strata-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintln(out, "building reducers (plugins/app-regions, and the faulty testdata/reducers/leakid) ...")
	good, bad := filepath.Join(tmp, "app-regions.wasm"), filepath.Join(tmp, "leakid.wasm")
	for dir, dst := range map[string]string{"plugins/app-regions": good, "testdata/reducers/leakid": bad} {
		if err := reducer.Build(ctx, dir, dst, reducer.BuildOptions{}); err != nil {
			return fmt.Errorf("building %s: %w", dir, err)
		}
	}

	regions := []*demoRegion{{name: "ord"}, {name: "ams"}, {name: "syd", faulty: true}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var runs sync.WaitGroup
	runCtx, stopAgents := context.WithCancel(context.Background())
	defer func() {
		stopAgents()
		runs.Wait()
	}()
	var firstRegional, firstGlobal string
	fmt.Fprintln(out, "starting 3 regions × 3 agents on 127.0.0.1 ...")
	for _, r := range regions {
		wasm := good
		if r.faulty {
			wasm = bad
		}
		for i := 1; i <= 3; i++ {
			node := fmt.Sprintf("%s-%d", r.name, i)
			var rjoin, gjoin []string
			if len(r.agents) > 0 {
				rjoin = []string{r.agents[0].Tier().Addr()}
			}
			if firstGlobal != "" {
				gjoin = []string{firstGlobal}
			}
			cfg, err := demoConfig(filepath.Join(tmp, node), node, r.name, wasm, i <= 2, rjoin, gjoin)
			if err != nil {
				return err
			}
			a, err := agent.New(ctx, cfg, agent.Options{Logger: log.With("node", node), ContractFS: contracts.Example})
			if err != nil {
				return fmt.Errorf("%s: %w", node, err)
			}
			runs.Add(1)
			go func() { defer runs.Done(); a.Run(runCtx) }()
			r.agents = append(r.agents, a)
			r.clients = append(r.clients, api.NewClient(a.Addr(), ""))
			if firstGlobal == "" && a.GlobalTier() != nil {
				firstGlobal = a.GlobalTier().Addr()
			}
			if firstRegional == "" {
				firstRegional = a.Tier().Addr()
			}
		}
	}

	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}

	// The simulated fleet: machines of a few apps, churning.
	apps := []string{"web", "api", "db", "worker", "cache"}
	for _, r := range regions {
		go simulate(ctx, r, apps, machines, rate)
	}
	var lastProp propagation
	go measurePropagation(ctx, regions, &lastProp)

	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	prev := snapshotWire(regions)
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nstopping ...")
			return nil
		case <-tick.C:
		}
		cur := snapshotWire(regions)
		render(out, regions, time.Since(start), prev, cur, &lastProp)
		prev = cur
	}
}

func demoConfig(dir, node, region, wasm string, gateway bool, rjoin, gjoin []string) (*config.Config, error) {
	q := func(ss []string) string {
		var o []string
		for _, s := range ss {
			o = append(o, fmt.Sprintf("%q", s))
		}
		return strings.Join(o, ", ")
	}
	text := fmt.Sprintf(`node = %q
cluster = "demo"
data_dir = %q
[contracts]
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = %q
bind = "127.0.0.1:0"
join = [%s]
sync_interval = "2s"
[api]
addr = "127.0.0.1:0"
`, node, filepath.Join(dir, "data"), region, q(rjoin))
	if gateway {
		text += fmt.Sprintf(`[global]
bind = "127.0.0.1:0"
join = [%s]
stale_after = "5s"
gossip_interval = "100ms"
sync_interval = "5s"
[[reducers]]
name = %q
wasm = %q
inputs = ["machines"]
outputs = ["app_placements"]
debounce = "100ms"
`, q(gjoin), map[bool]string{true: "app-regions", false: "leak-demo"}[!strings.Contains(wasm, "leakid")], wasm)
	}
	return config.Parse([]byte(text), node+".toml")
}

// simulate writes machines, then flips their health and state.
func simulate(ctx context.Context, r *demoRegion, apps []string, machines, rate int) {
	rng := rand.New(rand.NewPCG(uint64(len(r.name)), uint64(r.name[0])))
	put := func(i int, healthy bool, state string) {
		c := r.clients[rng.IntN(len(r.clients))]
		id := fmt.Sprintf("%s-m%03d", r.name, i)
		row := fmt.Sprintf(`{"id":%q,"app":%q,"state":%q,"healthy":%v,"host":"%s-host-%02d","private_ip":"10.%d.%d.%d"}`,
			id, apps[i%len(apps)], state, healthy, r.name, i%8, len(r.name), i/256, i%256)
		if _, err := c.Put(ctx, "machines", id, []byte(row)); err == nil {
			r.mu.Lock()
			r.writes++
			r.mu.Unlock()
		}
	}
	for i := 0; i < machines && ctx.Err() == nil; i++ {
		put(i, true, "MACHINE_STATE_STARTED")
	}
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		state := "MACHINE_STATE_STARTED"
		if rng.IntN(10) == 0 {
			state = "MACHINE_STATE_STOPPED"
		}
		put(rng.IntN(machines), rng.IntN(5) != 0, state)
	}
}

// propagation is the last measured cross-region propagation of a
// placement change.
type propagation struct {
	mu   sync.Mutex
	what string
	took time.Duration
}

// measurePropagation starts a "canary" app in ord every few seconds (and
// stops it the next time) and times until ams's gateway sees the change.
func measurePropagation(ctx context.Context, regions []*demoRegion, p *propagation) {
	ord, ams := regions[0], regions[1]
	n := 0
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
		n++
		start := n%2 == 1
		state := "MACHINE_STATE_STOPPED"
		if start {
			state = "MACHINE_STATE_STARTED"
		}
		row := fmt.Sprintf(`{"id":"canary-1","app":"canary","state":%q,"healthy":true}`, state)
		t0 := time.Now()
		if _, err := ord.clients[2].Put(ctx, "machines", "canary-1", []byte(row)); err != nil {
			continue
		}
		for ctx.Err() == nil && time.Since(t0) < 10*time.Second {
			_, err := global.Get(ams.agents[0].Global(), "app_placements", "ord", "canary")
			if (err == nil) == start {
				verb := map[bool]string{true: "started", false: "stopped"}[start]
				p.mu.Lock()
				p.what, p.took = fmt.Sprintf("app canary %s in ord (written on ord-3, a non-gateway), seen by ams-1", verb), time.Since(t0)
				p.mu.Unlock()
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

type wireSample struct {
	at       time.Time
	regional int64
	global   int64
	writes   map[string]int64
}

func snapshotWire(regions []*demoRegion) wireSample {
	s := wireSample{at: time.Now(), writes: map[string]int64{}}
	for _, r := range regions {
		for _, a := range r.agents {
			rs, _ := a.WireBytes(cluster.Regional)
			gs, _ := a.WireBytes(cluster.Global)
			s.regional += rs
			s.global += gs
		}
		r.mu.Lock()
		s.writes[r.name] = r.writes
		r.mu.Unlock()
	}
	return s
}

func render(out io.Writer, regions []*demoRegion, el time.Duration, prev, cur wireSample, p *propagation) {
	secs := cur.at.Sub(prev.at).Seconds()
	fmt.Fprint(out, "\033[H\033[2J")
	fmt.Fprintf(out, "strata demo: 3 regions × 3 agents (2 gateways each) on 127.0.0.1, up %s. Ctrl-C stops.\n\n", el.Round(time.Second))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tAGENTS\tROWS\tWRITES/S\tPUBLISHER\tREDUCER\tRECORDS OUT\tREJECTED\tLAST ERROR")
	for _, r := range regions {
		a := r.agents[0]
		rows := a.Store().Stats().Rows["machines"]
		publisher := a.Tier().LowestAlive("gateway")
		var st reducer.Status
		for _, g := range r.agents {
			if g.Config().Node == publisher && g.Publisher() != nil {
				if all := g.Publisher().Status(); len(all) > 0 {
					st = all[0]
				}
			}
		}
		lastErr := st.PublishError
		if st.LastError != nil {
			lastErr = st.LastError.Message
		}
		if len(lastErr) > 70 {
			lastErr = lastErr[:70] + "…"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%d\t%d\t%s\n", r.name, a.Tier().NumAlive(), rows,
			float64(cur.writes[r.name]-prev.writes[r.name])/secs, publisher, st.Name, recordsOut(st), st.Rejected, lastErr)
	}
	tw.Flush()

	fmt.Fprintf(out, "\nGLOBAL app_placements, as ams-1 (a gateway of ams) sees it:\n")
	g := regions[1].agents[0].Global()
	rec, _ := regions[1].agents[0].Contract().Record("app_placements")
	servingField := rec.Desc.Fields().ByName("serving")
	recs, _ := global.List(g, "app_placements", "")
	byApp := map[string][]string{}
	for _, r := range recs {
		region, app := r.Region, r.Key
		serving := false
		if m, err := rec.DecodeBinary(r.Value); err == nil {
			serving = m.ProtoReflect().Get(servingField).Bool()
		}
		mark := region
		if !serving {
			mark += " (not serving)"
		}
		byApp[app] = append(byApp[app], mark)
	}
	apps := make([]string, 0, len(byApp))
	for a := range byApp {
		apps = append(apps, a)
	}
	sort.Strings(apps)
	for _, a := range apps {
		slices.Sort(byApp[a])
		fmt.Fprintf(out, "  %-8s %s\n", a, strings.Join(byApp[a], ", "))
	}
	if len(apps) == 0 {
		fmt.Fprintln(out, "  (nothing published yet)")
	}

	rr := float64(cur.regional-prev.regional) / secs
	gr := float64(cur.global-prev.global) / secs
	fmt.Fprintf(out, "\nWIRE (all agents, sent): regional %.1f KB/s, global %.1f KB/s\n", rr/1024, gr/1024)
	// One cluster of all the agents would carry every region's rows to
	// every agent: each change reaches all of them instead of its region's,
	// and a peer is in another region for most of the exchanges.
	all, per := 0, len(regions[0].agents)
	for _, r := range regions {
		all += len(r.agents)
	}
	single := rr * float64(all) / float64(per) * float64(all-per) / float64(all-1)
	fmt.Fprintf(out, "ONE CLUSTER of these %d agents would send about %.1f KB/s across regions for this churn (computed, not measured: "+
		"regional bytes × %d/%d agents reached × %d/%d peers elsewhere); the global tier sends at most %.1f KB/s, part of it between gateways "+
		"of one region. `strata bench tiers` measures both.\n", all, single/1024, all, per, all-per, all-1, gr/1024)
	p.mu.Lock()
	if p.what != "" {
		fmt.Fprintf(out, "LAST PROPAGATION: %s after %s\n", p.what, p.took.Round(time.Millisecond))
	}
	p.mu.Unlock()
	fmt.Fprintf(out, "\nsyd's reducer copies machine ids (regional_only) into its records: the contract's leak guard\nrejects every one of them on the writer, and no gateway stores a syd record; ord and ams publish on.\n")
}

// syncWriter serialises writes to w and reads of it (the demo test reads
// what the demo writes).
type syncWriter struct{ w *bytes.Buffer }

var demoOutMu sync.Mutex

func (s *syncWriter) Write(p []byte) (int, error) {
	demoOutMu.Lock()
	defer demoOutMu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	demoOutMu.Lock()
	defer demoOutMu.Unlock()
	return s.w.String()
}

// recordsOut is the records of a reducer's last run.
func recordsOut(st reducer.Status) int {
	if st.LastRun == nil {
		return 0
	}
	return st.LastRun.RecordsOut
}
