package reducer_test

import (
	"context"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/internal/reducertest"
)

// BenchmarkRun measures one run of the example reducer, end to end: the
// host encodes the rows into the guest, the guest decodes and reduces them
// and encodes its records, the host copies and decodes the response.
// Timeouts are on, as in the agent.
func BenchmarkRun(b *testing.B) {
	for _, bc := range []struct {
		name       string
		rows, apps int
	}{
		{"rows=10", 10, 3},
		{"rows=100000", 100_000, 499},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHost(b)
			cfg := appRegions(reducertest.Module(b, "app-regions"))
			cfg.Timeout = 10 * time.Second
			r := load(b, h, cfg)
			tables := []reducer.Table{{Name: "machines", Rows: machines(bc.rows, bc.apps)}}
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
				if len(res.Records) != bc.apps {
					b.Fatalf("%d records", len(res.Records))
				}
			}
		})
	}
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
