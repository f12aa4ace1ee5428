package contracts

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"google.golang.org/protobuf/proto"
)

// The compatibility corpus, testdata/compat: old/new contract pairs, each
// with buf's verdict (`buf breaking --against` with the WIRE_JSON category,
// recorded by scripts/buf-compat) and strata's. TestCompatCorpus checks
// strata's verdicts without buf; with -buf it runs buf too and checks (or,
// with -update-buf, rewrites) buf's recorded verdicts.
var (
	bufBinary    = flag.String("buf", "", "path to a buf binary: also run `buf breaking` (WIRE_JSON) on testdata/compat and compare with the recorded verdicts")
	updateBuf    = flag.Bool("update-buf", false, "with -buf, rewrite the buf: lines of testdata/compat")
	updateCorpus = flag.Bool("update-corpus", false, "rewrite the strata: and warnings: lines of testdata/compat from what strata reports")
)

const compatCorpusDir = "../testdata/compat"

// corpusPair is one pair of the corpus: a txtar file whose comment holds
// a description and these lines
//
//	buf: RULE ...        buf's findings (WIRE_JSON), "-" when none
//	strata: RULE ...     strata's errors, "-" when none
//	warnings: RULE ...   strata's warnings, "-" when none
//	exception: REASON    only when buf breaks and strata reports no error
//
// and whose files are old/<path> and new/<path>.
type corpusPair struct {
	name, file string
	desc       []string
	buf        []string
	strata     []string
	warnings   []string
	exception  string
	old, new   fstest.MapFS
}

// strictExceptions are the rules that may be the only finding of a pair
// buf calls breaking: warnings by design, which --strict turns into
// errors. docs/CONTRACT_CHECK.md lists each with the reason.
var strictExceptions = []string{}

func TestCompatCorpus(t *testing.T) {
	pairs := readCorpus(t)
	if len(pairs) < 30 {
		t.Fatalf("the corpus has %d pairs, want at least 30", len(pairs))
	}
	doc := string(readFile(t, "../docs/CONTRACT_CHECK.md"))
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			errs, warns := comparePair(t, p)
			if *updateCorpus {
				p.strata, p.warnings = errs, warns
				writePair(t, p)
				return
			}
			if !slices.Equal(errs, p.strata) {
				t.Errorf("strata reports errors %v, the corpus says %v", orNone(errs), orNone(p.strata))
			}
			if !slices.Equal(warns, p.warnings) {
				t.Errorf("strata reports warnings %v, the corpus says %v", orNone(warns), orNone(p.warnings))
			}
			if problem := looserThanBuf(p, errs, warns, strictExceptions, doc); problem != "" {
				t.Error(problem)
			}
		})
	}
	for _, r := range strictExceptions {
		if !strings.Contains(doc, "`"+r+"`") {
			t.Errorf("exception rule %s is not in docs/CONTRACT_CHECK.md", r)
		}
	}
	if *bufBinary != "" {
		t.Run("buf", func(t *testing.T) { runBuf(t, pairs) })
	}
}

// looserThanBuf returns what is wrong when strata's verdict on p (errs,
// warns) is looser than buf's: where buf breaks, strata must report an
// error, or p must be an exception whose warning is one of exceptions
// (which --strict turns into an error) and which doc lists. It returns ""
// when all is well.
func looserThanBuf(p *corpusPair, errs, warns, exceptions []string, doc string) string {
	if p.exception != "" && (len(p.buf) == 0 || len(errs) > 0) {
		return fmt.Sprintf("the pair has an exception line but is no exception (buf %v, strata errors %v)", orNone(p.buf), orNone(errs))
	}
	if len(p.buf) == 0 || len(errs) > 0 {
		return ""
	}
	switch {
	case p.exception == "":
		return fmt.Sprintf("buf says breaking (%v), strata reports no error and the pair is no listed exception", p.buf)
	case !slices.ContainsFunc(warns, func(r string) bool { return slices.Contains(exceptions, r) }):
		return fmt.Sprintf("exception %q: strata reports none of the exception rules %v as a warning (got %v)", p.exception, exceptions, warns)
	case !strings.Contains(doc, "`"+p.name+"`"):
		return fmt.Sprintf("exception pair %s is not listed in docs/CONTRACT_CHECK.md", p.name)
	}
	return ""
}

// TestLooserThanBuf checks the corpus's verdict rule on made-up pairs,
// exceptions included (the corpus has none today).
func TestLooserThanBuf(t *testing.T) {
	doc := "| `widened` | FIELD_WIDENED | because |"
	exceptions := []string{"FIELD_WIDENED"}
	for _, tc := range []struct {
		name        string
		p           corpusPair
		errs, warns []string
		want        string // substring of the problem; "" for none
	}{
		{"both compatible", corpusPair{name: "a"}, nil, nil, ""},
		{"both breaking", corpusPair{name: "a", buf: []string{"X"}}, []string{"Y"}, nil, ""},
		{"strata stricter", corpusPair{name: "a"}, []string{"Y"}, nil, ""},
		{"strata looser", corpusPair{name: "a", buf: []string{"X"}}, nil, nil, "no listed exception"},
		{"strata only warns", corpusPair{name: "a", buf: []string{"X"}}, nil, []string{"FIELD_WIDENED"}, "no listed exception"},
		{"listed exception", corpusPair{name: "widened", buf: []string{"X"}, exception: "why"}, nil, []string{"FIELD_WIDENED"}, ""},
		{"exception without its warning", corpusPair{name: "widened", buf: []string{"X"}, exception: "why"}, nil, []string{"OTHER"}, "none of the exception rules"},
		{"exception not in the docs", corpusPair{name: "other", buf: []string{"X"}, exception: "why"}, nil, []string{"FIELD_WIDENED"}, "not listed in docs"},
		{"needless exception", corpusPair{name: "widened", buf: []string{"X"}, exception: "why"}, []string{"Y"}, nil, "is no exception"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := looserThanBuf(&tc.p, tc.errs, tc.warns, exceptions, doc)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// comparePair compiles both sides of p and returns the rule ids of the
// errors and the warnings Compare reports, sorted and unique.
func comparePair(t *testing.T, p *corpusPair) (errs, warns []string) {
	t.Helper()
	old := compilePairSide(t, p.old)
	new := compilePairSide(t, p.new)
	for _, f := range Compare(old.FileDescriptors(), new.FileDescriptors()) {
		if f.Severity == SeverityError {
			errs = append(errs, f.Rule)
		} else {
			warns = append(warns, f.Rule)
		}
		if f.Hint == "" {
			t.Errorf("%s finding without a hint: %s", f.Rule, f.Message)
		}
		if f.Element == "" {
			t.Errorf("%s finding without an element (strata-accept.toml could not accept it): %s", f.Rule, f.Message)
		}
	}
	slices.Sort(errs)
	slices.Sort(warns)
	return slices.Compact(errs), slices.Compact(warns)
}

func compilePairSide(t *testing.T, fsys fstest.MapFS) *Contract {
	t.Helper()
	var files []string
	for name := range fsys {
		files = append(files, name)
	}
	slices.Sort(files)
	c, err := Compile(context.Background(), fsys, files)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return c
}

func orNone(rules []string) string {
	if len(rules) == 0 {
		return "-"
	}
	return strings.Join(rules, " ")
}

func readCorpus(t *testing.T) []*corpusPair {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(compatCorpusDir, "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	var pairs []*corpusPair
	for _, name := range names {
		p, err := parsePair(name, readFile(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pairs = append(pairs, p)
	}
	return pairs
}

// parsePair parses a txtar file: a comment, then "-- name --" lines each
// starting a file that runs to the next such line.
func parsePair(file string, data []byte) (*corpusPair, error) {
	p := &corpusPair{
		name: strings.TrimSuffix(filepath.Base(file), ".txtar"), file: file,
		old: fstest.MapFS{}, new: fstest.MapFS{},
	}
	seen := map[string]bool{}
	var cur *bytes.Buffer
	var files []*bytes.Buffer
	var paths []string
	for n, line := range strings.SplitAfter(string(data), "\n") {
		trimmed := strings.TrimRight(line, "\n")
		if name, ok := strings.CutPrefix(trimmed, "-- "); ok && strings.HasSuffix(name, " --") {
			cur = new(bytes.Buffer)
			files = append(files, cur)
			paths = append(paths, strings.TrimSuffix(name, " --"))
			continue
		}
		if cur != nil {
			cur.WriteString(line)
			continue
		}
		key, value, _ := strings.Cut(trimmed, ": ")
		rules := strings.Fields(value)
		if slices.Equal(rules, []string{"-"}) {
			rules = nil
		}
		switch key {
		case "buf":
			p.buf = rules
		case "strata":
			p.strata = rules
		case "warnings":
			p.warnings = rules
		case "exception":
			p.exception = value
		default:
			if trimmed != "" {
				p.desc = append(p.desc, trimmed)
			}
			continue
		}
		if seen[key] {
			return nil, fmt.Errorf("line %d: %s: given twice", n+1, key)
		}
		seen[key] = true
	}
	for _, key := range []string{"buf", "strata", "warnings"} {
		if !seen[key] {
			return nil, fmt.Errorf("no %q line", key+":")
		}
	}
	for i, name := range paths {
		side, rest, _ := strings.Cut(name, "/")
		switch side {
		case "old":
			p.old[rest] = &fstest.MapFile{Data: files[i].Bytes()}
		case "new":
			p.new[rest] = &fstest.MapFile{Data: files[i].Bytes()}
		default:
			return nil, fmt.Errorf("file %s: not under old/ or new/", name)
		}
	}
	if len(p.old) == 0 || len(p.new) == 0 {
		return nil, fmt.Errorf("want files under both old/ and new/")
	}
	return p, nil
}

// writePair rewrites p's file with its current verdicts.
func writePair(t *testing.T, p *corpusPair) {
	t.Helper()
	data := readFile(t, p.file)
	i := bytes.Index(data, []byte("\n-- "))
	var b strings.Builder
	for _, d := range p.desc {
		b.WriteString(d + "\n")
	}
	fmt.Fprintf(&b, "buf: %s\nstrata: %s\nwarnings: %s\n", orNone(p.buf), orNone(p.strata), orNone(p.warnings))
	if p.exception != "" {
		fmt.Fprintf(&b, "exception: %s\n", p.exception)
	}
	b.Write(data[i:])
	if err := os.WriteFile(p.file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runBuf runs `buf breaking` with the WIRE_JSON category on every pair,
// each side given to buf as the descriptor set strata compiles (what
// `strata contract build` writes), and compares buf's rule ids with the
// recorded ones.
func runBuf(t *testing.T, pairs []*corpusPair) {
	dir := t.TempDir()
	config := `{"version":"v2","breaking":{"use":["WIRE_JSON"]}}`
	for _, p := range pairs {
		var images [2]string
		for i, side := range []fstest.MapFS{p.old, p.new} {
			set := compilePairSide(t, side).FileDescriptorSet()
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
			if err != nil {
				t.Fatal(err)
			}
			images[i] = filepath.Join(dir, fmt.Sprintf("%s.%d.binpb", p.name, i))
			if err := os.WriteFile(images[i], b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(*bufBinary, "breaking", images[1], "--against", images[0], "--config", config, "--error-format", "json")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil && stdout.Len() == 0 {
			t.Fatalf("%s: buf breaking: %v: %s", p.name, err, stderr.String())
		}
		var got []string
		dec := json.NewDecoder(&stdout)
		for dec.More() {
			var a struct {
				Type, Message string
			}
			if err := dec.Decode(&a); err != nil {
				t.Fatalf("%s: buf output: %v", p.name, err)
			}
			got = append(got, a.Type)
			t.Logf("%s: buf: %s: %s", p.name, a.Type, a.Message)
		}
		slices.Sort(got)
		got = slices.Compact(got)
		if *updateBuf {
			p.buf = got
			writePair(t, p)
			continue
		}
		if !slices.Equal(got, p.buf) {
			t.Errorf("%s: buf reports %s, the corpus says %s", p.name, orNone(got), orNone(p.buf))
		}
	}
}

// TestCompareTypeChangeSaysWhichEncodingBreaks: a type change's message says
// precisely whether the wire encoding, JSON or both break, and its hint is
// the declaration to restore and the exact reserved statement.
func TestCompareTypeChangeSaysWhichEncodingBreaks(t *testing.T) {
	pairs := map[string]*corpusPair{}
	for _, p := range readCorpus(t) {
		pairs[p.name] = p
	}
	for _, tc := range []struct {
		pair, message, hint string
	}{
		{"field_type_uint32_int64", "changed type from uint32 to int64: wire compatible, but not JSON compatible: uint32 is a JSON number, int64 a JSON string",
			"restore it as `uint32 total = 3;` or, to change it, add a new field such as `int64 total_v2 = 40;` and reserve this one with `reserved 3; reserved \"total\";` in message Placement"},
		{"field_type_int32_uint32", "wire compatible, but not JSON compatible: both are a JSON number, but int32 takes signed 32-bit values and uint32 unsigned 32-bit values", ""},
		{"field_type_sint32_int32", "JSON compatible, but not wire compatible: sint32 is a zigzag varint on the wire, int32 a varint", ""},
		{"field_type_int32_string", "neither wire nor JSON compatible", ""},
		{"field_type_map_value", "map value neither wire nor JSON compatible", "`map<string, string> labels = 8;`"},
		{"card_singular_to_repeated", "changed from singular to repeated", "restore it as `int32 healthy = 2;` or, to change it, add a new field such as `repeated int32 healthy_v2 = 40;`"},
	} {
		t.Run(tc.pair, func(t *testing.T) {
			p := pairs[tc.pair]
			if p == nil {
				t.Fatalf("no pair %s", tc.pair)
			}
			fs := Compare(compilePairSide(t, p.old).FileDescriptors(), compilePairSide(t, p.new).FileDescriptors())
			if len(fs) != 1 {
				t.Fatalf("want one finding, got %v", fs)
			}
			if !strings.Contains(fs[0].Message, tc.message) {
				t.Errorf("message %q\ndoes not say %q", fs[0].Message, tc.message)
			}
			if !strings.Contains(fs[0].Hint, tc.hint) {
				t.Errorf("hint %q\ndoes not say %q", fs[0].Hint, tc.hint)
			}
		})
	}
}

// TestRulesDocumented: every rule id the contracts package reports is in
// docs/CONTRACT_CHECK.md's rule tables.
func TestRulesDocumented(t *testing.T) {
	doc := string(readFile(t, "../docs/CONTRACT_CHECK.md"))
	for _, rule := range []string{
		compatMessageDelete, compatEnumDelete, compatTableDelete, compatRecordDelete, compatKey, compatLimit,
		compatFieldDelete, compatFieldNumber, compatFieldType, compatFieldCard, compatFieldJSONName, compatFieldName,
		compatFieldOneof, compatEnumValueDelete, compatEnumValueName, compatReservedRange, compatReservedName,
		compatValidate, compatRegionalOnly,
		ruleCompile, ruleOption, ruleName, ruleNameUnique, ruleKey, ruleTableOrRecord, ruleRecordRegionalOnly,
		ruleRecordTable, ruleValidateCompile, lintPackageVersion, lintEnumZero,
	} {
		if !strings.Contains(doc, "| `"+rule+"` ") {
			t.Errorf("rule %s has no row in docs/CONTRACT_CHECK.md", rule)
		}
	}
}
