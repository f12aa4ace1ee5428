package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/internal/reducertest"
)

// TestRustSDKReadme follows sdk/rust/README.md from an empty folder: the
// Cargo.toml, the contract, the reducer, its tests and rows are the
// README's own code blocks; the commands are the README's (gen --lang
// rust, cargo test, build, test --update, test), with the crate pointed at
// this checkout's sdk/rust.
func TestRustSDKReadme(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module of its own")
	}
	tc, err := reducer.FindRust("", "")
	if errors.Is(err, reducer.ErrNoRust) {
		reducertest.SkipNoRust(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../../sdk/rust/README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string][]string{}
	for _, m := range regexp.MustCompile("(?s)```(\\w+)\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		blocks[m[1]] = append(blocks[m[1]], m[2])
	}
	if len(blocks["toml"]) < 1 || len(blocks["proto"]) < 1 || len(blocks["rust"]) < 2 || len(blocks["json"]) < 1 {
		t.Fatalf("README code blocks: %d toml, %d proto, %d rust, %d json", len(blocks["toml"]), len(blocks["proto"]), len(blocks["rust"]), len(blocks["json"]))
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "myreducer")
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cargoToml := blocks["toml"][0]
	if !strings.Contains(cargoToml, `path = "/path/to/strata/sdk/rust"`) {
		t.Fatalf("the README's Cargo.toml does not point at /path/to/strata/sdk/rust:\n%s", cargoToml)
	}
	write("Cargo.toml", strings.ReplaceAll(cargoToml, "/path/to/strata", root))
	write("contract/acme/v1/acme.proto", blocks["proto"][0])
	write("src/lib.rs", blocks["rust"][0])
	write("src/tests.rs", blocks["rust"][1])
	write("testdata/volumes.jsonl", blocks["json"][0])

	strata := func(args ...string) string {
		t.Helper()
		wd, _ := os.Getwd()
		defer os.Chdir(wd)
		if err := os.Chdir(dir); err != nil {
			t.Fatal(err)
		}
		out, err := runStrata(t, args...)
		if err != nil {
			t.Fatalf("strata %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	strata("reducer", "gen", "--lang", "rust", "--contract", "contract", "-o", "src/acme.rs")
	cmd := exec.Command(tc.Cargo, "test")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RUSTC="+tc.Rustc, "CARGO_TERM_COLOR=never")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test result: ok. 2 passed") {
		t.Fatalf("cargo test: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "warning") {
		t.Errorf("cargo test warns:\n%s", out)
	}
	strata("reducer", "build", ".", "-o", "myreducer.wasm")
	reducertest.Precompile(t, filepath.Join(dir, "myreducer.wasm"))
	test := []string{"reducer", "test", "myreducer.wasm", "--cache", reducertest.HostCacheDir(), "--contract", "contract",
		"--rows", "testdata/volumes.jsonl", "--region", "ord", "--golden", "testdata/golden.json"}
	strata(append(test, "--update")...)
	golden, err := os.ReadFile(filepath.Join(dir, "testdata", "golden.json"))
	if err != nil || !strings.Contains(string(golden), `"totalBytes": "150"`) || !strings.Contains(string(golden), `"key": "db"`) {
		t.Fatalf("golden file: %v\n%s", err, golden)
	}
	out2 := strata(test...)
	if !strings.Contains(out2, "3 rows in, 2 records out") || !strings.Contains(out2, "ok: every record passes") {
		t.Errorf("strata reducer test:\n%s", out2)
	}
	st, err := os.Stat(filepath.Join(dir, "myreducer.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("module: %d bytes", st.Size())
}

// TestReducerTestRustExample: `strata reducer test` passes the Rust
// example on the Go example's golden fixture, and the contract check's
// reducer conformance passes it on the same fixtures, built from source.
func TestReducerTestRustExample(t *testing.T) {
	wasm := reducertest.Module(t, reducertest.RustExample)
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runStrata(t, "reducer", "test", wasm, "--cache", reducertest.HostCacheDir(),
		"--contract", filepath.Join(root, "contracts"), "--rows", filepath.Join(root, "testdata", "app-regions", "machines.jsonl"),
		"--region", "ord", "--golden", filepath.Join(root, "testdata", "app-regions", "golden.json"))
	if err != nil || !strings.Contains(out, "6 rows in, 3 records out") || !strings.Contains(out, "ok: every record passes") {
		t.Fatalf("strata reducer test: %v\n%s", err, out)
	}

	config := filepath.Join(root, "testdata", "contracts", "check", "agent.toml")
	fixtures := filepath.Join(root, "testdata", "app-regions")
	out, err = runStrata(t, "contract", "check", "--strict", "--config", config,
		"--fixtures", "app-regions="+fixtures, "--fixtures", reducertest.RustExample+"="+fixtures)
	if err != nil || !strings.Contains(out, "strata contract check: ok (") || !strings.Contains(out, "2 reducers)") {
		t.Fatalf("contract check: %v\n%s", err, out)
	}
}

// TestReducerBuildNewerCargoLock: a Cargo.lock that a newer cargo wrote
// (version 4, as rustup's cargo writes on `cargo test`) and the cargo
// `strata reducer build` picks cannot read: the build fails once (cargo's
// error is shown as it comes, not repeated in the error) and says what to do.
func TestReducerBuildNewerCargoLock(t *testing.T) {
	if _, err := reducer.FindRust("", ""); err != nil {
		reducertest.SkipNoRust(t, err)
	}
	dir := t.TempDir()
	for name, text := range map[string]string{
		"Cargo.toml": "[package]\nname = \"lockv4\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n",
		"src/lib.rs": "",
		"Cargo.lock": "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 4\n\n[[package]]\nname = \"lockv4\"\nversion = \"0.1.0\"\n",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runStrata(t, "reducer", "build", dir, "-o", filepath.Join(t.TempDir(), "x.wasm"))
	if err == nil {
		t.Skip("this cargo reads version 4 lock files")
	}
	all := out + errorText(err)
	if n := strings.Count(all, "lock file version"); n != 1 {
		t.Errorf("cargo's lock file error is shown %d times, want once:\n%s", n, all)
	}
	if !strings.Contains(errorText(err), "fix: "+filepath.Join(dir, "Cargo.lock")+" was written by a newer cargo") {
		t.Errorf("the error does not say what to do:\n%s", errorText(err))
	}
}
