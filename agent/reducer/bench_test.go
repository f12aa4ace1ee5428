package reducer_test

import (
	"context"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/internal/reducertest"
	"github.com/strata-state/strata/plugins/fleetv1"
)

// modes are the interrupt modes benchmarks compare: the agent's default
// (the module instrumented with a countdown that checks for the timeout)
// and wazero's own check.
var modes = []string{reducer.InterruptInline, reducer.InterruptWazero}

// BenchmarkRun measures one run of the example reducer, end to end: the
// host encodes the rows into the guest, the guest decodes and reduces them
// and encodes its records, the host copies and decodes the response.
// Timeouts are on in both interrupt modes; inline is the agent's.
func BenchmarkRun(b *testing.B) {
	for _, bc := range []struct {
		name       string
		rows, apps int
	}{
		{"rows=10", 10, 3},
		{"rows=100000", 100_000, 499},
	} {
		for _, mode := range modes {
			benchmarkRun(b, mode, bc.name, bc.rows, bc.apps)
		}
	}
}

func benchmarkRun(b *testing.B, mode, name string, rows, apps int) {
	b.Run("interrupt="+mode+"/"+name, func(b *testing.B) {
		h := newHostWith(b, reducer.HostOptions{Interrupt: mode})
		cfg := appRegions(reducertest.Module(b, "app-regions"))
		cfg.Timeout = 10 * time.Second
		r := load(b, h, cfg)
		tables := []reducer.Table{{Name: "machines", Rows: machines(rows, apps)}}
		size := 0
		for _, row := range tables[0].Rows {
			size += len(row)
		}
		b.SetBytes(int64(size))
		b.ResetTimer()
		for b.Loop() {
			res, err := r.Run(context.Background(), "ord", tables)
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Records) != apps {
				b.Fatalf("%d records", len(res.Records))
			}
		}
	})
}

// BenchmarkReady measures an agent restart with a warm cache: a new Host
// on the same cache directory loads the reducer (compilation cache hit)
// and starts its first instance.
func BenchmarkReady(b *testing.B) {
	cache := b.TempDir()
	wasm := reducertest.Module(b, "app-regions")
	ready := func() {
		h, err := reducer.NewHost(reducer.HostOptions{CacheDir: cache})
		if err != nil {
			b.Fatal(err)
		}
		r, err := h.Load(context.Background(), appRegions(wasm))
		if err != nil {
			b.Fatal(err)
		}
		r.Close(context.Background())
		h.Close(context.Background())
	}
	ready() // fill the cache
	b.ResetTimer()
	for b.Loop() {
		ready()
	}
}

// BenchmarkReadySource is BenchmarkReady for a reducer configured by source
// directory: the source hash finds the cached build.
func BenchmarkReadySource(b *testing.B) {
	cache := b.TempDir()
	cfg := reducer.Config{Name: "app-regions", Source: reducertest.Dir("app-regions"), Inputs: []string{"machines"}, Outputs: []string{"app_placements"}}
	ready := func() {
		h, err := reducer.NewHost(reducer.HostOptions{CacheDir: cache})
		if err != nil {
			b.Fatal(err)
		}
		r, err := h.Load(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		r.Close(context.Background())
		h.Close(context.Background())
	}
	ready()
	b.ResetTimer()
	for b.Loop() {
		ready()
	}
}

// BenchmarkGuest measures what Go code costs inside the host, timeouts on,
// in both interrupt modes:
// each op runs 10,000 times, the decoding ops once per row of a 10,000-row
// input (testdata/reducers/costs), and the time per op excludes the cost of
// an empty call with the same input ("none", per call). Rows are
// fleet.v1.Machine with every field set.
func BenchmarkGuest(b *testing.B) {
	for _, mode := range modes {
		b.Run("interrupt="+mode, func(b *testing.B) { benchmarkGuest(b, mode) })
	}
}

func benchmarkGuest(b *testing.B, mode string) {
	h := newHostWith(b, reducer.HostOptions{Interrupt: mode})
	r := load(b, h, reducer.Config{Name: "costs", Wasm: reducertest.Module(b, "costs"), Inputs: []string{"machines"}, Outputs: []string{"app_placements"}, Timeout: time.Minute})
	rows := []reducer.Table{{Name: "machines", Rows: machines(10_000, 10)}}
	run := func(op string, tables []reducer.Table) time.Duration {
		best := time.Hour
		for range 20 {
			res, err := r.Run(context.Background(), op+":10000", tables)
			if err != nil {
				b.Fatal(err)
			}
			best = min(best, res.Duration)
		}
		return best
	}
	none := run("none", nil)
	noneRows := run("none", rows)
	b.Run("op=none", func(b *testing.B) { b.ReportMetric(float64(none.Nanoseconds()), "ns/call") })
	for _, op := range []string{"loop", "call", "map", "alloc", "each", "rows"} {
		b.Run("op="+op, func(b *testing.B) {
			d := run(op, rows) - noneRows
			b.ReportMetric(float64(d.Nanoseconds())/10_000, "ns/row")
		})
	}
	// The same rows without their nested message (updated_at), and with
	// only the fields the example reducer reads (app, state, healthy).
	for _, v := range []struct {
		name string
		trim func(*fleetv1.Machine)
	}{
		{"no-timestamp", func(m *fleetv1.Machine) { m.UpdatedAt = nil }},
		{"three-fields", func(m *fleetv1.Machine) { *m = fleetv1.Machine{App: m.App, State: m.State, Healthy: m.Healthy} }},
		{"timestamp-only", func(m *fleetv1.Machine) { *m = fleetv1.Machine{UpdatedAt: m.UpdatedAt} }},
		{"id-only", func(m *fleetv1.Machine) { *m = fleetv1.Machine{Id: m.Id} }},
		{"state-only", func(m *fleetv1.Machine) { *m = fleetv1.Machine{State: m.State} }},
		{"empty", func(m *fleetv1.Machine) { *m = fleetv1.Machine{} }},
	} {
		trimmed := make([][]byte, len(rows[0].Rows))
		for i, row := range rows[0].Rows {
			var m fleetv1.Machine
			if err := m.StrataUnmarshal(row); err != nil {
				b.Fatal(err)
			}
			v.trim(&m)
			trimmed[i] = m.StrataAppend(nil)
		}
		tables := []reducer.Table{{Name: "machines", Rows: trimmed}}
		base := run("none", tables)
		b.Run("op=each/rows="+v.name, func(b *testing.B) {
			d := run("each", tables) - base
			b.ReportMetric(float64(d.Nanoseconds())/10_000, "ns/row")
		})
	}
}
