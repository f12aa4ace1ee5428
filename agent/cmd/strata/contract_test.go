package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-state/strata/internal/reducertest"
)

// runStrata runs the CLI in process and returns its output and error.
func runStrata(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

const compat = "../../../testdata/contracts/compat/"

// TestContractCheckFails checks the three mistakes the gate exists for — a
// field deleted without reserving it, a compile error, a record that nests
// a regional_only field — in every output format: exit status 1
// (errCheckFailed) and a precise message.
func TestContractCheckFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want map[string]string // format → substring
	}{
		{"field deleted without reserve",
			[]string{"--contracts", compat + "field_delete/new", "--against", compat + "field_delete/old"},
			map[string]string{
				"text":   "field_delete/old/acme/v1/acme.proto\n  21:3: error FIELD_NO_DELETE: field 2 \"count\" of acme.v1.Placement was deleted without reserving its number and name (old version)\n    fix: add `reserved 2; reserved \"count\";`",
				"json":   `"rule": "FIELD_NO_DELETE",` + "\n      \"severity\": \"error\",\n      \"file\": \"" + compat + "field_delete/old/acme/v1/acme.proto\",\n      \"line\": 21,\n      \"column\": 3,\n      \"old\": true,",
				"github": "::error file=" + compat + "field_delete/old/acme/v1/acme.proto,line=21,col=3,title=FIELD_NO_DELETE::field 2 \"count\" of acme.v1.Placement was deleted without reserving its number and name (old version). Fix: add `reserved 2; reserved \"count\";`",
			}},
		{"compile error",
			[]string{"--contracts", compat + "compile_error/new", "--against", compat + "compile_error/old"},
			map[string]string{
				"text":   "compile_error/new/acme/v1/acme.proto\n  22:3: error COMPILE: syntax error: expecting ';'",
				"json":   `"message": "syntax error: expecting ';'"`,
				"github": "::error file=" + compat + "compile_error/new/acme/v1/acme.proto,line=22,col=3,title=COMPILE::syntax error: expecting ';'",
			}},
		{"nested leak in a record",
			[]string{"--contracts", compat + "nested_leak/new"},
			map[string]string{
				"text":   `23:3: error RECORD_NO_REGIONAL_ONLY: record "placements": field "detail.note" (acme.v1.Detail.note) is marked regional_only`,
				"json":   `"rule": "RECORD_NO_REGIONAL_ONLY"`,
				"github": `::error file=` + compat + `nested_leak/new/acme/v1/acme.proto,line=23,col=3,title=RECORD_NO_REGIONAL_ONLY::record "placements": field "detail.note"`,
			}},
	} {
		for _, format := range []string{"text", "json", "github"} {
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				args := append([]string{"contract", "check", "--format", format}, tc.args...)
				out, err := runStrata(t, args...)
				if !errors.Is(err, errCheckFailed) {
					t.Fatalf("error = %v, want errCheckFailed (exit status 1)\n%s", err, out)
				}
				if !strings.Contains(out, tc.want[format]) {
					t.Errorf("output lacks\n%s\ngot:\n%s", tc.want[format], out)
				}
			})
		}
	}
}

func TestContractCheckWarningsAndStrict(t *testing.T) {
	args := []string{"contract", "check", "--contracts", compat + "limit_tightened/new", "--against", compat + "limit_tightened/old"}
	out, err := runStrata(t, args...)
	if err != nil || !strings.Contains(out, "0 errors, 2 warnings") {
		t.Fatalf("warnings only: error = %v\n%s", err, out)
	}
	out, err = runStrata(t, append(args, "--strict")...)
	if !errors.Is(err, errCheckFailed) || !strings.Contains(out, "(--strict: warnings fail)") {
		t.Fatalf("--strict: error = %v\n%s", err, out)
	}
}

func TestContractCheckUsage(t *testing.T) {
	for name, args := range map[string][]string{
		"bad format":      {"--format", "xml"},
		"missing dir":     {"--contracts", "nope"},
		"missing against": {"--against", "nope.binpb"},
		"bad config":      {"--config", "../../../go.mod"}, // a file that is no agent.toml; a missing one is CONFIG_MISSING
		"unknown flag":    {"--colour"},
		"argument":        {"extra"},
		"fixtures format": {"--config", "../../../testdata/contracts/check/agent.toml", "--fixtures", "app-regions"},
		"fixtures name":   {"--config", "../../../testdata/contracts/check/agent.toml", "--fixtures", "nope=dir"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runStrata(t, append([]string{"contract", "check", "--contracts", compat + "clean_add/new"}, args...)...)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Errorf("error = %v (%T), want a usage error (exit status 2)", err, err)
			}
		})
	}
}

// TestContractBuildAndCheck builds the repository's contract into a
// descriptor set and checks the contract against it, and against the
// repository's agent.toml.
func TestContractBuildAndCheck(t *testing.T) {
	set := filepath.Join(t.TempDir(), "contract.binpb")
	if _, err := runStrata(t, "contract", "build", "--contracts", "../../../contracts", "-o", set); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(set); err != nil || st.Size() == 0 {
		t.Fatalf("descriptor set: %v", err)
	}
	out, err := runStrata(t, "contract", "check", "--config", "../../../agent.toml", "--against", set, "--strict")
	if err != nil || !strings.Contains(out, "strata contract check: ok (../../../contracts: 2 files; against "+set+")") {
		t.Fatalf("error = %v\n%s", err, out)
	}
	if _, err := runStrata(t, "contract", "build", "--contracts", "../../../contracts"); err == nil {
		t.Error("build without -o succeeded")
	}
	_, err = runStrata(t, "contract", "build", "--contracts", compat+"compile_error/new", "-o", set)
	if err == nil || !strings.Contains(err.Error(), "acme/v1/acme.proto:22:3: syntax error") {
		t.Errorf("build of a broken contract: %v", err)
	}
}

// TestContractCheckReducers runs the conformance step in the real reducer
// host: the example reducer passes on its shared fixtures, and a reducer
// that copies a machine's id (regional_only, and a valid app name) into
// app_placements.app — a leak introduced into the example reducer — fails
// the check with the record, the rule and the field, in every format.
func TestContractCheckReducers(t *testing.T) {
	mods := reducertest.Modules(t, "app-regions", "leakid")
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	config := func(wasm string) string {
		p := filepath.Join(t.TempDir(), "agent.toml")
		toml := `node = "t"
[contracts]
dir = "` + filepath.Join(root, "contracts") + `"
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "t"
[[reducers]]
name = "app-regions"
wasm = "` + wasm + `"
inputs = ["machines"]
outputs = ["app_placements"]
`
		if err := os.WriteFile(p, []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fixtures := "app-regions=" + filepath.Join(root, "testdata", "app-regions")

	out, err := runStrata(t, "contract", "check", "--config", config(mods["app-regions"]), "--fixtures", fixtures, "--strict")
	if err != nil || !strings.Contains(out, "strata contract check: ok (") || !strings.Contains(out, "1 reducer)") {
		t.Fatalf("example reducer: error = %v\n%s", err, out)
	}

	leaky := config(mods["leakid"])
	rows := filepath.Join(root, "testdata", "app-regions", "machines.jsonl")
	msg := `record app_placements/m-1 of region local rejected [leak]: field "app": equals the value of regional_only field machines.id of an input row`
	for format, want := range map[string]string{
		"text":   rows + "\n  error REDUCER_OUTPUT_REJECTED: reducer app-regions, case app-regions: " + msg,
		"json":   `"rule": "REDUCER_OUTPUT_REJECTED",` + "\n      \"severity\": \"error\",\n      \"file\": \"" + rows + `",`,
		"github": "::error file=" + rows + ",title=REDUCER_OUTPUT_REJECTED::reducer app-regions, case app-regions: " + msg,
	} {
		t.Run("leak/"+format, func(t *testing.T) {
			out, err := runStrata(t, "contract", "check", "--config", leaky, "--fixtures", fixtures, "--format", format)
			if !errors.Is(err, errCheckFailed) {
				t.Fatalf("error = %v, want errCheckFailed\n%s", err, out)
			}
			if !strings.Contains(out, want) {
				t.Errorf("output lacks\n%s\ngot:\n%s", want, out)
			}
			if format == "json" && !strings.Contains(out, strings.ReplaceAll(msg, `"`, `\"`)) {
				t.Errorf("JSON lacks the message:\n%s", out)
			}
		})
	}
}

// TestReducerConfigTypo: a typo in a reducer's inputs or outputs fails
// `strata agent --check` and `strata contract check --config`, with a "did
// you mean" and a fix, before the agent ever runs the reducer.
func TestReducerConfigTypo(t *testing.T) {
	contractsDir, err := filepath.Abs("../../../contracts")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.toml")
	toml := `node = "n-1"
data_dir = "data"

[contracts]
dir = "` + filepath.ToSlash(contractsDir) + `"
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]

[regional]
region = "ord"

[[reducers]]
name = "app-regions"
source = "plugins/app-regions"
inputs = ["machine"]
outputs = ["app_placement"]
`
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runStrata(t, "agent", "--check", "--config", cfg)
	for _, want := range []string{
		cfg + `: reducer app-regions: inputs: "machine" is not a table of the contract; did you mean "machines"?` + "\n" +
			`  fix: in the [[reducers]] entry named "app-regions", replace "machine" with "machines" in inputs`,
		cfg + `: reducer app-regions: outputs: "app_placement" is not a record of the contract; did you mean "app_placements"?`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("agent --check: error = %v\nwant it to contain %q\noutput:\n%s", err, want, out)
		}
	}

	out, err = runStrata(t, "contract", "check", "--config", cfg, "--format", "github")
	if !errors.Is(err, errCheckFailed) {
		t.Fatalf("contract check: error = %v, want errCheckFailed\n%s", err, out)
	}
	want := "::error file=" + ghEscape(filepath.ToSlash(cfg)) + `,line=14,title=REDUCER_CONFIG::reducer app-regions: inputs: "machine" is not a table of the contract; did you mean "machines"? Fix: in the [[reducers]] entry named "app-regions", replace "machine" with "machines" in inputs`
	if !strings.Contains(out, want) {
		t.Errorf("contract check output lacks\n%s\ngot:\n%s", want, out)
	}
	if strings.Contains(out, "REDUCER_NO_FIXTURES") {
		t.Errorf("a reducer with a bad configuration is reported for its fixtures too:\n%s", out)
	}
}

// ghEscape escapes a workflow command property as the github format does.
func ghEscape(s string) string {
	return strings.NewReplacer("%", "%25", ":", "%3A", ",", "%2C").Replace(s)
}

// TestContractCheckBuildNamesNoTempFile: the build progress of a source
// reducer names the cached module, not the temporary file it is written to
// first.
func TestContractCheckBuildNamesNoTempFile(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache) // a cold cache: the reducer is built
	out, err := runStrata(t, "contract", "check", "--config", "../../../testdata/contracts/check/agent.toml",
		"--fixtures", "app-regions=../../../testdata/app-regions")
	if err != nil {
		t.Fatalf("contract check: %v\n%s", err, out)
	}
	if !strings.Contains(out, "built "+filepath.Join(cache, "strata", "contract-check", "builds")) || !strings.Contains(out, ".wasm (") {
		t.Errorf("no build progress naming the cached module:\n%s", out)
	}
	if strings.Contains(out, ".tmp") {
		t.Errorf("the output names a temporary file:\n%s", out)
	}
}

// TestContractBuildCountsFilesAsCheck: build and check name the same
// number of contract files, build adding the imports it saved besides.
func TestContractBuildCountsFilesAsCheck(t *testing.T) {
	set := filepath.Join(t.TempDir(), "contract.binpb")
	for _, args := range [][]string{
		{"--contracts", "../../../contracts"},
		{"--config", "../../../agent.toml"},
	} {
		out, err := runStrata(t, append([]string{"contract", "check"}, args...)...)
		if err != nil {
			t.Fatalf("check %v: %v\n%s", args, err, out)
		}
		i := strings.LastIndex(out, "contracts: ")
		j := strings.Index(out[i:], " file")
		checked := out[i+len("contracts: ") : i+j]
		out, err = runStrata(t, append([]string{"contract", "build", "-o", set}, args...)...)
		if err != nil {
			t.Fatalf("build %v: %v\n%s", args, err, out)
		}
		if want := "wrote " + set + ": " + checked + " file"; !strings.HasPrefix(out, want) || !strings.Contains(out, " imports\n") {
			t.Errorf("build %v says %q; check counted %s files", args, out, checked)
		}
	}
}

// TestContractCheckGitHubUsageErrors: with --format github, a problem that
// stops the check (exit status 2) is an error annotation too.
func TestContractCheckGitHubUsageErrors(t *testing.T) {
	for name, args := range map[string][]string{
		"missing directory": {"--format", "github", "--contracts", "no-such-dir"},
		"bad flag":          {"--format", "github", "--no-such-flag"},
		"bad revision":      {"--format", "github", "--contracts", "../../../contracts", "--against", "git:no-such-revision"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := runStrata(t, append([]string{"contract", "check"}, args...)...)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("error = %v, want a usage error (exit status 2)", err)
			}
			if !strings.HasPrefix(out, "::error title=strata contract check::") || !strings.Contains(out, ghEscapeData(err.Error())) {
				t.Errorf("no annotation of %q in:\n%s", err, out)
			}
		})
	}
	out, _ := runStrata(t, "contract", "check", "--contracts", "no-such-dir")
	if strings.Contains(out, "::error") {
		t.Errorf("text format annotates usage errors:\n%s", out)
	}
}

// ghEscapeData escapes a workflow command's message as the github format
// does.
func ghEscapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// TestContractCheckAccept: --accept turns an intended breaking change
// into a reported, accepted one, and the check passes.
func TestContractCheckAccept(t *testing.T) {
	accept := filepath.Join(t.TempDir(), "accept.toml")
	if err := os.WriteFile(accept, []byte("[[accept]]\nrule = \"FIELD_NO_DELETE\"\nelement = \"acme.v1.Placement.count\"\nreason = \"retired\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"contract", "check", "--contracts", compat + "field_delete/new", "--against", compat + "field_delete/old", "--format", "github"}
	if out, err := runStrata(t, args...); !errors.Is(err, errCheckFailed) {
		t.Fatalf("without --accept: error = %v\n%s", err, out)
	}
	out, err := runStrata(t, append(args, "--accept", accept, "--strict")...)
	if err != nil || !strings.Contains(out, "::notice file="+compat+"field_delete/old/acme/v1/acme.proto,line=21,title=FIELD_NO_DELETE (accepted)::") ||
		!strings.Contains(out, "Accepted in "+accept+": retired") {
		t.Errorf("with --accept: error = %v\n%s", err, out)
	}
}

// TestContractCheckConfigMissing: --config naming a file that does not
// exist (a shared workflow in a repository without agent.toml) checks the
// contracts without it, with a warning that --strict turns into a failure.
func TestContractCheckConfigMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "agent.toml")
	args := []string{"contract", "check", "--config", missing, "--contracts", "../../../contracts"}
	out, err := runStrata(t, args...)
	if err != nil || !strings.Contains(out, "warning CONFIG_MISSING: --config "+missing+": no such file: checked every .proto file under ../../../contracts, and no reducers") ||
		!strings.Contains(out, "strata contract check: 0 errors, 1 warning (../../../contracts: 3 files)") {
		t.Fatalf("error = %v\n%s", err, out)
	}
	if out, err := runStrata(t, append(args, "--strict")...); !errors.Is(err, errCheckFailed) {
		t.Errorf("--strict: error = %v, want errCheckFailed\n%s", err, out)
	}
	// A config file that exists but is broken is still a usage error.
	bad := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(bad, []byte("gossip = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var ue usageError
	if _, err := runStrata(t, "contract", "check", "--config", bad); !errors.As(err, &ue) {
		t.Errorf("broken config: error = %v, want a usage error", err)
	}
}

// --contract and --contracts are two spellings of one flag on both the
// contract and the reducer commands: either gives the same result.
func TestContractFlagSpellings(t *testing.T) {
	dir := "../../../contracts"
	var first string
	for _, spelling := range []string{"--contracts", "--contract"} {
		out, err := runStrata(t, "contract", "check", spelling, dir)
		if err != nil {
			t.Fatalf("contract check %s: %v\n%s", spelling, err, out)
		}
		if first == "" {
			first = out
		} else if out != first {
			t.Errorf("contract check %s: %q, --contracts gave %q", spelling, out, first)
		}
	}
	for _, spelling := range []string{"--contract", "--contracts"} {
		gen := filepath.Join(t.TempDir(), "fleetv1")
		if out, err := runStrata(t, "reducer", "gen", spelling, dir, "-o", gen); err != nil {
			t.Fatalf("reducer gen %s: %v\n%s", spelling, err, out)
		}
		if entries, _ := os.ReadDir(gen); len(entries) == 0 {
			t.Errorf("reducer gen %s %s wrote nothing", spelling, dir)
		}
	}
}
