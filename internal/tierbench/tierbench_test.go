package tierbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/strata-state/strata/internal/reducertest"
)

// TestSmoke runs both topologies on a tiny fleet for a couple of seconds
// and checks what must hold whatever the timings: both topologies moved
// bytes between regions and measured writes, no invalid global record is
// stored, and the JSON report has the shape.
func TestSmoke(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("starts 8 agents and 2 reducer hosts; .ci/run runs it without -race")
	}
	wasm := reducertest.Module(t, "app-regions")
	var progress bytes.Buffer
	cfg := Config{Regions: 2, Nodes: 2, Gateways: 1, Machines: 40, Churn: 10, Placements: 60,
		Duration: 3 * time.Second, Seed: 1, Wasm: wasm, Dir: t.TempDir(), Progress: io.MultiWriter(&progress, tsWriter{t})}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*Result{TwoTier: rep.TwoTier, Single: rep.Single} {
		if r.CrossRegionBytesPerS <= 0 || r.BytesPerNodePerS < r.CrossRegionBytesPerS/float64(cfg.Regions*cfg.Nodes) {
			t.Errorf("%s: cross-region %.0f B/s, per node %.0f B/s: want cross-region > 0 and within the total",
				name, r.CrossRegionBytesPerS, r.BytesPerNodePerS)
		}
		if r.RegionalSamples == 0 || r.RegionalP50Ms == nil || *r.RegionalP99Ms < *r.RegionalP50Ms {
			t.Errorf("%s: %d regional samples, p50 %v p99 %v", name, r.RegionalSamples, r.RegionalP50Ms, r.RegionalP99Ms)
		}
		if r.PlacementSamples == 0 || r.PlacementP50Ms == nil || *r.PlacementP99Ms < *r.PlacementP50Ms {
			t.Errorf("%s: %d placement samples, p50 %v p99 %v", name, r.PlacementSamples, r.PlacementP50Ms, r.PlacementP99Ms)
		}
		if len(r.RegionalMs) != r.RegionalSamples || len(r.PlacementMs) != r.PlacementSamples {
			t.Errorf("%s: %d and %d latencies kept for the charts, want the %d regional and %d placement samples",
				name, len(r.RegionalMs), len(r.PlacementMs), r.RegionalSamples, r.PlacementSamples)
		}
		if r.OthersSamples == 0 || r.OthersSamples > r.PlacementSamples {
			t.Errorf("%s: %d placement samples of the regions but the first, of %d", name, r.OthersSamples, r.PlacementSamples)
		}
		if r.PlacementMissed != 0 {
			t.Errorf("%s: %d placement changes never reached every other region", name, r.PlacementMissed)
		}
		if r.Writes == 0 || r.CPUSecondsPerNode <= 0 || r.PeakHeapBytes == 0 {
			t.Errorf("%s: writes %d, cpu/node %.3f s, peak heap %d: want all > 0", name, r.Writes, r.CPUSecondsPerNode, r.PeakHeapBytes)
		}
	}
	if rep.TwoTier.GlobalArrivals["push"] == 0 {
		t.Errorf("two-tier: no global change applied by push on the gateways in the window: %v", rep.TwoTier.GlobalArrivals)
	}
	for topo, r := range map[string]*Result{TwoTier: rep.TwoTier, Single: rep.Single} {
		if r.RegionalArrivals["push"] == 0 {
			t.Errorf("%s: no regional change applied by push in the window: %v", topo, r.RegionalArrivals)
		}
	}
	if rep.TwoTier.InvalidRecords == nil || *rep.TwoTier.InvalidRecords != 0 {
		t.Errorf("two-tier invalid records = %v, want 0", rep.TwoTier.InvalidRecords)
	}
	if rep.CrossRegionRatio == nil || *rep.CrossRegionRatio != rep.TwoTier.CrossRegionBytesPerS/rep.Single.CrossRegionBytesPerS {
		t.Errorf("cross_region_ratio = %v", rep.CrossRegionRatio)
	}

	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if got, want := keys(t, doc), []string{"config", "cross_region_ratio", "single", "two_tier"}; !slices.Equal(got, want) {
		t.Errorf("report keys %v, want %v", got, want)
	}
	common := []string{"bytes_per_node_per_s", "cpu_seconds_per_node", "cross_region_bytes_per_s", "peak_heap_bytes",
		"placement_p50_ms", "placement_p99_ms", "regional_p50_ms", "regional_p99_ms"}
	for topo, want := range map[string][]string{
		"two_tier": append(slices.Clone(common), "invalid_records"),
		"single":   common,
	} {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(doc[topo], &m); err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		if got := keys(t, m); !slices.Equal(got, want) {
			t.Errorf("%s keys %v, want %v", topo, got, want)
		}
	}
	if !bytes.Contains(progress.Bytes(), []byte("two_tier: done")) || !bytes.Contains(progress.Bytes(), []byte("single: done")) {
		t.Errorf("progress lines:\n%s", progress.String())
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"one region":        {Regions: 1, Nodes: 2, Gateways: 1, Machines: 1, Duration: time.Second, Wasm: "x"},
		"too many gateways": {Regions: 2, Nodes: 2, Gateways: 3, Machines: 1, Duration: time.Second, Wasm: "x"},
		"fault not built":   {Regions: 2, Nodes: 2, Gateways: 1, Machines: 1, Duration: time.Second, Wasm: "x", Fault: "bogus"},
	} {
		if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
}

func keys(t *testing.T, m map[string]json.RawMessage) []string {
	t.Helper()
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

type tsWriter struct{ t *testing.T }

func (w tsWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s %s", time.Now().Format("15:04:05.000"), p)
	return len(p), nil
}

// TestSmokeFaults runs each fault in the two-tier topology on a tiny
// fleet: the fault was really injected (the faulty reducer's records were
// refused, the invalid writes were sent), no invalid record is stored or
// acknowledged anywhere, and every other region's placement change reached
// every other region.
func TestSmokeFaults(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("starts 4 agents and 2 reducer hosts per fault; .ci/run runs it without -race")
	}
	mods := reducertest.Modules(t, "app-regions", "leakid")
	for _, fault := range []string{FaultReducer, FaultWrites} {
		t.Run(fault, func(t *testing.T) {
			cfg := Config{Regions: 2, Nodes: 2, Gateways: 1, Machines: 20, Churn: 10, Placements: 60,
				Duration: 2 * time.Second, Seed: 1, Fault: fault, Wasm: mods["app-regions"], FaultWasm: mods["leakid"],
				Dir: t.TempDir(), only: TwoTier}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rep, err := Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := rep.TwoTier
			if r.InvalidRecords == nil || *r.InvalidRecords != 0 || r.InvalidAcked != 0 {
				t.Errorf("invalid records stored %v, invalid writes acknowledged %d: want 0 and 0", r.InvalidRecords, r.InvalidAcked)
			}
			if fault == FaultReducer && r.FaultyRejected == 0 {
				t.Error("the faulty reducer's records were not refused: was the fault injected?")
			}
			if fault == FaultWrites && r.InvalidSent == 0 {
				t.Error("no invalid write was sent")
			}
			if r.PlacementSamples == 0 || r.PlacementMissed != 0 {
				t.Errorf("other regions' placements: %d seen everywhere, %d never", r.PlacementSamples, r.PlacementMissed)
			}
		})
	}
}
