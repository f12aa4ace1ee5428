package reducer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/internal/reducertest"
	"github.com/strata-state/strata/plugins/fleetv1"
)

// TestRustExampleMatchesGo runs the Rust example (plugins/app-regions-rust)
// and the Go one (plugins/app-regions) on the same inputs in the same
// host: the responses must be the same bytes, and the failures the same
// kind.
func TestRustExampleMatchesGo(t *testing.T) {
	h := newHost(t)
	mods := reducertest.Modules(t, "app-regions", reducertest.RustExample)
	loadBoth := func(inputs []string) (goR, rsR *reducer.Reducer) {
		goCfg, rsCfg := appRegions(mods["app-regions"]), appRegions(mods[reducertest.RustExample])
		rsCfg.Name = reducertest.RustExample
		if inputs != nil {
			goCfg.Inputs, rsCfg.Inputs = inputs, inputs
		}
		return load(t, h, goCfg), load(t, h, rsCfg)
	}

	unknownField := append((&fleetv1.Machine{Id: "u1", App: "web", State: fleetv1.MachineState_MACHINE_STATE_STARTED, Healthy: true}).StrataAppend(nil),
		0xf8, 0x07, 0x01) // field 127, varint 1: a field a later contract added
	reordered := []byte{0x20, 0x01, 0x18, 0x01, 0x12, 0x03, 'w', 'e', 'b', 0x0a, 0x02, 'r', '1'} // healthy, state, app, id
	cases := []struct {
		name   string
		inputs []string // configured inputs, when not machines
		tables []reducer.Table
		fails  bool
	}{
		{name: "no rows", tables: []reducer.Table{{Name: "machines"}}},
		{name: "10 rows", tables: []reducer.Table{{Name: "machines", Rows: machines(10, 3)}}},
		{name: "5000 rows", tables: []reducer.Table{{Name: "machines", Rows: machines(5000, 97)}}},
		{name: "unknown field and field order", tables: []reducer.Table{{Name: "machines", Rows: [][]byte{unknownField, reordered}}}},
		{name: "machines not an input", inputs: []string{"volumes"}, tables: []reducer.Table{{Name: "volumes"}}, fails: true},
		{name: "row that does not decode", tables: []reducer.Table{{Name: "machines", Rows: [][]byte{{0x0a, 0x05, 'w'}}}}, fails: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			goR, rsR := loadBoth(tc.inputs)
			goRes, goErr := goR.Run(context.Background(), "ord", tc.tables)
			rsRes, rsErr := rsR.Run(context.Background(), "ord", tc.tables)
			if tc.fails {
				var ge, re *reducer.Error
				if !errors.As(goErr, &ge) || !errors.As(rsErr, &re) || ge.Kind != re.Kind {
					t.Fatalf("failures differ: go %v, rust %v", goErr, rsErr)
				}
				t.Logf("go: %v\nrust: %v", goErr, rsErr)
				return
			}
			if goErr != nil || rsErr != nil {
				t.Fatalf("go: %v, rust: %v", goErr, rsErr)
			}
			if len(goRes.Records) != len(rsRes.Records) {
				t.Fatalf("go wrote %d records, rust %d", len(goRes.Records), len(rsRes.Records))
			}
			for i, g := range goRes.Records {
				r := rsRes.Records[i]
				if g.Name != r.Name || g.Key != r.Key || !bytes.Equal(g.Value, r.Value) {
					t.Errorf("record %d: go %s/%s %x, rust %s/%s %x", i, g.Name, g.Key, g.Value, r.Name, r.Key, r.Value)
				}
			}
		})
	}
}

// TestBuildRustErrors: the Rust build names what is wrong.
func TestBuildRustErrors(t *testing.T) {
	dir := t.TempDir()
	err := reducer.Build(context.Background(), dir, filepath.Join(dir, "x.wasm"), reducer.BuildOptions{Lang: reducer.LangRust})
	if err == nil || !strings.Contains(err.Error(), "has no Cargo.toml") {
		t.Errorf("--lang rust without Cargo.toml: %v", err)
	}
	err = reducer.Build(context.Background(), dir, filepath.Join(dir, "x.wasm"), reducer.BuildOptions{Lang: "zig"})
	if err == nil || !strings.Contains(err.Error(), `unknown reducer language "zig"`) {
		t.Errorf("--lang zig: %v", err)
	}
	write(t, filepath.Join(dir, "Cargo.toml"), "[package]\nname = \"x\"\nversion = \"0.1.0\"\n")
	err = reducer.Build(context.Background(), dir, filepath.Join(dir, "x.wasm"), reducer.BuildOptions{Rustc: filepath.Join(dir, "no-rustc")})
	if !errors.Is(err, reducer.ErrNoRust) || !strings.Contains(err.Error(), "no-rustc") {
		t.Errorf("missing rustc: %v", err)
	}
}

// TestBuildRust builds a crate of its own: a library that is not a
// cdylib is refused with the fix, and the source hash follows the crate and
// its path dependencies but not its target directory.
func TestBuildRust(t *testing.T) {
	if testing.Short() {
		t.Skip("runs cargo")
	}
	dir := t.TempDir()
	crate, dep := filepath.Join(dir, "crate"), filepath.Join(dir, "dep")
	write(t, filepath.Join(dep, "Cargo.toml"), "[package]\nname = \"dep\"\nversion = \"0.1.0\"\nedition = \"2021\"\n")
	write(t, filepath.Join(dep, "src", "lib.rs"), "pub fn one() -> u32 { 1 }\n")
	write(t, filepath.Join(crate, "Cargo.toml"), "[package]\nname = \"crate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\ndep = { path = \"../dep\" }\n")
	write(t, filepath.Join(crate, "src", "lib.rs"), "pub fn two() -> u32 { dep::one() + 1 }\n")

	sum := func() string {
		t.Helper()
		s, err := reducer.SourceHash(crate, "")
		if errors.Is(err, reducer.ErrNoRust) {
			reducertest.SkipNoRust(t, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sum()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := reducer.Build(ctx, crate, filepath.Join(dir, "crate.wasm"), reducer.BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), `crate-type = ["cdylib"]`) {
		t.Errorf("a crate that is not a cdylib: %v", err)
	}
	s0 := sum() // cargo wrote Cargo.lock, which counts
	write(t, filepath.Join(crate, "target", "debug", "junk"), "x")
	if s := sum(); s != s0 {
		t.Errorf("a file in target/ changed the source hash")
	}
	write(t, filepath.Join(dep, "src", "lib.rs"), "pub fn one() -> u32 { 2 }\n")
	if s := sum(); s == s0 {
		t.Errorf("a change in a path dependency did not change the source hash")
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRunLang is BenchmarkRun for the example reducer in each
// language, in the agent's interrupt mode: plugins/app-regions (Go) and
// plugins/app-regions-rust (Rust) on the same rows. Besides the time per
// run it reports the process's CPU time per run (user and system, GC
// included), steadier than wall time on a shared machine, and the module's
// size.
func BenchmarkRunLang(b *testing.B) {
	mods := reducertest.Modules(b, "app-regions", reducertest.RustExample)
	for _, bc := range []struct {
		name       string
		rows, apps int
	}{
		{"rows=10", 10, 3},
		{"rows=100000", 100_000, 499},
	} {
		for _, lang := range []string{"go", "rust"} {
			b.Run("lang="+lang+"/"+bc.name, func(b *testing.B) {
				mod := mods["app-regions"]
				if lang == "rust" {
					mod = mods[reducertest.RustExample]
				}
				h := newHost(b)
				cfg := appRegions(mod)
				cfg.Timeout = 10 * time.Second
				r := load(b, h, cfg)
				tables := []reducer.Table{{Name: "machines", Rows: machines(bc.rows, bc.apps)}}
				size := 0
				for _, row := range tables[0].Rows {
					size += len(row)
				}
				b.SetBytes(int64(size))
				var ru0, ru1 syscall.Rusage
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
				runs := 0
				b.ResetTimer()
				for b.Loop() {
					runs++
					res, err := r.Run(context.Background(), "ord", tables)
					if err != nil {
						b.Fatal(err)
					}
					if len(res.Records) != bc.apps {
						b.Fatalf("%d records", len(res.Records))
					}
				}
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
				cpu := ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano()
				b.ReportMetric(float64(cpu)/float64(runs), "cpu-ns/op")
				if st, err := os.Stat(mod); err == nil {
					b.ReportMetric(float64(st.Size()), "module-bytes")
				}
			})
		}
	}
}

// BenchmarkReadyLang is BenchmarkReady for the example reducer in each
// language: a new Host on a warm compilation cache loads the module and
// starts its first instance.
func BenchmarkReadyLang(b *testing.B) {
	mods := reducertest.Modules(b, "app-regions", reducertest.RustExample)
	for _, lang := range []string{"go", "rust"} {
		b.Run("lang="+lang, func(b *testing.B) {
			mod := mods["app-regions"]
			if lang == "rust" {
				mod = mods[reducertest.RustExample]
			}
			cache := b.TempDir()
			ready := func() {
				h, err := reducer.NewHost(reducer.HostOptions{CacheDir: cache})
				if err != nil {
					b.Fatal(err)
				}
				r, err := h.Load(context.Background(), appRegions(mod))
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
		})
	}
}

// TestRustPanic: a Rust reducer that panics (panic = "abort") traps; the
// run fails with kind trap and shows the panic message from stderr, and
// the next run gets a new instance.
func TestRustPanic(t *testing.T) {
	h := newHost(t)
	cfg := appRegions(reducertest.Module(t, "rustpanic"))
	cfg.Name = "rustpanic"
	r := load(t, h, cfg)
	for range 2 {
		_, err := r.Run(context.Background(), "ord", []reducer.Table{{Name: "machines", Rows: machines(1, 1)}})
		var re *reducer.Error
		if !errors.As(err, &re) || re.Kind != reducer.KindTrap ||
			!strings.Contains(err.Error(), "panicked at") || !strings.Contains(err.Error(), "index out of bounds: the len is 0 but the index is 3") {
			t.Fatalf("run: %v", err)
		}
	}
}
