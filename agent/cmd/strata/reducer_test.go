package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/strata-state/strata/internal/reducertest"
)

const (
	appRegionsRows   = "../../../testdata/app-regions/machines.jsonl"
	appRegionsGolden = "../../../testdata/app-regions/golden.json"
	contractsDir     = "../../../contracts"
)

func TestReducerBuildAndTest(t *testing.T) {
	wasm := filepath.Join(t.TempDir(), "app-regions.wasm")
	out, err := runStrata(t, "reducer", "build", "../../../plugins/app-regions", "-o", wasm)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared") || !strings.Contains(out, "built "+wasm) {
		t.Errorf("build shows no progress:\n%s", out)
	}
	reducertest.Precompile(t, wasm)
	out, err = runStrata(t, "reducer", "test", wasm, "--cache", reducertest.HostCacheDir(), "--contract", contractsDir, "--rows", appRegionsRows,
		"--region", "ord", "--golden", appRegionsGolden)
	if err != nil {
		t.Fatalf("test: %v\n%s", err, out)
	}
	if !strings.Contains(out, "app-regions: 6 rows in, 3 records out") || !strings.Contains(out, "ok: every record passes") {
		t.Errorf("output:\n%s", out)
	}
	// It says which golden file it compared, and that it matched.
	if !strings.Contains(out, "golden: "+appRegionsGolden+" matches (3 records)") {
		t.Errorf("output does not name the golden file it compared:\n%s", out)
	}
}

func TestReducerTestGoldenUpdate(t *testing.T) {
	wasm := reducertest.Module(t, "app-regions")
	golden := filepath.Join(t.TempDir(), "golden.json")
	if out, err := runStrata(t, "reducer", "test", wasm, "--cache", reducertest.HostCacheDir(), "--contract", contractsDir, "--rows", "machines="+appRegionsRows,
		"--golden", golden, "--update"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want, _ := os.ReadFile(appRegionsGolden)
	got, _ := os.ReadFile(golden)
	if string(got) != string(want) {
		t.Errorf("--update wrote\n%s\nwant\n%s", got, want)
	}
	// A golden file that disagrees fails, naming the record.
	os.WriteFile(golden, []byte(strings.Replace(string(want), `"app": "web",
      "capacity": "CAPACITY_BAND_LOW"`, `"app": "web",
      "capacity": "CAPACITY_BAND_HIGH"`, 1)), 0o644)
	out, err := runStrata(t, "reducer", "test", wasm, "--cache", reducertest.HostCacheDir(), "--contract", contractsDir, "--rows", appRegionsRows, "--golden", golden)
	if err == nil || !strings.Contains(out, "golden: record app_placements/web:") {
		t.Errorf("err = %v, output:\n%s", err, out)
	}
	if err == nil || !strings.Contains(err.Error(), "0 records rejected by the contract, 1 difference from the golden file") {
		t.Errorf("err = %v, want counts with their nouns in the singular and plural", err)
	}
}

// TestReducerTestRejects runs the misbehaving reducers whose records the
// contract rejects: each failure is reported by record, field and rule.
func TestReducerTestRejects(t *testing.T) {
	mods := reducertest.Modules(t, "leakid", "leakip", "unknownfield", "panic")
	for _, tc := range []struct{ name, want string }{
		{"leakid", `rejected: app_placements/m-1: field "app": equals the value of regional_only field machines.id of an input row [leak]`},
		{"leakip", `rejected: app_placements/fdaa:0:1::1: field "app": does not match regex pattern`},
		{"unknownfield", `rejected: app_placements/web: field "#9": unknown field number 9 in fleet.v1.AppPlacement [unknown_field]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runStrata(t, "reducer", "test", mods[tc.name], "--cache", reducertest.HostCacheDir(), "--contract", contractsDir, "--rows", appRegionsRows)
			if err == nil || !strings.HasSuffix(err.Error(), ": test failed: 1 record rejected by the contract") {
				t.Errorf("err = %v, want one record rejected, and no golden file named (none was given)", err)
			}
			if !strings.Contains(out, " 6 rows in, 1 record out in ") {
				t.Errorf("output lacks the counts, in the singular for one:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
	_, err := runStrata(t, "reducer", "test", mods["panic"], "--cache", reducertest.HostCacheDir(), "--name", "panicky", "--contract", contractsDir, "--rows", appRegionsRows)
	if err == nil || !strings.Contains(err.Error(), "reducer panicky: panic: panic: boom: reducer fixture panics on purpose") {
		t.Errorf("panic: err = %v", err)
	}
}

func TestReducerBuildWithoutGo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := runStrata(t, "reducer", "build", "../../../plugins/app-regions", "-o", filepath.Join(t.TempDir(), "x.wasm"))
	if err == nil || !strings.Contains(err.Error(), "the Go toolchain is not installed") {
		t.Fatalf("err = %v", err)
	}
}

// TestGeneratedCodeIsCurrent regenerates the example contract's types, lite
// and protoc-gen-go's, and compares them with the committed files.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	lite := t.TempDir()
	if out, err := runStrata(t, "reducer", "gen", "--contract", contractsDir, "-o", lite, "--package", "fleetv1",
		"fleet/v1/regional.proto", "fleet/v1/global.proto"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	pb := t.TempDir()
	if out, err := runStrata(t, "reducer", "gen", "--protoc-gen-go", "--contract", contractsDir, "-o", pb,
		"fleet/v1/regional.proto", "fleet/v1/global.proto"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for gen, committed := range map[string]string{
		filepath.Join(lite, "fleet_v1_regional.strata.go"): "../../../plugins/fleetv1/fleet_v1_regional.strata.go",
		filepath.Join(lite, "fleet_v1_global.strata.go"):   "../../../plugins/fleetv1/fleet_v1_global.strata.go",
		filepath.Join(pb, "fleet", "v1", "regional.pb.go"): "../../../contracts/fleet/v1/regional.pb.go",
		filepath.Join(pb, "fleet", "v1", "global.pb.go"):   "../../../contracts/fleet/v1/global.pb.go",
	} {
		a, err := os.ReadFile(gen)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(committed)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Errorf("%s is not up to date: run go generate ./contracts/... ./plugins/...", committed)
		}
	}
}

// TestPutEmptyInput: a row read from empty standard input is refused with
// a message that says so, not "the row is not valid JSON: " and nothing.
func TestPutEmptyInput(t *testing.T) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader("  \n"))
	root.SetArgs([]string{"put", "--batch", "machines", "-", "--addr", "127.0.0.1:1"})
	err := root.Execute()
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "standard input is empty") {
		t.Fatalf("err = %v, want a usage error saying standard input is empty", err)
	}
}

// TestReducerTestFailureOnce: a failed run is printed once (as the
// command's error, not again as a log line), and a module that runs out of
// memory yields a bounded message, its goroutine dump cut with a note of
// how much was cut.
func TestReducerTestFailureOnce(t *testing.T) {
	mods := reducertest.Modules(t, "panic", "membomb")
	out, err := runStrata(t, "reducer", "test", mods["panic"], "--cache", reducertest.HostCacheDir(), "--contract", contractsDir, "--rows", appRegionsRows)
	if err == nil {
		t.Fatal("reducer test of a panicking module passed")
	}
	const cause = "reducer fixture panics on purpose"
	if n := strings.Count(out+errorText(err), cause); n != 1 {
		t.Errorf("the failure is printed %d times, want once; output:\n%s\nerror: %v", n, out, err)
	}

	out, err = runStrata(t, "reducer", "test", mods["membomb"], "--cache", reducertest.HostCacheDir(), "--contract", contractsDir, "--rows", appRegionsRows)
	if err == nil {
		t.Fatal("reducer test of a module that runs out of memory passed")
	}
	msg := errorText(err)
	if !strings.Contains(msg, "out of memory: memory_limit is") || !regexp.MustCompile(`… \(\d+ bytes of output cut\) …`).MatchString(msg) {
		t.Errorf("out-of-memory error lacks its cause or the note of what was cut:\n%s", msg)
	}
	if len(msg) > 3500 || len(out) > 0 {
		t.Errorf("out-of-memory: a %d-byte error (want at most 3500) and %d bytes of other output (want none):\n%s", len(msg), len(out), out)
	}
}
