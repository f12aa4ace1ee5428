package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/internal/tierbench"
	"github.com/strata-state/strata/internal/tierbench/tierchart"
)

func newBenchTiersCmd() *cobra.Command {
	cfg := tierbench.Config{}
	var jsonFile, svgDir string
	cmd := &cobra.Command{
		Use:   "tiers",
		Short: "Measure two tiers against one cluster spanning every region, with the same agent and workload",
		Long: `Starts, in this process on loopback, --regions regions × --nodes agents twice:

  two-tier  a regional cluster per region, and the global tier on --gateways
            gateways per region running the app-regions reducer;
  single    one cluster of every node of every region, holding every
            machine row; other regions learn placements from the rows.

Both run the same seeded workload: --machines machine rows per region,
--churn state and health flips per second per region, and --placements apps
starting in or leaving a region per minute per region, for --duration after
loading and convergence. It reports, per topology, the gossip bytes sent
between nodes of different regions (counted at the memberlist transport),
all gossip bytes per node, regional propagation (write → every node of its
region), placement propagation (write → every gateway (two-tier) or every
node (single) of every other region), CPU seconds per node and peak heap (of
this one process), and invalid global records held by any gateway.

--fault reducer has the first region's gateways run testdata/reducers/leakid,
which copies machine ids (regional_only) into its records; --fault writes
sends the first region 100 invalid writes a second through its API. With a
fault, placement propagation is measured on the other regions' placements.

--svg DIR draws cross-region-bytes.svg, propagation-regional.svg and
propagation-placement.svg there.

Run it from a strata checkout: it builds plugins/app-regions (and for
--fault reducer, testdata/reducers/leakid).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			const src = "plugins/app-regions"
			if _, err := os.Stat(src); err != nil {
				return fmt.Errorf("strata bench tiers builds its reducer from %s: run it from the root of a strata checkout", src)
			}
			tmp, err := os.MkdirTemp("", "strata-bench-tiers-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			cfg.Wasm, cfg.Dir = filepath.Join(tmp, "app-regions.wasm"), tmp
			fmt.Fprintln(cmd.ErrOrStderr(), "building plugins/app-regions ...")
			if err := reducer.Build(ctx, src, cfg.Wasm, reducer.BuildOptions{}); err != nil {
				return fmt.Errorf("building %s: %w", src, err)
			}
			if cfg.Fault == tierbench.FaultReducer {
				const faulty = "testdata/reducers/leakid"
				fmt.Fprintln(cmd.ErrOrStderr(), "building the faulty reducer", faulty, "...")
				cfg.FaultWasm = filepath.Join(tmp, "leakid.wasm")
				if err := reducer.Build(ctx, faulty, cfg.FaultWasm, reducer.BuildOptions{}); err != nil {
					return fmt.Errorf("building %s: %w", faulty, err)
				}
			}
			cfg.Progress = cmd.ErrOrStderr()
			rep, err := tierbench.Run(ctx, cfg)
			if err != nil {
				return err
			}
			printTiers(cmd.OutOrStdout(), rep)
			if jsonFile != "" {
				b, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(jsonFile, append(b, '\n'), 0o644); err != nil {
					return fmt.Errorf("--json: %w", err)
				}
			}
			if svgDir != "" {
				paths, err := tierchart.Write(svgDir, rep)
				if err != nil {
					return fmt.Errorf("--svg: %w", err)
				}
				for _, p := range paths {
					fmt.Fprintln(cmd.ErrOrStderr(), "wrote", p)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Regions, "regions", 4, "regions")
	f.IntVar(&cfg.Nodes, "nodes", 8, "agents per region")
	f.IntVar(&cfg.Gateways, "gateways", 2, "gateways per region (two-tier)")
	f.IntVar(&cfg.Machines, "machines", 2000, "machine rows per region")
	f.IntVar(&cfg.Churn, "churn", 50, "machine state and health flips per second per region")
	f.IntVar(&cfg.Placements, "placements", 6, "apps starting in or leaving a region per minute per region")
	f.DurationVar(&cfg.Duration, "duration", 60*time.Second, "measured window per topology, after loading and convergence")
	f.Uint64Var(&cfg.Seed, "seed", 1, "workload seed")
	f.StringVar(&cfg.Fault, "fault", tierbench.FaultNone, "fault in the first region: none, reducer (a reducer that leaks regional_only ids; two-tier only) or writes (a burst of invalid writes through its API)")
	f.StringVar(&jsonFile, "json", "", "also write the report as JSON to this file")
	f.StringVar(&svgDir, "svg", "", "also draw charts as SVG files into this directory: cross-region bytes per topology, and propagation CDFs (regional, placement)")
	return cmd
}

// printTiers writes the report as a table; a figure that was not
// measured (no sample in the window) is shown as such, never as a number.
func printTiers(out io.Writer, rep *tierbench.Report) {
	c := rep.Config
	fmt.Fprintf(out, "\nstrata bench tiers: %d regions × %d nodes (%d gateways), %d machines/region, churn %d/s/region, "+
		"placements %d/min/region, %s window, seed %d, fault %s\n\n",
		c.Regions, c.Nodes, c.Gateways, c.Machines, c.Churn, c.Placements, c.Duration, c.Seed, c.Fault)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	t, s := rep.TwoTier, rep.Single
	row := func(name, a, b string) { fmt.Fprintf(tw, "%s\t%s\t%s\t\n", name, a, b) }
	row("", "two-tier", "single")
	row("cross-region bytes/s", kb(t.CrossRegionBytesPerS), kb(s.CrossRegionBytesPerS))
	row("bytes/s per node (all)", kb(t.BytesPerNodePerS), kb(s.BytesPerNodePerS))
	row("regional p50 / p99", ms2(t.RegionalP50Ms, t.RegionalP99Ms), ms2(s.RegionalP50Ms, s.RegionalP99Ms))
	row("placement p50 / p99", ms2(t.PlacementP50Ms, t.PlacementP99Ms), ms2(s.PlacementP50Ms, s.PlacementP99Ms))
	row(fmt.Sprintf("placement p50 / p99, regions but %s (n)", tierbench.RegionName(0)),
		ms2(t.OthersP50Ms, t.OthersP99Ms)+fmt.Sprintf(" (%d)", t.OthersSamples), ms2(s.OthersP50Ms, s.OthersP99Ms)+fmt.Sprintf(" (%d)", s.OthersSamples))
	row("regional / placement samples", fmt.Sprintf("%d / %d", t.RegionalSamples, t.PlacementSamples),
		fmt.Sprintf("%d / %d", s.RegionalSamples, s.PlacementSamples))
	row("placements never seen (30 s)", fmt.Sprint(t.PlacementMissed), fmt.Sprint(s.PlacementMissed))
	row("writes in window (per s)", perS(t.Writes, c.Duration), perS(s.Writes, c.Duration))
	row("cross-region bytes per write", perWrite(t, c.Duration), perWrite(s, c.Duration))
	row("churn ticks skipped (32 in flight)", fmt.Sprint(t.ChurnSkipped), fmt.Sprint(s.ChurnSkipped))
	row("CPU s per node (process/nodes)", fmt.Sprintf("%.2f", t.CPUSecondsPerNode), fmt.Sprintf("%.2f", s.CPUSecondsPerNode))
	row("peak heap (process)", mib(t.PeakHeapBytes), mib(s.PeakHeapBytes))
	row("invalid global records", count(t.InvalidRecords), count(s.InvalidRecords))
	row("regional changes applied, by path", t.RegionalArrivals.String(), s.RegionalArrivals.String())
	row("global changes applied on gateways, by path", t.GlobalArrivals.String(), "n/a (no global tier)")
	if c.Fault == tierbench.FaultWrites {
		row("invalid writes sent / acknowledged", fmt.Sprintf("%d / %d", t.InvalidSent, t.InvalidAcked),
			fmt.Sprintf("%d / %d", s.InvalidSent, s.InvalidAcked))
	}
	if c.Fault == tierbench.FaultReducer {
		row("faulty region: records refused, last run", fmt.Sprint(t.FaultyRejected), "n/a (no reducers)")
	}
	tw.Flush()
	if c.Fault != tierbench.FaultNone {
		fmt.Fprintf(out, "\nfault %q in the first region: placement figures are the other regions' placements; "+
			"compare them with a run with --fault none.\n", c.Fault)
	}
	if rep.CrossRegionRatio != nil {
		fmt.Fprintf(out, "\ncross-region bytes, two-tier / single: %.4f (%.2f%%)\n", *rep.CrossRegionRatio, 100**rep.CrossRegionRatio)
	} else {
		fmt.Fprintln(out, "\ncross-region ratio: not measured (single sent no cross-region bytes)")
	}
}

func perS(n int, d time.Duration) string {
	return fmt.Sprintf("%d (%.0f/s)", n, float64(n)/d.Seconds())
}

// perWrite is cross-region bytes over writes, both measured in the window:
// the fair comparison when a topology could not keep up with the churn.
func perWrite(r *tierbench.Result, d time.Duration) string {
	if r.Writes == 0 {
		return "not measured (no writes)"
	}
	return fmt.Sprintf("%.0f B", r.CrossRegionBytesPerS*d.Seconds()/float64(r.Writes))
}

func kb(b float64) string { return fmt.Sprintf("%.1f KB", b/1024) }

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func ms2(p50, p99 *float64) string {
	if p50 == nil || p99 == nil {
		return "not measured"
	}
	return fmt.Sprintf("%.0f / %.0f ms", *p50, *p99)
}

func count(n *int) string {
	if n == nil {
		return "n/a (no global tier)"
	}
	return fmt.Sprint(*n)
}
