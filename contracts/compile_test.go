package contracts

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func TestCompileExample(t *testing.T) {
	for _, tc := range []struct {
		name string
		fsys fs.FS
	}{
		{"embedded", Example},
		// The package directory is the example's import root on disk.
		{"dir", os.DirFS(".")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Compile(context.Background(), tc.fsys, ExampleFiles())
			if err != nil {
				t.Fatal(err)
			}
			checkExample(t, c)
		})
	}
}

func checkExample(t *testing.T, c *Contract) {
	t.Helper()
	tables, records := c.Tables(), c.Records()
	if len(tables) != 1 || len(records) != 1 {
		t.Fatalf("got %d tables, %d records; want 1, 1", len(tables), len(records))
	}

	m := tables[0]
	if m.Name != "machines" || m.Kind != KindTable || m.Desc.FullName() != "fleet.v1.Machine" {
		t.Errorf("table = %v, kind %v", m, m.Kind)
	}
	if got := keyNames(m); got != "id" {
		t.Errorf("machines key = %q, want id", got)
	}
	if m.MaxPerRegion != 0 || m.MaxBytes != 0 {
		t.Errorf("machines limits = %d, %d; want 0, 0", m.MaxPerRegion, m.MaxBytes)
	}
	if got, want := m.RegionalOnlyPaths(), []string{"id", "host", "private_ip"}; !slices.Equal(got, want) {
		t.Errorf("RegionalOnlyPaths = %q, want %q", got, want)
	}
	fields := m.Desc.Fields()
	for name, want := range map[protoreflect.Name]bool{"id": true, "host": true, "private_ip": true, "app": false, "healthy": false} {
		if got := m.RegionalOnly(fields.ByName(name)); got != want {
			t.Errorf("RegionalOnly(%s) = %v, want %v", name, got, want)
		}
	}
	if got, want := m.FieldNumbers(), []protoreflect.FieldNumber{1, 2, 3, 4, 5, 6, 7}; !slices.Equal(got, want) {
		t.Errorf("FieldNumbers = %v, want %v", got, want)
	}

	r := records[0]
	if r.Name != "app_placements" || r.Kind != KindRecord || r.Desc.FullName() != "fleet.v1.AppPlacement" {
		t.Errorf("record = %v, kind %v", r, r.Kind)
	}
	if got := keyNames(r); got != "app" {
		t.Errorf("app_placements key = %q, want app", got)
	}
	if r.MaxPerRegion != 10000 || r.MaxBytes != 1024 {
		t.Errorf("app_placements limits = %d, %d; want 10000, 1024", r.MaxPerRegion, r.MaxBytes)
	}
	if len(r.RegionalOnlyPaths()) != 0 {
		t.Errorf("record has regional-only paths %q", r.RegionalOnlyPaths())
	}

	if s, ok := c.Table("app_placements"); ok {
		t.Errorf("Table(app_placements) = %v; records and tables are looked up apart", s)
	}
	if _, ok := c.Record("machines"); ok {
		t.Error("Record(machines) found a table")
	}
	if _, err := c.Files().FindFileByPath(OptionsFile); err != nil {
		t.Errorf("Files has no %s: %v", OptionsFile, err)
	}
}

func keyNames(s *Schema) string {
	var names []string
	for _, f := range s.Key {
		names = append(names, string(f.Name()))
	}
	return strings.Join(names, ",")
}

func TestCompileShopMetadata(t *testing.T) {
	c := shop(t)
	s := table(t, c, "stock")
	if got := keyNames(s); got != "shop,aisle,kind,open,serial" {
		t.Errorf("stock key = %q", got)
	}
	want := []string{"outer.inner.value", "outers.inner.value", "by_name.inner.value", "secret"}
	if got := s.RegionalOnlyPaths(); !slices.Equal(got, want) {
		t.Errorf("RegionalOnlyPaths = %q, want %q", got, want)
	}
	r := record(t, c, "tallies")
	if r.MaxPerRegion != 0 || r.MaxBytes != 0 {
		t.Errorf("tallies limits = %d, %d; want none", r.MaxPerRegion, r.MaxBytes)
	}
}

// TestCompileBroken checks that every error of a broken contract is
// reported, in several files and several per file, with exact positions.
func TestCompileBroken(t *testing.T) {
	files := []string{
		"broken/types.proto",
		"broken/syntax.proto",
		"broken/imports.proto",
		"broken/tags.proto",
		"broken/absent.proto",
	}
	_, err := CompileDir(context.Background(), testdataDir, files)
	want := []string{
		`broken/absent.proto: file not found`,
		`broken/imports.proto:5:8: not/there.proto: file does not exist`,
		`broken/syntax.proto:7:3: syntax error: expecting ';'`,
		`broken/tags.proto:7:14: message broken.v1.Tagged: fields a and b both have the same tag 1`,
		`broken/types.proto:7:3: field broken.v1.Thing.missing: unknown type Missing`,
		`broken/types.proto:9:12: field broken.v1.Thing.absent: unknown type Absent`,
	}
	checkCompileError(t, err, want)
}

// TestCompileRules checks strata's own rules, one fixture per rule.
func TestCompileRules(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"missing_key_field.proto", []string{
			`missing_key_field.proto:10:17: table "machines": key field "idd" does not exist in rules.v1.Machine`,
		}},
		{"non_scalar_key.proto", []string{
			`non_scalar_key.proto:11:11: table "events": key field "at" has type google.protobuf.Timestamp; a key field must be a singular string, integer, bool or enum field`,
			`non_scalar_key.proto:11:17: table "events": key field "tags" is repeated; a key field must be a singular string, integer, bool or enum field`,
			`non_scalar_key.proto:11:25: table "events": key field "weight" has type double; a key field must be a singular string, integer, bool or enum field`,
			`non_scalar_key.proto:11:35: table "events": key field "blob" has type bytes; a key field must be a singular string, integer, bool or enum field`,
		}},
		{"duplicate_name.proto", []string{
			`duplicate_name.proto:13:32: record name "things" is already used by table rules.v1.A at duplicate_name.proto:7:1; table and record names must be unique`,
		}},
		{"record_regional_only.proto", []string{
			`record_regional_only.proto:10:3: record "placements": field "host" is marked regional_only; a record may not carry regional-only data`,
			`record_regional_only.proto:11:3: record "placements": field "detail.private_ip" (rules.v1.Detail.private_ip) is marked regional_only; a record may not carry regional-only data`,
		}},
		{"record_nests_table.proto", []string{
			`record_nests_table.proto:19:3: record "summaries": field "by_region.machines" has type rules.v1.Machine, the message of table "machines"; a record may not carry a table's rows`,
		}},
		{"misc.proto", []string{
			`misc.proto:10:3: message rules.v1.Both is both a table and a record; a message is one or the other`,
			`misc.proto:15:3: table rules.v1.NoName: name is required`,
			`misc.proto:20:31: table rules.v1.BadName: name "bad name" is not valid: use a letter, then letters, digits, '_' or '-', at most 64 characters`,
			`misc.proto:25:3: record "no_key": key is required: list the fields that identify a record`,
			`misc.proto:27:3: record "no_key": field "host" is marked regional_only; a record may not carry regional-only data`,
			`misc.proto:30:1: table "bad_cel": protovalidate rules do not compile: failed to compile expression bad: ERROR: <input>:1:6: found no matching overload for '_>_' applied to '(string, int)'`,
		}},
	} {
		t.Run(strings.TrimSuffix(tc.file, ".proto"), func(t *testing.T) {
			_, err := CompileDir(context.Background(), testdataDir+"/rules", []string{tc.file})
			checkCompileError(t, err, tc.want)
		})
	}
}

func checkCompileError(t *testing.T, err error, want []string) {
	t.Helper()
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want *CompileError", err, err)
	}
	var got []string
	for _, d := range ce.Errors {
		got = append(got, d.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("diagnostics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ce.Error() != strings.Join(want, "\n") {
		t.Errorf("Error() = %q, want one diagnostic per line", ce.Error())
	}
}

// TestCompileOwnOptionsCopy checks that a contract root holding its own copy
// of the options file uses it, and that a contract that does not import it
// compiles to an empty contract.
func TestCompileOwnOptionsCopy(t *testing.T) {
	fsys := fstest.MapFS{
		"strata/v1/options.proto": {Data: readFile(t, "strata/v1/options.proto")},
		"a.proto": {Data: []byte(`syntax = "proto3";
import "strata/v1/options.proto";
message A { option (strata.v1.table) = {name: "a", key: ["id"]}; int64 id = 1; }
`)},
		"plain.proto": {Data: []byte(`syntax = "proto3"; message P { string x = 1; }`)},
	}
	c, err := Compile(context.Background(), fsys, []string{"a.proto"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Table("a"); !ok {
		t.Error("table a missing")
	}
	c, err = Compile(context.Background(), fsys, []string{"./plain.proto"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tables())+len(c.Records()) != 0 {
		t.Errorf("plain contract has schemas")
	}
}

func TestCompileNoFiles(t *testing.T) {
	if _, err := Compile(context.Background(), Example, nil); !errors.Is(err, ErrNoFiles) {
		t.Fatalf("error = %v, want ErrNoFiles", err)
	}
}

func TestCompileBadPaths(t *testing.T) {
	_, err := Compile(context.Background(), Example, []string{"../fleet/v1/global.proto", "/abs.proto", "fleet/v1/global.proto", "./fleet/v1/global.proto"})
	checkCompileError(t, err, []string{
		"../fleet/v1/global.proto: not a slash-separated path relative to the contract root",
		"/abs.proto: not a slash-separated path relative to the contract root",
	})
}

func TestCompileCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Compile(ctx, Example, ExampleFiles()); !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}

func TestFileDescriptorSet(t *testing.T) {
	set := example(t).FileDescriptorSet()
	var names []string
	for _, f := range set.GetFile() {
		names = append(names, f.GetName())
	}
	for _, want := range []string{OptionsFile, "buf/validate/validate.proto", "fleet/v1/regional.proto", "fleet/v1/global.proto"} {
		if !slices.Contains(names, want) {
			t.Errorf("set lacks %s; has %q", want, names)
		}
	}
	// Dependencies come first, so the set links on its own.
	if _, err := protodesc.NewFiles(set); err != nil {
		t.Fatalf("set does not link: %v", err)
	}
	for _, f := range set.GetFile() {
		if f.GetName() == "fleet/v1/regional.proto" && len(f.GetSourceCodeInfo().GetLocation()) == 0 {
			t.Error("regional.proto has no source info")
		}
	}
}
