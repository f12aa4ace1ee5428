package check

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/recordcheck"
)

// Reducer is a reducer to check for conformance, as configured.
type Reducer struct {
	// Name is the reducer's configured name.
	Name string
	// Source and Wasm say where the module is (one of them is set); the
	// Host knows how to load them.
	Source, Wasm string
	// Inputs are the tables it reads, Outputs the record types it writes.
	Inputs, Outputs []string
	// Fixtures is the directory of its fixtures: one subdirectory per
	// case (see FixturesDir). Empty, or a directory that does not exist,
	// means the reducer has none.
	Fixtures string
}

// FixturesDir returns where the fixtures of a reducer are by convention:
// "testdata" in its Go source directory, or for a prebuilt module the
// directory named like the .wasm file without its extension plus
// ".testdata" ("leaky.wasm" → "leaky.testdata").
//
// Each case is a subdirectory holding one "<table>.jsonl" file per input
// table (rows in protojson, one per line; a missing file means no rows), an
// optional "region" file with the region's name (default "local"), and
// optionally the expected records: "want.jsonl", one per line as
// {"record": "app_placements", "key": "web", "value": {...}}, or
// "golden.json", a JSON array of the same objects as `strata reducer test
// --update` writes it. A fixtures directory that holds .jsonl files itself
// is a single case.
func FixturesDir(source, wasm string) string {
	if source != "" {
		return filepath.Join(source, "testdata")
	}
	if wasm != "" {
		return strings.TrimSuffix(wasm, filepath.Ext(wasm)) + ".testdata"
	}
	return ""
}

// Host runs reducers for the conformance check: it must be the host the
// agent runs them in, so the check sees what the agent would see. Run is
// called by one goroutine at a time.
type Host interface {
	// Run runs reducer r once on in and returns its records. A reducer
	// that fails (returns an error, traps, times out, writes bad output)
	// is an error, whose text is reported.
	Run(ctx context.Context, r Reducer, in Input) ([]Output, error)
}

// Input is the input of one reducer run.
type Input struct {
	// Region is the region whose rows these are.
	Region string
	// Tables holds the rows of each input table, binary-encoded, in the
	// order of Reducer.Inputs.
	Tables []Table
}

// Table is the rows of one input table.
type Table struct {
	Name string
	Rows [][]byte
}

// Output is one record a reducer wrote.
type Output struct {
	Record, Key string
	Value       []byte
}

// Rule ids of the conformance check.
const (
	ruleReducerConfig    = "REDUCER_CONFIG"            // an input that is not a table, an output that is not a record
	ruleNoFixtures       = "REDUCER_NO_FIXTURES"       // nothing to run
	ruleFixtureInvalid   = "FIXTURE_INVALID"           // a fixture row or golden record that does not fit the contract
	ruleReducerFailed    = "REDUCER_FAILED"            // the run failed
	ruleOutputRejected   = "REDUCER_OUTPUT_REJECTED"   // a record the agent's pipeline rejects
	ruleOutputUndeclared = "REDUCER_OUTPUT_UNDECLARED" // a record type the reducer does not declare
	ruleGolden           = "REDUCER_GOLDEN_DIFF"       // output differs from want.jsonl
)

// defaultRegion is the region of a fixture without a region file.
const defaultRegion = "local"

// conformance runs every reducer's fixtures and adds what it finds to r.
// The error is ctx's.
func conformance(ctx context.Context, r *Report, c *contracts.Contract, reducers []Reducer, host Host) error {
	for _, red := range reducers {
		cases, ok := fixtureCases(r, red)
		if !ok {
			continue
		}
		r.Reducers = append(r.Reducers, red.Name)
		for _, dir := range cases {
			if err := runCase(ctx, r, c, red, host, dir); err != nil {
				return err
			}
		}
	}
	return nil
}

// fixtureCases returns the case directories of red, or false (after adding
// the reason to r) when there is nothing to run.
func fixtureCases(r *Report, red Reducer) ([]string, bool) {
	entries, err := os.ReadDir(red.Fixtures)
	if red.Fixtures == "" || errors.Is(err, fs.ErrNotExist) {
		r.addAt(contracts.Finding{
			Rule: ruleNoFixtures, Severity: contracts.SeverityWarning,
			Message: fmt.Sprintf("reducer %s has no fixtures: its output is not checked", red.Name),
			Hint:    fmt.Sprintf("add a case directory under %s with a <table>.jsonl of input rows (and want.jsonl)", cmpOr(red.Fixtures, "its testdata directory")),
		}, "")
		return nil, false
	}
	if err != nil {
		r.addAt(failure(ruleReducerFailed, "reducer %s: fixtures: %v", red.Name, err), red.Fixtures)
		return nil, false
	}
	var cases []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".jsonl") {
			return []string{red.Fixtures}, true // the directory is the case
		}
	}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			cases = append(cases, filepath.Join(red.Fixtures, e.Name()))
		}
	}
	if len(cases) == 0 {
		r.addAt(contracts.Finding{
			Rule: ruleNoFixtures, Severity: contracts.SeverityWarning,
			Message: fmt.Sprintf("reducer %s: %s holds no case directories", red.Name, red.Fixtures),
			Hint:    "add a case directory with a <table>.jsonl of input rows (and want.jsonl)",
		}, red.Fixtures)
		return nil, false
	}
	return cases, true
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func failure(rule, format string, args ...any) contracts.Finding {
	return contracts.Finding{Rule: rule, Severity: contracts.SeverityError, Message: fmt.Sprintf(format, args...)}
}

// addAt appends f at path (a file on disk, or "").
func (r *Report) addAt(f contracts.Finding, path string) {
	r.Findings = append(r.Findings, Finding{Finding: f, Path: filepath.ToSlash(path)})
}

// runCase runs one fixture case of red.
func runCase(ctx context.Context, r *Report, c *contracts.Contract, red Reducer, host Host, dir string) error {
	label := fmt.Sprintf("reducer %s, case %s", red.Name, filepath.Base(dir))
	region := defaultRegion
	if b, err := os.ReadFile(filepath.Join(dir, "region")); err == nil {
		region = strings.TrimSpace(string(b))
	}

	in := Input{Region: region}
	leaks := contracts.NewLeakSet()
	ok := true
	for _, name := range red.Inputs {
		s, _ := c.Table(name) // ReducerConfig has checked it
		file := filepath.Join(dir, name+".jsonl")
		rows, err := readRows(r, s, file, leaks)
		if err != nil {
			r.addAt(failure(ruleFixtureInvalid, "%s: %v", label, err), file)
			ok = false
			continue
		}
		in.Tables = append(in.Tables, Table{Name: name, Rows: rows})
	}
	if !ok {
		return nil
	}

	out, err := host.Run(ctx, red, in)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f := failure(ruleReducerFailed, "%s: the run failed: %s", label, oneLine(err.Error()))
		f.Hint = "run the case natively with `go test` through sdk/sdktest to debug it"
		r.addAt(f, dir)
		return nil
	}

	// Every record goes through the agent's pipeline, as the publisher
	// would write it.
	inputFile := dir
	if len(red.Inputs) > 0 {
		inputFile = filepath.Join(dir, red.Inputs[0]+".jsonl")
	}
	pipeline := recordcheck.CheckOutputs(c, leaks)
	seen := map[[2]string]bool{}
	for _, o := range out {
		id := [2]string{o.Record, o.Key}
		if seen[id] {
			r.addAt(failure(ruleOutputRejected, "%s: record %s/%s written twice", label, o.Record, o.Key), inputFile)
			continue
		}
		seen[id] = true
		if !slices.Contains(red.Outputs, o.Record) {
			f := failure(ruleOutputUndeclared, "%s: wrote record %s/%s, but %q is not among its outputs %v", label, o.Record, o.Key, o.Record, red.Outputs)
			f.Hint = "add the record type to the reducer's outputs in agent.toml, or stop writing it"
			r.addAt(f, inputFile)
			continue
		}
		err := pipeline.Check(global.Write{Record: global.Record{Name: o.Record, Region: region, Key: o.Key, Value: o.Value}, Writer: region})
		if err != nil {
			f := failure(ruleOutputRejected, "%s: %s", label, strings.TrimPrefix(err.Error(), "contracts: "))
			f.Hint = rejectHint(err)
			r.addAt(f, inputFile)
		}
	}

	for _, name := range []string{"want.jsonl", "golden.json"} {
		if file := filepath.Join(dir, name); fileExists(file) {
			golden(r, c, label, file, out)
			break
		}
	}
	return nil
}

// rejectHint is the fix hint for a record the pipeline rejects.
func rejectHint(err error) string {
	var re *contracts.RejectError
	if !errors.As(err, &re) {
		return ""
	}
	switch re.Reason() {
	case contracts.RuleLeak:
		return "the reducer copies regional-only data into a record: publish a coarse value (a count, a flag) instead"
	case contracts.RuleUnknownField, contracts.RuleDecode:
		return "rebuild the reducer against the current contract (generated types out of date?)"
	case contracts.RuleValidate:
		return "make the reducer write values its record's buf.validate rules accept"
	case contracts.RuleKeyMismatch:
		return "write each record under the key its key fields spell"
	case contracts.RuleTooLarge, contracts.RuleTooMany:
		return "write fewer or smaller records, or raise the record's limit in the contract"
	}
	return ""
}

// defaultHints are the fix hints of findings whose own hint is empty: the
// check promises a hint on every finding.
var defaultHints = map[string]string{
	ruleFixtureInvalid: "fix the fixture: a <table>.jsonl line is a row of the table in protojson, a want.jsonl line {\"record\": ..., \"key\": ..., \"value\": {...}}",
	ruleReducerFailed:  "run the case natively with `go test` through sdk/sdktest to debug it",
	ruleOutputRejected: "make the reducer write each record once, as the contract accepts it; the message names the pipeline rule and field",
}

// fillHints gives every finding of r without a hint its rule's default
// hint.
func (r *Report) fillHints() {
	for i := range r.Findings {
		if r.Findings[i].Hint == "" {
			r.Findings[i].Hint = defaultHints[r.Findings[i].Rule]
		}
	}
}

// readRows reads a JSON-lines file of rows of table s, validating each and
// collecting its regional_only values. Problems with single rows are added
// to r; the error is for a file that cannot be read. A missing file is no
// rows.
func readRows(r *Report, s *contracts.Schema, file string, leaks *contracts.LeakSet) ([][]byte, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rows [][]byte
	for n, line := range jsonLines(data) {
		m, err := s.DecodeJSON(line)
		if err == nil {
			err = s.Validate(m)
		}
		if err != nil {
			f := failure(ruleFixtureInvalid, "row of table %s does not fit the contract: %s", s.Name, strings.TrimPrefix(err.Error(), "contracts: "))
			f.Line = n
			r.addAt(f, file)
			continue
		}
		if err := leaks.Collect(s, m); err != nil {
			return nil, err
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			return nil, err
		}
		rows = append(rows, b)
	}
	return rows, nil
}

// jsonLines yields the non-blank lines of data that do not start with "#",
// with their 1-based line numbers.
func jsonLines(data []byte) func(yield func(int, []byte) bool) {
	return func(yield func(int, []byte) bool) {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 16<<20)
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 || line[0] == '#' {
				continue
			}
			if !yield(n, line) {
				return
			}
		}
	}
}

// goldenRecord is one line of want.jsonl.
type goldenRecord struct {
	Record string          `json:"record"`
	Key    string          `json:"key"`
	Value  json.RawMessage `json:"value"`
}

// golden compares out with the records of file, if it exists.
func golden(r *Report, c *contracts.Contract, label, file string, out []Output) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		r.addAt(failure(ruleFixtureInvalid, "%s: %v", label, err), file)
		return
	}
	type want struct {
		line  int
		value proto.Message
	}
	base := filepath.Base(file)
	wants := map[[2]string]want{}
	for n, g := range goldenRecords(r, label, file, data) {
		s, ok := c.Record(g.Record)
		if !ok {
			f := failure(ruleFixtureInvalid, "%s: %s: no record type %q in the contract", label, base, g.Record)
			f.Line = n
			r.addAt(f, file)
			continue
		}
		m, err := s.DecodeJSON(g.Value)
		if err != nil {
			f := failure(ruleFixtureInvalid, "%s: %s: %s", label, base, strings.TrimPrefix(err.Error(), "contracts: "))
			f.Line = n
			r.addAt(f, file)
			continue
		}
		wants[[2]string{g.Record, g.Key}] = want{line: n, value: m}
	}
	hint := fmt.Sprintf("fix the reducer, or update %s if the new output is right", base)
	got := map[[2]string]bool{}
	for _, o := range out {
		id := [2]string{o.Record, o.Key}
		got[id] = true
		w, ok := wants[id]
		if !ok {
			f := failure(ruleGolden, "%s: unexpected record %s/%s", label, o.Record, o.Key)
			f.Hint = hint
			r.addAt(f, file)
			continue
		}
		s, _ := c.Record(o.Record)
		m, err := s.DecodeBinary(o.Value)
		if err != nil {
			continue // rejected above
		}
		if !proto.Equal(m, w.value) {
			gotJSON, _ := s.EncodeJSON(m)
			f := failure(ruleGolden, "%s: record %s/%s differs: got %s", label, o.Record, o.Key, compactJSON(gotJSON))
			f.Line, f.Hint = w.line, hint
			r.addAt(f, file)
		}
	}
	for id, w := range wants {
		if !got[id] {
			f := failure(ruleGolden, "%s: missing record %s/%s", label, id[0], id[1])
			f.Line, f.Hint = w.line, hint
			r.addAt(f, file)
		}
	}
}

// goldenRecords yields the records of a golden file with their line
// numbers: JSON lines, or a JSON array (whose records get line 0). Lines
// that do not parse are added to r.
func goldenRecords(r *Report, label, file string, data []byte) func(yield func(int, goldenRecord) bool) {
	return func(yield func(int, goldenRecord) bool) {
		if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
			var recs []goldenRecord
			dec := json.NewDecoder(bytes.NewReader(trimmed))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&recs); err != nil {
				r.addAt(failure(ruleFixtureInvalid, "%s: %s: %v", label, filepath.Base(file), err), file)
				return
			}
			for _, g := range recs {
				if !yield(0, g) {
					return
				}
			}
			return
		}
		for n, line := range jsonLines(data) {
			var g goldenRecord
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&g); err != nil {
				f := failure(ruleFixtureInvalid, "%s: %s: %v", label, filepath.Base(file), err)
				f.Line = n
				r.addAt(f, file)
				continue
			}
			if !yield(n, g) {
				return
			}
		}
	}
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// compactJSON returns b without insignificant spaces.
func compactJSON(b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return string(b)
	}
	return buf.String()
}

// oneLine joins the lines of s with "; ".
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ; ")), " ")
}
