package check

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/strata-state/strata/contracts"
)

// fakeHost runs reducers written in Go in place of Wasm modules: the
// conformance logic is the same whatever runs the reducer.
type fakeHost struct {
	c   *contracts.Contract
	run func(h *fakeHost, in Input) ([]Output, error)
}

func (h *fakeHost) Run(_ context.Context, _ Reducer, in Input) ([]Output, error) { return h.run(h, in) }

// appRegions is the example reducer: one app_placements record per app with
// a started, healthy machine. leak, when set, names the machines field it
// copies into the record's app field.
func appRegions(leak string) func(h *fakeHost, in Input) ([]Output, error) {
	return func(h *fakeHost, in Input) ([]Output, error) {
		machines, _ := h.c.Table("machines")
		apps, _ := h.c.Record("app_placements")
		count := map[string]uint32{}
		var order []string
		for _, t := range in.Tables {
			for _, b := range t.Rows {
				m, err := machines.DecodeBinary(b)
				if err != nil {
					return nil, err
				}
				get := func(name string) protoreflect.Value {
					return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(name)))
				}
				if get("state").Enum() != 1 || !get("healthy").Bool() {
					continue
				}
				app := get("app").String()
				if leak != "" {
					app = get(leak).String()
				}
				if _, ok := count[app]; !ok {
					order = append(order, app)
				}
				count[app]++
			}
		}
		slices.Sort(order)
		var out []Output
		for _, app := range order {
			rec := dynamicpb.NewMessage(apps.Desc)
			f := apps.Desc.Fields()
			rec.Set(f.ByName("app"), protoreflect.ValueOfString(app))
			rec.Set(f.ByName("serving"), protoreflect.ValueOfBool(true))
			band := protoreflect.EnumNumber(2) // CAPACITY_BAND_LOW: 1 to 3
			if count[app] > 3 {
				band = 3 // CAPACITY_BAND_NORMAL and above: not in these fixtures
			}
			rec.Set(f.ByName("capacity"), protoreflect.ValueOfEnum(band))
			b, err := proto.Marshal(rec)
			if err != nil {
				return nil, err
			}
			out = append(out, Output{Record: "app_placements", Key: app, Value: b})
		}
		return out, nil
	}
}

const machineRows = `# two apps; one machine of api is stopped
{"id": "m-1", "app": "web", "state": "MACHINE_STATE_STARTED", "healthy": true, "host": "h1", "privateIp": "10.0.0.1"}
{"id": "m-2", "app": "web", "state": "MACHINE_STATE_STARTED", "healthy": true, "host": "h2"}

{"id": "m-3", "app": "api", "state": "MACHINE_STATE_STARTED", "healthy": true, "host": "h1"}
{"id": "m-4", "app": "api", "state": "MACHINE_STATE_STOPPED", "healthy": false, "host": "h3"}
`

const wantRecords = `{"record": "app_placements", "key": "api", "value": {"app": "api", "serving": true, "capacity": "CAPACITY_BAND_LOW"}}
{"record": "app_placements", "key": "web", "value": {"app": "web", "serving": true, "capacity": "CAPACITY_BAND_LOW"}}
`

// writeFixture writes one case of fixtures under dir.
func writeFixture(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConformance(t *testing.T) {
	example, err := contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	contractDir, err := filepath.Abs("..") // the contracts package holds the example's .proto files
	if err != nil {
		t.Fatal(err)
	}
	reducer := func(fixtures string) Reducer {
		return Reducer{Name: "app-regions", Source: "plugins/app-regions", Inputs: []string{"machines"},
			Outputs: []string{"app_placements"}, Fixtures: fixtures}
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		run   func(h *fakeHost, in Input) ([]Output, error)
		want  []string // substrings of the report, in order
	}{
		{"clean", map[string]string{"machines.jsonl": machineRows, "want.jsonl": wantRecords}, appRegions(""),
			[]string{"strata contract check: ok (" + contractDir + ": 2 files, 1 reducer)"}},
		{"no golden", map[string]string{"machines.jsonl": machineRows}, appRegions(""),
			[]string{"strata contract check: ok"}},
		{"leak of a regional_only value", map[string]string{"machines.jsonl": machineRows}, appRegions("id"),
			[]string{
				"/case/machines.jsonl\n",
				`error REDUCER_OUTPUT_REJECTED: reducer app-regions, case case: record app_placements/m-1 of region local rejected [leak]: field "app": equals the value of regional_only field machines.id of an input row`,
				"fix: the reducer copies regional-only data into a record",
				"3 errors, 0 warnings",
			}},
		{"golden diff", map[string]string{"machines.jsonl": machineRows, "want.jsonl": strings.Replace(wantRecords, `"web", "serving": true, "capacity": "CAPACITY_BAND_LOW"`, `"web", "serving": true, "capacity": "CAPACITY_BAND_HIGH"`, 1)}, appRegions(""),
			[]string{`2: error REDUCER_GOLDEN_DIFF: reducer app-regions, case case: record app_placements/web differs: got {"app":"web","serving":true,"capacity":"CAPACITY_BAND_LOW"}`}},
		{"missing and unexpected records", map[string]string{"machines.jsonl": machineRows,
			"want.jsonl": `{"record": "app_placements", "key": "db", "value": {"app": "db"}}` + "\n"}, appRegions(""),
			[]string{"error REDUCER_GOLDEN_DIFF: reducer app-regions, case case: unexpected record app_placements/api",
				"1: error REDUCER_GOLDEN_DIFF: reducer app-regions, case case: missing record app_placements/db"}},
		{"invalid fixture row", map[string]string{"machines.jsonl": `{"id": "m-1", "app": "web", "state": "MACHINE_STATE_STARTED", "privateIp": "nope"}` + "\n" + `{"id": "m-2", "colour": "red"}` + "\n"}, appRegions(""),
			[]string{`1: error FIXTURE_INVALID: row of table machines does not fit the contract: machines: invalid: private_ip: must be a valid IP address [string.ip]`,
				`2: error FIXTURE_INVALID: row of table machines does not fit the contract: decode machines: field "colour": (line 1:15): unknown field "colour"`}},
		{"run fails", map[string]string{"machines.jsonl": machineRows}, func(*fakeHost, Input) ([]Output, error) {
			return nil, errors.New("wasm trap:\nunreachable")
		}, []string{"/case\n", "error REDUCER_FAILED: reducer app-regions, case case: the run failed: wasm trap: ; unreachable"}},
		{"undeclared, duplicate and unknown-field records", map[string]string{"machines.jsonl": machineRows}, func(h *fakeHost, in Input) ([]Output, error) {
			good, _ := appRegions("")(h, in)
			bad := append(slices.Clone(good[0].Value), 0x50, 0x01) // field 10: unknown
			return append(good,
				Output{Record: "app_placements", Key: "api", Value: good[0].Value},
				Output{Record: "other", Key: "x"},
				Output{Record: "app_placements", Key: "api2", Value: bad},
			), nil
		}, []string{`record app_placements/api written twice`, `record app_placements/api2 of region local rejected [unknown_field]: field "#10"`,
			`wrote record other/x, but "other" is not among its outputs [app_placements]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fixtures := t.TempDir()
			writeFixture(t, filepath.Join(fixtures, "case"), tc.files)
			opts := Options{Dir: contractDir, Files: contracts.ExampleFiles(),
				Reducers: []Reducer{reducer(fixtures)}, Host: &fakeHost{c: example, run: tc.run}}
			got := text(t, opts)
			r, err := Run(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range r.Findings {
				if f.Hint == "" {
					t.Errorf("%s finding without a hint: %s", f.Rule, f.Message)
				}
			}
			rest := got
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("report lacks (in order) %q:\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
		})
	}

	t.Run("one case, golden.json", func(t *testing.T) {
		fixtures := t.TempDir()
		golden := `[
  {"record": "app_placements", "key": "api", "value": {"app": "api", "serving": true, "capacity": "CAPACITY_BAND_LOW"}},
  {"record": "app_placements", "key": "web", "value": {"app": "web", "serving": true, "capacity": "CAPACITY_BAND_HIGH"}}
]`
		writeFixture(t, fixtures, map[string]string{"machines.jsonl": machineRows, "golden.json": golden})
		got := text(t, Options{Dir: contractDir, Files: contracts.ExampleFiles(),
			Reducers: []Reducer{reducer(fixtures)}, Host: &fakeHost{c: example, run: appRegions("")}})
		want := "/golden.json\n  error REDUCER_GOLDEN_DIFF: reducer app-regions, case " + filepath.Base(fixtures) +
			`: record app_placements/web differs: got {"app":"web","serving":true,"capacity":"CAPACITY_BAND_LOW"}` + "\n    fix: fix the reducer, or update golden.json"
		if !strings.Contains(got, want) || !strings.Contains(got, "1 error, 0 warnings") {
			t.Errorf("report:\n%s\nwant:\n%s", got, want)
		}
	})

	t.Run("no fixtures, no host, bad config", func(t *testing.T) {
		host := &fakeHost{c: example, run: appRegions("")}
		got := text(t, Options{Dir: contractDir, Files: contracts.ExampleFiles(), Host: host,
			Reducers: []Reducer{reducer(filepath.Join(t.TempDir(), "none"))}})
		if !strings.Contains(got, "warning REDUCER_NO_FIXTURES: reducer app-regions has no fixtures") {
			t.Errorf("no fixtures:\n%s", got)
		}
		got = text(t, Options{Dir: contractDir, Files: contracts.ExampleFiles(), Reducers: []Reducer{reducer("")}})
		if !strings.Contains(got, "warning CONFORMANCE_SKIPPED") {
			t.Errorf("no host:\n%s", got)
		}
		fixtures := t.TempDir()
		writeFixture(t, filepath.Join(fixtures, "case"), map[string]string{"machines.jsonl": machineRows})
		red := reducer(fixtures)
		red.Inputs, red.Outputs = []string{"machines", "hosts"}, []string{"placements"}
		got = text(t, Options{Dir: contractDir, Files: contracts.ExampleFiles(), Host: host, Reducers: []Reducer{red}})
		for _, w := range []string{`reducer app-regions: inputs: "hosts" is not a table of the contract`, `reducer app-regions: outputs: "placements" is not a record of the contract`} {
			if !strings.Contains(got, w) {
				t.Errorf("bad config: no %q in\n%s", w, got)
			}
		}
	})
}

// TestReducerConfig: a typo in a reducer's inputs or outputs is an error
// with a "did you mean" and a hint, placed on its line of agent.toml,
// whether or not the reducer has fixtures or the check has a host.
func TestReducerConfig(t *testing.T) {
	contractDir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "agent.toml")
	toml := `node = "n"

[[reducers]]
name = "other"
source = "x"
inputs = ["machines"]
outputs = ["app_placements"]

[[reducers]]
name = "app-regions"
source = "plugins/app-regions"
inputs = ["machine", "app_placements"]
outputs = ["App_Placements", "nothing_like_it"]
`
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	reducers := []Reducer{
		{Name: "other", Source: "x", Inputs: []string{"machines"}, Outputs: []string{"app_placements"}},
		{Name: "app-regions", Source: "plugins/app-regions", Inputs: []string{"machine", "app_placements"}, Outputs: []string{"App_Placements", "nothing_like_it"}},
	}
	r, err := Run(context.Background(), Options{Dir: contractDir, Files: contracts.ExampleFiles(), Reducers: reducers, ConfigFile: cfg})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		line          int
		message, hint string
	}
	var got []want
	for _, f := range r.Findings {
		if f.Rule != ruleReducerConfig {
			continue
		}
		if f.Path != filepath.ToSlash(cfg) || f.Severity != contracts.SeverityError {
			t.Errorf("finding at %q, severity %s: want %s, error", f.Path, f.Severity, cfg)
		}
		got = append(got, want{f.Line, f.Message, f.Hint})
	}
	wants := []want{
		{12, `reducer app-regions: inputs: "app_placements" is not a table of the contract (it is a record)`,
			`a reducer reads tables and writes records: move "app_placements" to the reducer's outputs`},
		{12, `reducer app-regions: inputs: "machine" is not a table of the contract; did you mean "machines"?`,
			`in the [[reducers]] entry named "app-regions", replace "machine" with "machines" in inputs`},
		{13, `reducer app-regions: outputs: "App_Placements" is not a record of the contract; did you mean "app_placements"?`,
			`in the [[reducers]] entry named "app-regions", replace "App_Placements" with "app_placements" in outputs`},
		{13, `reducer app-regions: outputs: "nothing_like_it" is not a record of the contract`,
			`in the [[reducers]] entry named "app-regions", list in outputs only records of the contract: app_placements`},
	}
	if !slices.Equal(got, wants) {
		t.Errorf("REDUCER_CONFIG findings:\n got %+v\nwant %+v", got, wants)
	}
	if errs, _ := r.Count(); errs != len(wants) {
		t.Errorf("%d errors, want %d: %v", errs, len(wants), r.Findings)
	}
}
