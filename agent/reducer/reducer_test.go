package reducer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/recordcheck"
	"github.com/strata-state/strata/internal/reducertest"
	"github.com/strata-state/strata/plugins/fleetv1"
	"github.com/strata-state/strata/sdk/wkt"
)

// newHost returns a Host with the caches shared by all tests.
func newHost(t testing.TB) *reducer.Host {
	t.Helper()
	return newHostWith(t, reducer.HostOptions{})
}

func newHostWith(t testing.TB, opts reducer.HostOptions) *reducer.Host {
	t.Helper()
	opts.CacheDir = reducertest.HostCacheDir()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := reducer.NewHost(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func load(t testing.TB, h *reducer.Host, cfg reducer.Config) *reducer.Reducer {
	t.Helper()
	r, err := h.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func appRegions(wasm string) reducer.Config {
	return reducer.Config{Name: "app-regions", Wasm: wasm, Inputs: []string{"machines"}, Outputs: []string{"app_placements"}}
}

// machines returns n encoded machines of apps app-0 … app-(apps-1):
// every fourth is stopped, every third unhealthy.
func machines(n, apps int) [][]byte {
	rows := make([][]byte, n)
	for i := range n {
		m := &fleetv1.Machine{
			Id:        fmt.Sprintf("m%07d", i),
			App:       fmt.Sprintf("app-%d", i%apps),
			State:     fleetv1.MachineState_MACHINE_STATE_STARTED,
			Healthy:   i%3 != 0,
			Host:      fmt.Sprintf("host-%d", i%1000),
			PrivateIp: fmt.Sprintf("fdaa:0:1::%x", i),
			UpdatedAt: &wkt.Timestamp{Seconds: 1_700_000_000 + int64(i), Nanos: 1},
		}
		if i%4 == 3 {
			m.State = fleetv1.MachineState_MACHINE_STATE_STOPPED
		}
		rows[i] = m.StrataAppend(nil)
	}
	return rows
}

func placements(t testing.TB, res *reducer.Result) map[string]*fleetv1.AppPlacement {
	t.Helper()
	out := map[string]*fleetv1.AppPlacement{}
	for _, rec := range res.Records {
		if rec.Name != "app_placements" {
			t.Fatalf("record %s/%s: unexpected name", rec.Name, rec.Key)
		}
		p := new(fleetv1.AppPlacement)
		if err := p.StrataUnmarshal(rec.Value); err != nil {
			t.Fatalf("record %s: %v", rec.Key, err)
		}
		if p.StrataKey() != rec.Key {
			t.Fatalf("record key %q, message key %q", rec.Key, p.StrataKey())
		}
		out[rec.Key] = p
	}
	return out
}

func TestAppRegions(t *testing.T) {
	h := newHost(t)
	r := load(t, h, appRegions(reducertest.Module(t, "app-regions")))
	rows := []*fleetv1.Machine{
		{Id: "a1", App: "web", State: fleetv1.MachineState_MACHINE_STATE_STARTED, Healthy: true},
		{Id: "a2", App: "web", State: fleetv1.MachineState_MACHINE_STATE_STARTED, Healthy: true},
		{Id: "a3", App: "web", State: fleetv1.MachineState_MACHINE_STATE_STOPPED, Healthy: true},
		{Id: "b1", App: "api", State: fleetv1.MachineState_MACHINE_STATE_STARTED, Healthy: false},
		{Id: "c1", App: "db", State: fleetv1.MachineState_MACHINE_STATE_SUSPENDED, Healthy: true},
	}
	var enc [][]byte
	for _, m := range rows {
		enc = append(enc, m.StrataAppend(nil))
	}
	res, err := r.Run(context.Background(), "ord", []reducer.Table{{Name: "machines", Rows: enc}})
	if err != nil {
		t.Fatal(err)
	}
	got := placements(t, res)
	want := map[string]*fleetv1.AppPlacement{
		"api": {App: "api", Capacity: fleetv1.CapacityBand_CAPACITY_BAND_NONE},
		"web": {App: "web", Serving: true, Capacity: fleetv1.CapacityBand_CAPACITY_BAND_LOW},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %v", len(got), len(want), got)
	}
	for k, w := range want {
		if g := got[k]; g == nil || *g != *w {
			t.Errorf("record %s = %+v, want %+v", k, g, w)
		}
	}
	if res.RowsIn != len(rows) {
		t.Errorf("RowsIn = %d", res.RowsIn)
	}
	if res.Records[0].Key != "api" || res.Records[1].Key != "web" {
		t.Errorf("records not sorted: %v", res.Records)
	}

	st := r.Status()
	if st.Runs != 1 || st.LastRun == nil || !st.LastRun.OK || st.LastRun.RowsIn != 5 || st.LastRun.RecordsOut != 2 || st.LastError != nil {
		t.Errorf("status = %+v", st)
	}
	if len(st.Hash) != 64 {
		t.Errorf("hash = %q", st.Hash)
	}
	b, _ := json.Marshal(reducer.Statuses([]*reducer.Reducer{r}))
	for _, key := range []string{`"hash"`, `"inputs":["machines"]`, `"outputs":["app_placements"]`, `"last_run"`, `"rows_in":5`, `"records_out":2`, `"duration_ms"`, `"last_error":null`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("status JSON lacks %s: %s", key, b)
		}
	}
}

func TestEmptyAndUnknownTables(t *testing.T) {
	h := newHost(t)
	r := load(t, h, appRegions(reducertest.Module(t, "app-regions")))
	res, err := r.Run(context.Background(), "ord", nil)
	if err != nil || len(res.Records) != 0 {
		t.Fatalf("no rows: %v, %v", res, err)
	}
	_, err = r.Run(context.Background(), "ord", []reducer.Table{{Name: "volumes"}})
	if !errors.Is(err, reducer.ErrInput) || !strings.Contains(err.Error(), `"volumes" is not an input`) {
		t.Fatalf("unknown table: %v", err)
	}
}

func TestRowsThatDoNotDecode(t *testing.T) {
	h := newHost(t)
	r := load(t, h, appRegions(reducertest.Module(t, "app-regions")))
	_, err := r.Run(context.Background(), "ord", []reducer.Table{{Name: "machines", Rows: [][]byte{{0x0a, 0x10, 'x'}}}})
	if !errors.Is(err, reducer.ErrGuest) || !strings.Contains(err.Error(), "table machines, row 0") {
		t.Fatalf("err = %v", err)
	}
	// The instance survives a guest error.
	if _, err := r.Run(context.Background(), "ord", []reducer.Table{{Name: "machines", Rows: machines(3, 2)}}); err != nil {
		t.Fatal(err)
	}
}

// TestMisbehaving runs every misbehaving reducer next to app-regions, in one
// host: each fails with its kind of error, again on a second run (its
// instance is replaced), and app-regions keeps working.
func TestMisbehaving(t *testing.T) {
	names := append([]string{"app-regions"}, reducertest.Fixtures...)
	mods := reducertest.Modules(t, names...)
	h := newHost(t)
	good := load(t, h, appRegions(mods["app-regions"]))
	rows := []reducer.Table{{Name: "machines", Rows: machines(20, 3)}}

	cases := []struct {
		name    string
		loadErr error  // the error of Load, or nil
		runErr  error  // the error of Run, or nil when the run succeeds
		msg     string // in the error's text
		cfg     func(*reducer.Config)
		reject  string // the rule the contract's pipeline rejects the record by
	}{
		{name: "loop", runErr: reducer.ErrTimeout, msg: "exceeded the timeout of 300ms",
			cfg: func(c *reducer.Config) { c.Timeout = 300 * time.Millisecond }},
		{name: "initloop", loadErr: reducer.ErrTimeout, msg: "_initialize: run exceeded the timeout of 300ms",
			cfg: func(c *reducer.Config) { c.Timeout = 300 * time.Millisecond }},
		{name: "membomb", runErr: reducer.ErrMemory, msg: "out of memory",
			cfg: func(c *reducer.Config) { c.MemoryLimit, c.Timeout = 32<<20, 10*time.Second }},
		{name: "panic", runErr: reducer.ErrPanic, msg: "boom: reducer fixture panics on purpose"},
		{name: "guesterror", runErr: reducer.ErrGuest, msg: "no machines in region ord"},
		{name: "hugeoutput", runErr: reducer.ErrOutput, msg: "over max_output",
			cfg: func(c *reducer.Config) { c.Timeout = 10 * time.Second }},
		{name: "garbage", runErr: reducer.ErrOutput, msg: "malformed response"},
		{name: "wrongabi", loadErr: reducer.ErrABI, msg: "speaks strata reducer ABI v2"},
		{name: "noexports", loadErr: reducer.ErrABI, msg: "does not export strata_abi_v1"},
		{name: "unknownfield", reject: "unknown_field"},
		{name: "leakip", reject: "validate:string.pattern"},
		{name: "leakid", reject: "leak"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := reducer.Config{Name: tc.name, Wasm: mods[tc.name], Inputs: []string{"machines"},
				Outputs: []string{"app_placements"}, Timeout: 5 * time.Second}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			r, err := h.Load(context.Background(), cfg)
			if tc.loadErr != nil {
				checkErr(t, err, tc.name, tc.loadErr, tc.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close(context.Background())
			if st := r.Status(); st.Interrupt != reducer.InterruptInline {
				t.Errorf("interrupt = %q, want %q: the test does not run the instrumented module", st.Interrupt, reducer.InterruptInline)
			}
			for range 2 {
				res, err := r.Run(context.Background(), "ord", rows)
				if tc.runErr == nil {
					if err != nil || len(res.Records) != 1 {
						t.Fatalf("run: %v, %v", res, err)
					}
					problems, err := recordcheck.Check(example(t), "ord", []recordcheck.Table{{Name: "machines", Rows: rows[0].Rows}},
						[]recordcheck.Record{{Name: res.Records[0].Name, Key: res.Records[0].Key, Value: res.Records[0].Value}})
					if err != nil || len(problems) != 1 || problems[0].Rule != tc.reject {
						t.Fatalf("contract check: %v, %v; want rule %s", problems, err, tc.reject)
					}
					continue
				}
				checkErr(t, err, tc.name, tc.runErr, tc.msg)
				if st := r.Status(); st.LastError == nil || st.LastRun.OK {
					t.Errorf("status after a failed run: %+v", st)
				}
			}
			if _, err := good.Run(context.Background(), "ord", rows); err != nil {
				t.Fatalf("app-regions after %s: %v", tc.name, err)
			}
		})
	}
}

func example(t testing.TB) *contracts.Contract {
	t.Helper()
	c, err := contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkErr(t *testing.T, err error, name string, want error, msg string) {
	t.Helper()
	var re *reducer.Error
	if !errors.As(err, &re) || !errors.Is(err, want) {
		t.Fatalf("err = %v (%T), want %v", err, err, want)
	}
	if re.Reducer != name || !strings.HasPrefix(err.Error(), "reducer "+name+": ") {
		t.Errorf("error does not name the reducer: %v", err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not say %q", err, msg)
	}
}

func TestBadModules(t *testing.T) {
	h := newHost(t)
	dir := t.TempDir()
	notWasm := filepath.Join(dir, "not.wasm")
	os.WriteFile(notWasm, []byte("#!/bin/sh\necho hello\n"), 0o644)
	broken := filepath.Join(dir, "broken")
	os.MkdirAll(broken, 0o755)
	os.WriteFile(filepath.Join(broken, "go.mod"), []byte("module broken\n\ngo 1.24\n"), 0o644)
	os.WriteFile(filepath.Join(broken, "main.go"), []byte("package main\n\nfunc main() { undefined() }\n"), 0o644)
	cases := []struct {
		name string
		cfg  reducer.Config
		want error
		msg  string
	}{
		{"not-wasm", reducer.Config{Wasm: notWasm}, reducer.ErrLoad, "not a valid WebAssembly module"},
		// 16 bytes that claim 2^29 element segments: wazero's decoder
		// would allocate them all and the agent die of it.
		{"claims-too-much", reducer.Config{Module: []byte("\x00asm\x01\x00\x00\x00\t\x06\x80\xff\xff\xff\x01\x00")}, reducer.ErrLoad, "claims 536870784 entries in 6 bytes"},
		// Atomics are outside wazero's default features, and the body
		// after claims 2^32 locals: a module Instrument refuses, for any
		// reason, must not reach wazero.
		{"threads", reducer.Config{Module: []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x03\x02\x00\x00\x05\x03\x01\x00\x01" +
			"\x0a\x10\x02\x05\x00\xfe\x03\x00\x0b\x08\x01\xff\xff\xff\xff\x0f\x7f\x0b")}, reducer.ErrLoad, "unsupported WebAssembly module: code section: function 0: at byte 0x1d: instruction 0xfe: threads are not supported"},
		{"missing-file", reducer.Config{Wasm: filepath.Join(dir, "nope.wasm")}, reducer.ErrLoad, "no such file"},
		{"does-not-build", reducer.Config{Source: broken}, reducer.ErrBuild, "undefined: undefined"},
		{"no-source", reducer.Config{}, reducer.ErrLoad, "set exactly one of wasm and source"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Name = tc.name
			tc.cfg.Inputs, tc.cfg.Outputs = []string{"machines"}, []string{"app_placements"}
			_, err := h.Load(context.Background(), tc.cfg)
			checkErr(t, err, tc.name, tc.want, tc.msg)
		})
	}
}

// TestMemoryStaysBounded runs many calls, each allocating, under a small
// memory limit: the SDK's yield lets the guest's GC keep up.
func TestMemoryStaysBounded(t *testing.T) {
	h := newHost(t)
	cfg := appRegions(reducertest.Module(t, "app-regions"))
	cfg.MemoryLimit = 24 << 20
	r := load(t, h, cfg)
	rows := []reducer.Table{{Name: "machines", Rows: machines(5000, 200)}} // ~0.4 MB a call
	for i := range 150 {                                                   // 60 MB in all, under a 24 MiB limit
		if _, err := r.Run(context.Background(), "ord", rows); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

func TestConcurrentRuns(t *testing.T) {
	h := newHost(t)
	cfg := appRegions(reducertest.Module(t, "app-regions"))
	cfg.Instances = 2
	r := load(t, h, cfg)
	rows := []reducer.Table{{Name: "machines", Rows: machines(200, 7)}}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				res, err := r.Run(context.Background(), "ord", rows)
				if err != nil {
					t.Error(err)
					return
				}
				if len(res.Records) != 7 {
					t.Errorf("%d records", len(res.Records))
				}
			}
		}()
	}
	wg.Wait()
	if st := r.Status(); st.Runs != 40 || st.Failures != 0 {
		t.Errorf("status %+v", st)
	}
}

// TestWazeroInterrupt runs the example and the loop under wazero's own
// cancellation check, which HostOptions.Interrupt can choose.
func TestWazeroInterrupt(t *testing.T) {
	h := newHostWith(t, reducer.HostOptions{Interrupt: reducer.InterruptWazero})
	mods := reducertest.Modules(t, "app-regions", "loop")
	reducertest.PrecompileWazero(t, mods["app-regions"], mods["loop"])
	good := load(t, h, appRegions(mods["app-regions"]))
	loop := load(t, h, reducer.Config{Name: "loop", Wasm: mods["loop"], Inputs: []string{"machines"}, Outputs: []string{"app_placements"}, Timeout: 300 * time.Millisecond})
	for _, r := range []*reducer.Reducer{good, loop} {
		if st := r.Status(); st.Interrupt != reducer.InterruptWazero {
			t.Errorf("%s: interrupt = %q, want %q", r.Name(), st.Interrupt, reducer.InterruptWazero)
		}
	}
	rows := []reducer.Table{{Name: "machines", Rows: machines(20, 3)}}
	_, err := loop.Run(context.Background(), "ord", rows)
	checkErr(t, err, "loop", reducer.ErrTimeout, "exceeded the timeout of 300ms")
	if res, err := good.Run(context.Background(), "ord", rows); err != nil || len(res.Records) != 3 {
		t.Fatalf("app-regions: %v, %v", res, err)
	}
}

// TestLoopLetsTheProcessRun collects garbage while a reducer loops
// forever: machine code that never returns to Go would hold every
// goroutine at the next stop-the-world pause.
func TestLoopLetsTheProcessRun(t *testing.T) {
	h := newHost(t)
	r := load(t, h, reducer.Config{Name: "loop", Wasm: reducertest.Module(t, "loop"), Inputs: []string{"machines"}, Outputs: []string{"app_placements"}, Timeout: 2 * time.Second})
	done := make(chan error, 1)
	go func() {
		_, err := r.Run(context.Background(), "ord", nil)
		done <- err
	}()
	gc := make(chan struct{})
	go func() {
		for range 5 {
			runtime.GC()
		}
		close(gc)
	}()
	select {
	case <-gc:
	case <-time.After(10 * time.Second):
		t.Fatal("5 garbage collections did not finish in 10 s while the reducer looped")
	}
	select {
	case err := <-done:
		checkErr(t, err, "loop", reducer.ErrTimeout, "exceeded the timeout of 2s")
	case <-time.After(10 * time.Second):
		t.Fatal("the run did not stop 10 s after its 2 s timeout")
	}
}

func TestCanceled(t *testing.T) {
	h := newHost(t)
	mods := reducertest.Modules(t, "loop")
	r := load(t, h, reducer.Config{Name: "loop", Wasm: mods["loop"], Inputs: []string{"machines"}, Outputs: []string{"app_placements"}, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := r.Run(ctx, "ord", nil)
	if !errors.Is(err, reducer.ErrCanceled) {
		t.Fatalf("err = %v", err)
	}
}

// TestSourceBuildCached loads a reducer from source twice: the second load
// uses the cached build.
func TestSourceBuildCached(t *testing.T) {
	cache := t.TempDir()
	// Fresh builds, shared machine code.
	compiled := filepath.Join(reducertest.HostCacheDir(), "compiled")
	if err := os.MkdirAll(compiled, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(compiled, filepath.Join(cache, "compiled")); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	h, err := reducer.NewHost(reducer.HostOptions{CacheDir: cache, BuildOutput: &syncWriter{w: &progress},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	cfg := reducer.Config{Name: "app-regions", Source: reducertest.Dir("app-regions"), Inputs: []string{"machines"}, Outputs: []string{"app_placements"}}
	r1 := load(t, h, cfg)
	if !strings.Contains(progress.String(), "built ") {
		t.Errorf("no build progress: %q", progress.String())
	}
	progress.Reset()
	r2 := load(t, h, cfg)
	if progress.Len() != 0 {
		t.Errorf("second load built again: %q", progress.String())
	}
	if r1.Hash() != r2.Hash() {
		t.Errorf("hashes differ")
	}
	if _, err := r2.Run(context.Background(), "ord", []reducer.Table{{Name: "machines", Rows: machines(10, 2)}}); err != nil {
		t.Fatal(err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestStatusAndMetrics(t *testing.T) {
	mods := reducertest.Modules(t, "app-regions", "guesterror")
	h := newHost(t)
	good := load(t, h, appRegions(mods["app-regions"]))
	bad := load(t, h, reducer.Config{Name: "guesterror", Wasm: mods["guesterror"], Inputs: []string{"machines"}, Outputs: []string{"app_placements"}})
	rows := []reducer.Table{{Name: "machines", Rows: machines(10, 2)}}
	good.Run(context.Background(), "ord", rows)
	bad.Run(context.Background(), "ord", rows)
	all := func() []*reducer.Reducer { return []*reducer.Reducer{good, bad} }

	rec := httptest.NewRecorder()
	json.NewEncoder(rec).Encode(reducer.Statuses(all()))
	var body reducer.StatusBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Reducers) != 2 || body.Reducers[1].LastError == nil || body.Reducers[1].LastError.Kind != "guest" ||
		!strings.Contains(body.Reducers[1].LastError.Message, "reducer guesterror: guest: no machines in region ord") {
		t.Errorf("status: %s", rec.Body)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(reducer.NewCollector(all))
	n, err := testutil.GatherAndCount(reg)
	if err != nil || n != 2*6+1 {
		t.Errorf("%d metrics, %v", n, err)
	}
	want := `
# HELP strata_reducer_failures_total Failed reducer runs, by kind of failure.
# TYPE strata_reducer_failures_total counter
strata_reducer_failures_total{kind="guest",reducer="guesterror"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "strata_reducer_failures_total"); err != nil {
		t.Error(err)
	}
}
