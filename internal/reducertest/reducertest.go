// Package reducertest builds the repository's reducers (plugins/ and
// testdata/reducers/) for tests, once: modules are cached by source hash
// (agent/reducer.SourceHash) in $STRATA_TEST_CACHE, default
// $XDG_CACHE_HOME/strata/test-builds, so repeated test runs and the several
// test packages that use the same module build it once. HostCacheDir is a
// reducer.Host cache directory shared the same way, so each module is
// compiled once too; under the race detector, modules are compiled into it
// by a native helper process (internal/cmd/wasmcompile).
package reducertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/strata-state/strata/agent/reducer"
)

// Fixtures are the misbehaving reducers under testdata/reducers.
var Fixtures = []string{
	"loop", "initloop", "membomb", "panic", "guesterror", "hugeoutput", "garbage",
	"unknownfield", "leakip", "leakid", "wrongabi", "noexports",
}

// Costs is the reducer that measures the cost of Go operations in the host
// (testdata/reducers/costs); it is not one of the Fixtures.
const Costs = "costs"

// Root returns the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// RustExample is the example reducer written in Rust
// (plugins/app-regions-rust), built with cargo; tests that use it skip
// when no Rust toolchain with a WASI target is installed.
const RustExample = "app-regions-rust"

// Dir returns the directory of a reducer: "app-regions" and RustExample
// are under plugins/, the Fixtures under testdata/reducers/.
func Dir(name string) string {
	if name == "app-regions" || name == RustExample {
		return filepath.Join(Root(), "plugins", name)
	}
	return filepath.Join(Root(), "testdata", "reducers", name)
}

// CacheDir returns where built modules are kept.
func CacheDir() string {
	if d := os.Getenv("STRATA_TEST_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "strata", "test-builds")
}

// HostCacheDir returns a cache directory for reducer.HostOptions.CacheDir
// shared by all tests.
func HostCacheDir() string { return filepath.Join(CacheDir(), "host") }

var (
	mu    sync.Mutex
	built = map[string]string{}
	locks = map[string]*sync.Mutex{}
)

func lock(key string) func() {
	mu.Lock()
	l := locks[key]
	if l == nil {
		l = new(sync.Mutex)
		locks[key] = l
	}
	mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Module returns the path of the built module of the reducer called name
// (see Dir), building it if its source changed. It skips the test when the
// Go toolchain (or for RustExample, a Rust toolchain: see SkipNoRust) is
// missing.
func Module(t testing.TB, name string) string {
	t.Helper()
	paths := Modules(t, name)
	return paths[name]
}

// Modules builds the reducers called names, two at a time, and returns
// their module paths by name.
func Modules(t testing.TB, names ...string) map[string]string {
	t.Helper()
	out := make(map[string]string, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	var outMu sync.Mutex
	for i, name := range names {
		mu.Lock()
		p, ok := built[name]
		mu.Unlock()
		if ok {
			out[name] = p
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p, err := build(name)
			if err != nil {
				errs[i] = err
				return
			}
			outMu.Lock()
			out[name] = p
			outMu.Unlock()
			mu.Lock()
			built[name] = p
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			if errors.Is(err, reducer.ErrNoRust) {
				SkipNoRust(t, err)
				return nil
			}
			if isNoGo(err) {
				t.Skip(err)
			}
			t.Fatal(err)
		}
	}
	if raceEnabled {
		if err := precompile(out, reducer.InterruptInline); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Precompile compiles the module files into HostCacheDir's compilation
// cache in a native process when the race detector is on (and does nothing
// otherwise), for modules that a test builds itself.
func Precompile(t testing.TB, paths ...string) {
	t.Helper()
	precompileFor(t, reducer.InterruptInline, paths)
}

// PrecompileWazero is Precompile for a host with HostOptions.Interrupt
// set to reducer.InterruptWazero.
func PrecompileWazero(t testing.TB, paths ...string) {
	t.Helper()
	precompileFor(t, reducer.InterruptWazero, paths)
}

func precompileFor(t testing.TB, mode string, paths []string) {
	t.Helper()
	if !raceEnabled {
		return
	}
	mods := map[string]string{}
	for _, p := range paths {
		mods[p] = p
	}
	if err := precompile(mods, mode); err != nil {
		t.Fatal(err)
	}
}

// precompile compiles the modules not compiled yet into HostCacheDir for
// the interrupt mode, in a native process; a marker file beside each
// module remembers it.
func precompile(mods map[string]string, mode string) error {
	mu.Lock()
	defer mu.Unlock()
	compiledMarker := ".compiled-" + mode
	var todo []string
	for _, p := range mods {
		if _, err := os.Stat(p + compiledMarker); err != nil {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	args := append([]string{"run", "./internal/cmd/wasmcompile", "-cache", HostCacheDir(), "-interrupt", mode}, todo...)
	cmd := exec.Command(goTool(), args...)
	cmd.Dir = Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("precompile modules: %v\n%s", err, out)
	}
	for _, p := range todo {
		if err := os.WriteFile(p+compiledMarker, nil, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// RequireRustEnv names the environment variable that .ci/run sets: with
// it set, a test that needs a Rust toolchain fails when there is none,
// where it is otherwise skipped, so that CI cannot pass with the Rust
// reducer SDK's tests skipped.
const RequireRustEnv = "STRATA_TEST_REQUIRE_RUST"

// SkipNoRust skips t, which needs a Rust toolchain that is missing (why
// says what is missing), or fails it when RequireRustEnv is set.
func SkipNoRust(t testing.TB, why error) {
	t.Helper()
	if os.Getenv(RequireRustEnv) != "" {
		t.Fatalf("%v (%s is set, as .ci/run sets it: the Rust toolchain is required, not optional)", why, RequireRustEnv)
		return
	}
	t.Skip(why)
}

func isNoGo(err error) bool {
	for e := err; e != nil; {
		if e == reducer.ErrNoGo {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

func build(name string) (string, error) {
	dir := Dir(name)
	sum, err := reducer.SourceHash(dir, goTool())
	if err != nil {
		return "", err
	}
	return reducer.BuildCached(context.Background(), dir, CacheDir(), sum, reducer.BuildOptions{GoTool: goTool()}, lock)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}
