// Package recordcheck checks a reducer run's records against a contract,
// with the agent's global-write pipeline (contracts.CheckWrite, leak guard
// included), and reads and writes the JSON files that describe runs: input
// rows (protojson, one per line) and golden records. `strata reducer
// test` and package sdk/sdktest share it, so a test passes natively exactly
// when it passes against the built module.
package recordcheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/contracts"
)

// Table is the rows of one input table, binary-encoded.
type Table struct {
	Name string
	Rows [][]byte
}

// Record is one record of a run: the global tier's record (its Region is
// set by Check).
type Record = global.Record

// Problem is one way a record fails the contract.
type Problem struct {
	// Record and Key identify the record.
	Record, Key string
	// Rule is the pipeline's rule id, e.g. "unknown_field", "leak",
	// "validate:string.pattern".
	Rule string
	// Field is the field at fault, when there is one.
	Field string
	// Message says what is wrong.
	Message string
}

// String returns e.g. `app_placements/web: field "app": value does not
// match the pattern [validate:string.pattern]`.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Record)
	b.WriteByte('/')
	b.WriteString(p.Key)
	b.WriteString(": ")
	if p.Field != "" {
		fmt.Fprintf(&b, "field %q: ", p.Field)
	}
	b.WriteString(p.Message)
	fmt.Fprintf(&b, " [%s]", p.Rule)
	return b.String()
}

// Check runs each record through the agent's global-write pipeline as the
// output of a reducer of region whose input was inputs: record type known,
// strict decoding, protovalidate rules, key, size and count limits, and the
// leak guard over the inputs' regional_only values. A validation error
// with several violations gives one Problem each. The error reports inputs
// that do not fit the contract.
func Check(c *contracts.Contract, region string, inputs []Table, records []Record) ([]Problem, error) {
	leaks := contracts.NewLeakSet()
	for _, t := range inputs {
		s, ok := c.Table(t.Name)
		if !ok {
			return nil, fmt.Errorf("input table %q is not a table of the contract", t.Name)
		}
		for i, row := range t.Rows {
			m, err := s.DecodeBinary(row)
			if err != nil {
				return nil, fmt.Errorf("input table %s, row %d: %w", t.Name, i, err)
			}
			if err := leaks.Collect(s, m); err != nil {
				return nil, err
			}
		}
	}
	var problems []Problem
	b := CheckOutputs(c, leaks)
	for _, rec := range records {
		rec.Region = region
		err := b.Check(global.Write{Record: rec, Writer: region})
		var rej *contracts.RejectError
		switch {
		case err == nil:
			continue
		case !errors.As(err, &rej):
			return nil, err
		}
		var ve *contracts.ValidationError
		if errors.As(rej.Err, &ve) {
			for _, v := range ve.Violations {
				problems = append(problems, Problem{Record: rec.Name, Key: rec.Key, Rule: "validate:" + v.Rule, Field: v.Field, Message: v.Message})
			}
			continue
		}
		problems = append(problems, Problem{Record: rec.Name, Key: rec.Key, Rule: rej.Rule, Field: rej.Field, Message: rej.Detail})
	}
	return problems, nil
}

// CheckOutputs returns the global write path's check of a reducer's
// complete output, as the region's publisher runs it on a region that
// holds nothing yet: no rate budget (a test run is not a write), every
// other step as on the agent. `strata reducer test`, sdk/sdktest and the
// conformance step of `strata contract check` all check through it.
func CheckOutputs(c *contracts.Contract, leaks *contracts.LeakSet) *global.Batch {
	return &global.Batch{Contract: c, Holdings: global.NoHoldings{}, Leaks: leaks}
}

// ReadRows reads rows of table from r: protojson messages, one per line;
// blank lines and lines starting with "#" are skipped. Each row must decode
// and pass the table's rules, as a write through the API must. name is for
// errors (the file name).
func ReadRows(c *contracts.Contract, table string, r io.Reader, name string) ([][]byte, error) {
	s, ok := c.Table(table)
	if !ok {
		return nil, fmt.Errorf("%s: %q is not a table of the contract", name, table)
	}
	var rows [][]byte
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 16<<20)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		m, err := s.DecodeJSON(text)
		if err == nil {
			err = s.Validate(m)
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		rows = append(rows, b)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return rows, nil
}

// ReadRowsFile is ReadRows of a file.
func ReadRowsFile(c *contracts.Contract, table, path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadRows(c, table, f, path)
}

// goldenRecord is one record in a golden file.
type goldenRecord struct {
	Record string          `json:"record"`
	Key    string          `json:"key"`
	Value  json.RawMessage `json:"value"`
}

// Golden returns the golden file of records: a JSON array, one object per
// record ({"record", "key", "value"} with the value in protojson, every
// field shown), sorted by record and key, indented, object keys sorted.
// Records whose value does not decode are shown with a null value.
func Golden(c *contracts.Contract, records []Record) ([]byte, error) {
	recs := slices.Clone(records)
	slices.SortFunc(recs, func(a, b Record) int {
		return strings.Compare(a.Name+"\x00"+a.Key, b.Name+"\x00"+b.Key)
	})
	out := make([]any, 0, len(recs))
	for _, rec := range recs {
		var value any
		if s, ok := c.Record(rec.Name); ok {
			if m, err := s.DecodeBinary(rec.Value); err == nil {
				js, err := s.EncodeJSON(m)
				if err != nil {
					return nil, err
				}
				if err := json.Unmarshal(js, &value); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, map[string]any{"record": rec.Name, "key": rec.Key, "value": value})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// CompareGolden compares records with the golden file want (as Golden
// writes it, or as JSON lines of the same objects) as messages: field
// order, whitespace and default values do not matter. It returns one line
// per difference, or none.
func CompareGolden(c *contracts.Contract, records []Record, want []byte) ([]string, error) {
	wantRecs, err := parseGolden(want)
	if err != nil {
		return nil, err
	}
	type entry struct {
		value []byte
		seen  bool
	}
	got := map[string]*entry{}
	for _, rec := range records {
		got[rec.Name+"/"+rec.Key] = &entry{value: rec.Value}
	}
	var diffs []string
	for _, w := range wantRecs {
		id := w.Record + "/" + w.Key
		g := got[id]
		if g == nil {
			diffs = append(diffs, "missing record "+id)
			continue
		}
		g.seen = true
		s, ok := c.Record(w.Record)
		if !ok {
			return nil, fmt.Errorf("golden record %s: %q is not a record of the contract", id, w.Record)
		}
		wm, err := s.DecodeJSON(w.Value)
		if err != nil {
			return nil, fmt.Errorf("golden record %s: %w", id, err)
		}
		gm, err := s.DecodeBinary(g.value)
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("record %s: does not decode: %v", id, err))
			continue
		}
		if !proto.Equal(wm, gm) {
			gj, _ := s.EncodeJSON(gm)
			wj, _ := s.EncodeJSON(wm)
			diffs = append(diffs, fmt.Sprintf("record %s:\n  got  %s\n  want %s", id, compact(gj), compact(wj)))
		}
	}
	var extra []string
	for id, g := range got {
		if !g.seen {
			extra = append(extra, "unexpected record "+id)
		}
	}
	slices.Sort(extra)
	return append(diffs, extra...), nil
}

func compact(js []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, js) != nil {
		return string(js)
	}
	return b.String()
}

// parseGolden reads a JSON array of records, or JSON lines of records.
func parseGolden(b []byte) ([]goldenRecord, error) {
	trimmed := bytes.TrimSpace(b)
	var recs []goldenRecord
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(trimmed, &recs); err != nil {
			return nil, fmt.Errorf("golden file: %w", err)
		}
		return recs, nil
	}
	for i, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		var r goldenRecord
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("golden file line %d: %w", i+1, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}
