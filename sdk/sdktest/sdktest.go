// Package sdktest runs a reducer natively in `go test`: the same function
// the module runs, through the same encoding (sdk.Handle), with its records
// checked by the agent's global-write pipeline (known record, no unknown
// fields, protovalidate rules, key, limits, leak guard) and compared with
// golden files.
//
//	func TestReduce(t *testing.T) {
//		c := sdktest.Contract(t, "../../contracts")
//		rows := sdktest.Rows(t, c, "machines", "testdata/machines.jsonl")
//		recs := sdktest.Run(t, c, Reduce, "ord", map[string][][]byte{"machines": rows})
//		sdktest.Golden(t, c, "testdata/golden.json", recs)
//	}
//
// Run `go test -update` to rewrite golden files.
package sdktest

import (
	"context"
	"errors"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/abi"
	"github.com/strata-state/strata/internal/recordcheck"
	"github.com/strata-state/strata/sdk"
)

// update is the -update flag of tests that import sdktest.
var update = flag.Bool("update", false, "sdktest: rewrite golden files instead of comparing")

// Problem is one way a record fails the contract: record, key, rule id
// (e.g. "leak", "unknown_field", "validate:string.pattern"), field and
// message.
type Problem = recordcheck.Problem

// Record is one record a reducer wrote.
type Record struct {
	// Name is the record type, e.g. "app_placements"; Key its key.
	Name, Key string
	// Value is the binary-encoded message; decode it with Decode.
	Value []byte
}

// Contract compiles the contract rooted at dir: files, or every .proto
// file under dir. It fails the test on error.
func Contract(t testing.TB, dir string, files ...string) *contracts.Contract {
	t.Helper()
	if len(files) == 0 {
		var err error
		if files, err = protoFiles(dir); err != nil {
			t.Fatal(err)
		}
	}
	c, err := contracts.CompileDir(context.Background(), dir, files)
	if err != nil {
		t.Fatalf("contract %s: %v", dir, err)
	}
	return c
}

// Rows reads the rows of table from a JSON lines file: protojson messages,
// one per line, blank lines and lines starting with "#" skipped. Each row
// must pass the table's rules. It fails the test on error.
func Rows(t testing.TB, c *contracts.Contract, table, path string) [][]byte {
	t.Helper()
	rows, err := recordcheck.ReadRowsFile(c, table, path)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// Encode encodes rows of generated types, for tables built in Go.
func Encode[M sdk.Message](rows ...M) [][]byte {
	out := make([][]byte, len(rows))
	for i, r := range rows {
		out[i] = r.StrataAppend(nil)
	}
	return out
}

// Reduce runs r on the rows of each table (by name) as the module would,
// and returns its records sorted by name and key, or its error.
func Reduce(r sdk.Reducer, region string, tables map[string][][]byte) ([]Record, error) {
	req := &abi.Request{Version: abi.Version, Reducer: "sdktest", Region: region}
	names := make([]string, 0, len(tables))
	for name := range tables {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		req.Tables = append(req.Tables, abi.Table{Name: name, Rows: tables[name]})
	}
	resp, err := abi.DecodeResponse(sdk.Handle(r, abi.AppendRequest(nil, req)))
	if err != nil {
		return nil, err
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	out := make([]Record, len(resp.Records))
	for i, rec := range resp.Records {
		out[i] = Record(rec)
	}
	return out, nil
}

// Run runs r like Reduce and checks every record against c with the
// agent's pipeline, as a reducer of region whose input is tables. It fails
// the test if r fails or a record is rejected, naming record and field.
func Run(t testing.TB, c *contracts.Contract, r sdk.Reducer, region string, tables map[string][][]byte) []Record {
	t.Helper()
	recs, err := Reduce(r, region, tables)
	if err != nil {
		t.Fatalf("reducer failed: %v", err)
	}
	if problems := Check(t, c, region, tables, recs); len(problems) > 0 {
		var b strings.Builder
		for _, p := range problems {
			b.WriteString("\n  ")
			b.WriteString(p.String())
		}
		t.Fatalf("%d records rejected by the contract:%s", len(problems), b.String())
	}
	return recs
}

// Check returns the problems the agent's pipeline finds in recs, the
// output of a reducer of region whose input is tables.
func Check(t testing.TB, c *contracts.Contract, region string, tables map[string][][]byte, recs []Record) []Problem {
	t.Helper()
	var in []recordcheck.Table
	for name, rows := range tables {
		in = append(in, recordcheck.Table{Name: name, Rows: rows})
	}
	problems, err := recordcheck.Check(c, region, in, toCheck(recs))
	if err != nil {
		t.Fatal(err)
	}
	return problems
}

func toCheck(recs []Record) []recordcheck.Record {
	out := make([]recordcheck.Record, len(recs))
	for i, r := range recs {
		out[i] = recordcheck.Record{Name: r.Name, Key: r.Key, Value: r.Value}
	}
	return out
}

// Golden compares recs with the golden file at path (a JSON array of
// {"record", "key", "value"}, as `strata reducer test --update` writes
// it), as messages. With -update it rewrites the file instead.
func Golden(t testing.TB, c *contracts.Contract, path string, recs []Record) {
	t.Helper()
	if *update {
		b, err := recordcheck.Golden(c, toCheck(recs))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	diffs, err := recordcheck.CompareGolden(c, toCheck(recs), want)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Errorf("records differ from %s (go test -update rewrites it):\n%s", path, strings.Join(diffs, "\n"))
	}
}

// Decode decodes a record's value into a new message of type M.
func Decode[M any, P interface {
	*M
	sdk.Message
}](t testing.TB, rec Record) *M {
	t.Helper()
	m := P(new(M))
	if err := m.StrataUnmarshal(rec.Value); err != nil {
		t.Fatalf("record %s/%s: %v", rec.Name, rec.Key, err)
	}
	return (*M)(m)
}
