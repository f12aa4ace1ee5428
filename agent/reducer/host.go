package reducer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/strata-state/strata/internal/abi"
	"github.com/strata-state/strata/internal/interrupt"
)

// HostOptions configure a Host.
type HostOptions struct {
	// CacheDir holds the compilation cache (wazero's machine code for each
	// module) and the modules built from source, so that a restart neither
	// rebuilds nor recompiles. The agent passes data_dir/wazero-cache.
	// Empty: in-memory only.
	CacheDir string
	// Logger receives the guests' logs and the host's. Default
	// slog.Default().
	Logger *slog.Logger
	// GoTool is the go command that builds Source reducers. Default: "go"
	// on PATH.
	GoTool string
	// BuildOutput, when set, receives the progress and errors of builds.
	BuildOutput io.Writer
	// Interrupt chooses how runs are stopped: "" or InterruptInline
	// instruments modules (the default, fast); InterruptWazero runs them
	// as they are with wazero's check, about 3x slower for Go guests (for
	// comparison, and a way out should instrumentation misbehave; tables
	// are then not bounded). Either way a module must pass
	// interrupt.Instrument's checks.
	Interrupt string
}

// Host loads and runs reducers. It owns what they share: the compilation
// cache, the build cache, and the single-flight locks that make sure one
// module is compiled or built once at a time. One agent has one Host. A
// Host is safe for concurrent use.
type Host struct {
	opts  HostOptions
	cache wazero.CompilationCache

	mu    sync.Mutex
	locks map[string]*sync.Mutex // by module or source hash
}

// NewHost returns a Host with its compilation cache in opts.CacheDir.
func NewHost(opts HostOptions) (*Host, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Interrupt != "" && opts.Interrupt != InterruptInline && opts.Interrupt != InterruptWazero {
		return nil, fmt.Errorf("reducer: interrupt %q: want %q or %q", opts.Interrupt, InterruptInline, InterruptWazero)
	}
	h := &Host{opts: opts, locks: map[string]*sync.Mutex{}}
	if opts.CacheDir == "" {
		h.cache = wazero.NewCompilationCache()
		return h, nil
	}
	c, err := wazero.NewCompilationCacheWithDir(filepath.Join(opts.CacheDir, "compiled"))
	if err != nil {
		return nil, fmt.Errorf("reducer: compilation cache: %w", err)
	}
	h.cache = c
	return h, nil
}

// Close releases the compilation cache. Close the Host's reducers first.
func (h *Host) Close(ctx context.Context) error { return h.cache.Close(ctx) }

// lock returns the single-flight lock of key, locked.
func (h *Host) lock(key string) func() {
	h.mu.Lock()
	l := h.locks[key]
	if l == nil {
		l = new(sync.Mutex)
		h.locks[key] = l
	}
	h.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Load prepares the reducer cfg: it builds it when cfg.Source is set (or
// takes the build from the cache), compiles the module (or loads it from
// the compilation cache), checks its ABI, and starts one instance, so that
// the first run is fast. Errors are *Error of kind Build, Load, ABI,
// Memory, Trap or Timeout.
func (h *Host) Load(ctx context.Context, cfg Config) (*Reducer, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, &Error{Reducer: cfg.Name, Kind: KindLoad, Err: fmt.Errorf("config: %w", err)}
	}
	r := &Reducer{cfg: c, host: h, log: h.opts.Logger.With("reducer", c.Name)}
	r.source = c.Wasm
	bin := c.Module
	switch {
	case c.Source != "":
		r.source = c.Source
		path, err := h.buildSource(ctx, c.Source)
		if err != nil {
			return nil, r.fail(KindBuild, err)
		}
		if bin, err = os.ReadFile(path); err != nil {
			return nil, r.fail(KindLoad, err)
		}
	case c.Wasm != "":
		if bin, err = os.ReadFile(c.Wasm); err != nil {
			return nil, r.fail(KindLoad, err)
		}
	}
	sum := sha256.Sum256(bin)
	r.hash = hex.EncodeToString(sum[:])

	start := time.Now()
	if err := r.compile(ctx, bin); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			r.rt.Close(context.Background())
		}
	}()
	if err := checkABI(r.compiled, r.interrupt == InterruptInline); err != nil {
		return nil, r.fail(KindABI, err)
	}
	r.pool = newPool(c.Instances)
	compiled := time.Since(start)

	// Start one instance now: a bad _initialize shows at load, and the
	// first run does not pay for it.
	ictx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	r.pool.slots <- struct{}{}
	inst, err := r.instantiate(ictx)
	if err != nil {
		return nil, err
	}
	r.pool.put(inst)
	ok = true
	r.log.Debug("reducer loaded", "hash", r.hash[:12], "bytes", len(bin),
		"compile", compiled, "ready", time.Since(start), "interrupt", r.interrupt)
	return r, nil
}

// Precompile compiles the module bin into the Host's compilation cache as
// Load would, so that a later Load finds its machine code. Tests use it
// from a native process: wazero's compiler is slow under the race
// detector.
func (h *Host) Precompile(ctx context.Context, bin []byte) error {
	sum := sha256.Sum256(bin)
	r := &Reducer{cfg: Config{Name: "precompile", MemoryLimit: DefaultMemoryLimit}, host: h, log: h.opts.Logger, hash: hex.EncodeToString(sum[:])}
	if err := r.compile(ctx, bin); err != nil {
		return err
	}
	return r.rt.Close(ctx)
}

// compile makes r's runtime and compiled module from bin. The module is
// instrumented (internal/interrupt) so that it checks for cancellation
// inline, and runs on a runtime without WithCloseOnContextDone. A module
// Instrument refuses never reaches wazero, whose decoder trusts the counts
// a module declares; with HostOptions.Interrupt set to InterruptWazero, the
// module Instrument accepted runs as it is, with wazero's check.
func (r *Reducer) compile(ctx context.Context, bin []byte) error {
	code, err := interrupt.Instrument(bin)
	switch {
	case errors.Is(err, interrupt.ErrMalformed):
		return r.fail(KindLoad, fmt.Errorf("not a valid WebAssembly module: %w", err))
	case err != nil:
		return r.fail(KindLoad, err)
	case r.host.opts.Interrupt == InterruptWazero:
		return r.compileWith(ctx, bin, InterruptWazero)
	}
	return r.compileWith(ctx, code, InterruptInline)
}

// The ways a reducer's runs are interrupted, as Status reports them.
const (
	// InterruptInline: the module is instrumented to call the host every
	// interrupt.Interval loop iterations and calls (internal/interrupt),
	// and stops when the run's context has ended.
	InterruptInline = "inline"
	// InterruptWazero: wazero's WithCloseOnContextDone.
	InterruptWazero = "wazero"
)

// compileWith makes r's runtime for the interrupt mode and compiles code
// (bin, or bin instrumented, for r.hash) on it. On error the runtime is
// closed.
func (r *Reducer) compileWith(ctx context.Context, code []byte, mode string) error {
	rcfg := wazero.NewRuntimeConfig().
		WithCompilationCache(r.host.cache).
		WithCloseOnContextDone(mode == InterruptWazero).
		WithMemoryLimitPages(uint32(r.cfg.MemoryLimit / 65536)).
		// Reserve the limit up front: growing memory otherwise copies all
		// of it, and a Go guest grows it on every large run. The OS backs
		// the reservation only as pages are touched.
		WithMemoryCapacityFromMax(true)
	rt := wazero.NewRuntimeWithConfig(ctx, rcfg)
	fail := func(kind Kind, err error) error {
		rt.Close(context.Background())
		return r.fail(kind, err)
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fail(KindLoad, err)
	}
	host := rt.NewHostModuleBuilder(abi.ImportModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(r.hostLog), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, nil).
		WithParameterNames("level", "ptr", "len").
		Export(abi.ImportLog)
	if mode == InterruptInline {
		host = host.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(interrupt.Tick), nil, []api.ValueType{api.ValueTypeI32}).
			Export(interrupt.ImportName)
	}
	_, err := host.Instantiate(ctx)
	if err != nil {
		return fail(KindLoad, err)
	}
	// One compile of a module at a time: the module's hash and the mode
	// name the bytes compiled, as instrumentation is deterministic.
	unlock := r.host.lock("module:" + r.hash + ":" + mode)
	compiled, err := rt.CompileModule(ctx, code)
	unlock()
	if err != nil {
		if strings.Contains(err.Error(), "memory") && strings.Contains(err.Error(), "limit") {
			return fail(KindMemory, fmt.Errorf("compile: %w (raise memory_limit)", err))
		}
		return fail(KindLoad, fmt.Errorf("not a valid WebAssembly module: %w", err))
	}
	r.rt, r.compiled, r.interrupt = rt, compiled, mode
	return nil
}

// checkABI verifies the exports and imports of an ABI v1 module;
// instrumented tells that it imports interrupt.ImportName.
func checkABI(m wazero.CompiledModule, instrumented bool) error {
	exports := m.ExportedFunctions()
	if _, ok := exports[abi.ExportMarker]; !ok {
		for name := range exports {
			if strings.HasPrefix(name, abi.MarkerPrefix) {
				return fmt.Errorf("module speaks strata reducer ABI v%s (exports %s); this host speaks v%d: rebuild it with this strata's SDK",
					strings.TrimPrefix(name, abi.MarkerPrefix), name, abi.Version)
			}
		}
		if _, ok := exports["_start"]; ok {
			return fmt.Errorf("module is not a strata reducer: it does not export %s, and exports _start (a WASI command): build it with the strata SDK and -buildmode=c-shared (strata reducer build)", abi.ExportMarker)
		}
		return fmt.Errorf("module is not a strata reducer: it does not export %s (is it built with the strata SDK? see sdk/README.md)", abi.ExportMarker)
	}
	want := []struct {
		name            string
		params, results []api.ValueType
	}{
		{abi.ExportMarker, nil, nil},
		{abi.ExportAlloc, []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
		{abi.ExportReduce, []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI64}},
	}
	for _, w := range want {
		fn, ok := exports[w.name]
		if !ok {
			return fmt.Errorf("module does not export function %s", w.name)
		}
		if !sameTypes(fn.ParamTypes(), w.params) || !sameTypes(fn.ResultTypes(), w.results) {
			return fmt.Errorf("export %s has type %s, want %s", w.name,
				signature(fn.ParamTypes(), fn.ResultTypes()), signature(w.params, w.results))
		}
	}
	// _initialize is optional (a module that needs no initialization may
	// omit it), but if present it must take and return nothing.
	if fn, ok := exports[abi.ExportInitialize]; ok && (len(fn.ParamTypes()) > 0 || len(fn.ResultTypes()) > 0) {
		return fmt.Errorf("export %s has type %s, want () -> ()", abi.ExportInitialize, signature(fn.ParamTypes(), fn.ResultTypes()))
	}
	if _, ok := m.ExportedMemories()[abi.ExportMemory]; !ok {
		return fmt.Errorf("module does not export its memory as %q", abi.ExportMemory)
	}
	for _, imp := range m.ImportedFunctions() {
		mod, name, _ := imp.Import()
		switch {
		case mod == wasi_snapshot_preview1.ModuleName:
		case mod == abi.ImportModule && name == abi.ImportLog:
		case instrumented && mod == interrupt.ImportModule && name == interrupt.ImportName:
		default:
			return fmt.Errorf("module imports %s.%s, which strata does not provide (only %s.%s and WASI preview 1)",
				mod, name, abi.ImportModule, abi.ImportLog)
		}
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func signature(params, results []api.ValueType) string {
	name := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return name(params) + " -> " + name(results)
}

// errClosed is the cause of Closed errors.
var errClosed = errors.New("reducer is closed")
