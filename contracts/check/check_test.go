package check

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-state/strata/contracts"
)

// caseDir returns the absolute path of a compatibility case.
func caseDir(t *testing.T, name string) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(compatDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// text runs opts and returns the text report.
func text(t *testing.T, opts Options) string {
	t.Helper()
	r, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.WriteText(&b, false); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// copyDir copies the files under src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAgainstDescriptorSet checks a comparison with a descriptor set file,
// as `strata contract build` writes it: the same findings as against the
// directory it was built from, with old positions placed in the contract
// directory.
func TestAgainstDescriptorSet(t *testing.T) {
	dir := caseDir(t, "field_delete")
	t.Chdir(dir)
	old, err := contracts.CompileDir(context.Background(), "old", []string{"acme/v1/acme.proto"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(old.FileDescriptorSet())
	if err != nil {
		t.Fatal(err)
	}
	set := filepath.Join(t.TempDir(), "old.binpb")
	if err := os.WriteFile(set, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got := text(t, Options{Dir: "new", Against: set})
	want := strings.ReplaceAll(string(mustRead(t, "expected.txt")), "old/acme", "new/acme")
	want = strings.ReplaceAll(want, "against old", "against "+set)
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	// A descriptor set without its imports still loads: protobuf's and
	// protovalidate's files come from the binary.
	fds := old.FileDescriptorSet()
	var own []int
	for i, f := range fds.GetFile() {
		if f.GetName() == "acme/v1/acme.proto" || f.GetName() == contracts.OptionsFile {
			own = append(own, i)
		}
	}
	slim := fds.GetFile()[:0:0]
	for _, i := range own {
		slim = append(slim, fds.GetFile()[i])
	}
	fds.File = slim
	b, _ = proto.Marshal(fds)
	if err := os.WriteFile(set, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if got2 := text(t, Options{Dir: "new", Against: set}); got2 != got {
		t.Errorf("slim descriptor set:\n%s", got2)
	}

	if err := os.WriteFile(set, []byte("not protobuf"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), Options{Dir: "new", Against: set})
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "FileDescriptorSet") {
		t.Errorf("garbage descriptor set: error = %v, want a usage error", err)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAgainstGit checks a comparison with a git revision: the contract
// directory as committed, read with git archive, from a subdirectory of the
// repository.
func TestAgainstGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	repo := t.TempDir()
	gitRun := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t",
			"GIT_COMMITTER_EMAIL=t@t", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	gitRun("init", "-q", "-b", "main")
	src := caseDir(t, "field_delete")
	contractDir := filepath.Join(repo, "api", "contracts")
	copyDir(t, filepath.Join(src, "old"), contractDir)
	gitRun("add", ".")
	gitRun("commit", "-q", "-m", "old")
	if err := os.RemoveAll(contractDir); err != nil {
		t.Fatal(err)
	}
	copyDir(t, filepath.Join(src, "new"), contractDir)

	t.Chdir(filepath.Join(repo, "api"))
	got := text(t, Options{Dir: "contracts", Against: "git:main"})
	want := strings.ReplaceAll(string(mustRead(t, filepath.Join(src, "expected.txt"))), "old/acme", "contracts/acme")
	want = strings.ReplaceAll(want, "(new: 1 file; against old)", "(contracts: 1 file; against git:main)")
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	// A directory the revision does not have: nothing to compare with.
	copyDir(t, filepath.Join(src, "new"), filepath.Join(repo, "api", "fresh"))
	if got := text(t, Options{Dir: "fresh", Against: "git:main"}); !strings.Contains(got, "warning AGAINST_MISSING") {
		t.Errorf("new directory:\n%s", got)
	}

	for _, bad := range []string{"git:nope", "git:", "git-merge-base:nope", "git-merge-base:"} {
		_, err := Run(context.Background(), Options{Dir: "contracts", Against: bad})
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("--against %s: error = %v, want a usage error", bad, err)
		}
	}
}

// TestAgainstGitMergeBase: on a branch cut before main moved on,
// git:main reports main's later changes reversed, as if the branch had
// made them; git-merge-base:main compares with the commit the branch was
// cut from, and reports only the branch's own changes.
func TestAgainstGitMergeBase(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	repo := t.TempDir()
	gitRun := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t",
			"GIT_COMMITTER_EMAIL=t@t", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// main: the old contract; then main adds a field (clean_add) after
	// the branch is cut from the old contract.
	src := caseDir(t, "clean_add")
	contractDir := filepath.Join(repo, "contracts")
	replace := func(from string) {
		t.Helper()
		if err := os.RemoveAll(contractDir); err != nil {
			t.Fatal(err)
		}
		copyDir(t, from, contractDir)
	}
	gitRun("init", "-q", "-b", "main")
	replace(filepath.Join(src, "old"))
	gitRun("add", ".")
	gitRun("commit", "-q", "-m", "old")
	base := gitRun("rev-parse", "HEAD")
	gitRun("checkout", "-q", "-b", "feature")
	gitRun("checkout", "-q", "main")
	replace(filepath.Join(src, "new"))
	gitRun("add", "-A")
	gitRun("commit", "-q", "-m", "main adds a field")
	gitRun("checkout", "-q", "feature") // the branch: still the old contract

	t.Chdir(repo)
	tip, err := Run(context.Background(), Options{Dir: "contracts", Against: "git:main"})
	if err != nil {
		t.Fatal(err)
	}
	if errs, _ := tip.Count(); errs == 0 {
		t.Fatalf("git:main: want main's added field reported as deleted (the premise of this test), got %v", tip.Findings)
	}
	mb, err := Run(context.Background(), Options{Dir: "contracts", Against: "git-merge-base:main"})
	if err != nil {
		t.Fatal(err)
	}
	if len(mb.Findings) != 0 || mb.AgainstCommit != base {
		t.Errorf("git-merge-base:main: commit %s (want %s), findings %v", mb.AgainstCommit, base, mb.Findings)
	}
	var b bytes.Buffer
	if err := mb.WriteText(&b, false); err != nil {
		t.Fatal(err)
	}
	if want := "; against git-merge-base:main = " + base[:12] + ")"; !strings.Contains(b.String(), want) {
		t.Errorf("summary %q lacks %q", b.String(), want)
	}
}

// TestFormats checks the JSON and GitHub forms of a report with an error in
// the new version, one in the old and a warning.
func TestFormats(t *testing.T) {
	t.Chdir(caseDir(t, "rule_tightening"))
	r, err := Run(context.Background(), Options{Dir: "new", Against: "old"})
	if err != nil {
		t.Fatal(err)
	}
	r.Findings = append(r.Findings, Finding{Path: "old/a,b.proto", Finding: contracts.Finding{
		Rule: "FIELD_NO_DELETE", Severity: contracts.SeverityError, Line: 3, Col: 1, Old: true,
		Message: "100% gone\nreally", Hint: "put it back",
	}})

	var js bytes.Buffer
	if err := r.WriteJSON(&js, true); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version  int    `json:"version"`
		OK       bool   `json:"ok"`
		Strict   bool   `json:"strict"`
		Dir      string `json:"contracts"`
		Against  string `json:"against"`
		Summary  struct{ Errors, Warnings int }
		Findings []map[string]any
	}
	dec := json.NewDecoder(&js)
	dec.DisallowUnknownFields()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(js.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != 1 || doc.OK || !doc.Strict || doc.Dir != "new" || doc.Against != "old" ||
		doc.Summary.Errors != 1 || doc.Summary.Warnings != 5 || len(doc.Findings) != 6 {
		t.Errorf("JSON report: %+v", doc)
	}
	first := doc.Findings[0]
	for _, key := range []string{"rule", "severity", "file", "line", "column", "old", "message", "hint"} {
		if _, ok := first[key]; !ok {
			t.Errorf("finding has no %q: %v", key, first)
		}
	}
	if first["file"] != "new/acme/v1/acme.proto" || first["line"] != 16.0 || first["severity"] != "warning" {
		t.Errorf("first finding: %v", first)
	}

	var gh bytes.Buffer
	if err := r.WriteGitHub(&gh, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(gh.String()), "\n")
	if len(lines) != 7 {
		t.Fatalf("github output has %d lines:\n%s", len(lines), gh.String())
	}
	if want := "::warning file=new/acme/v1/acme.proto,line=16,col=5,title=VALIDATE_TIGHTENED::protovalidate rules of field 3 \"ip\""; !strings.HasPrefix(lines[0], want) {
		t.Errorf("line 1 = %s\nwant prefix %s", lines[0], want)
	}
	if want := "::error file=old/a%2Cb.proto,line=3,col=1,title=FIELD_NO_DELETE::100%25 gone%0Areally (old version). Fix: put it back"; lines[5] != want {
		t.Errorf("escaped line = %s\nwant %s", lines[5], want)
	}
	if !strings.HasPrefix(lines[6], "strata contract check: 1 error, 5 warnings") {
		t.Errorf("summary = %s", lines[6])
	}

	if r.Failed(false) != true {
		t.Error("a report with an error does not fail")
	}
	r.Findings = r.Findings[:5]
	if r.Failed(false) || !r.Failed(true) {
		t.Error("warnings must fail with strict only")
	}
	if err := r.Write(&gh, "xml", false); err == nil {
		t.Error("unknown format accepted")
	}
}

// TestCompileErrorsAllReported checks that a contract with errors in
// several files reports each with its position, and skips the
// compatibility check.
func TestCompileErrorsAllReported(t *testing.T) {
	dir, err := filepath.Abs("../../testdata/contracts/broken")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	got := text(t, Options{Dir: ".", Against: "."})
	for _, want := range []string{
		"imports.proto\n  5:8: error COMPILE: not/there.proto: file does not exist",
		"syntax.proto\n  7:3: error COMPILE: syntax error: expecting ';'",
		"tags.proto\n  7:14: error COMPILE: message broken.v1.Tagged: fields a and b both have the same tag 1",
		"types.proto\n  7:3: error COMPILE: field broken.v1.Thing.missing: unknown type Missing",
		"  9:12: error COMPILE: field broken.v1.Thing.absent: unknown type Absent",
		"strata contract check: 5 errors, 0 warnings (.: 4 files; against .)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

// TestRunUsage checks the errors that are the caller's.
func TestRunUsage(t *testing.T) {
	empty := t.TempDir()
	for name, opts := range map[string]Options{
		"no dir":          {},
		"missing dir":     {Dir: filepath.Join(empty, "nope")},
		"no proto files":  {Dir: empty},
		"missing against": {Dir: caseDir(t, "clean_add") + "/new", Against: filepath.Join(empty, "nope")},
		"broken against":  {Dir: caseDir(t, "clean_add") + "/new", Against: caseDir(t, "compile_error") + "/new"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Run(context.Background(), opts)
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("error = %v, want a *UsageError", err)
			}
		})
	}
}
