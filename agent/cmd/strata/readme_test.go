package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/strata-state/strata/internal/reducertest"
)

// TestSDKReadme follows sdk/README.md from an empty folder: the contract,
// the reducer, its test and rows are the README's own code blocks; the
// commands are the README's (gen, go test -update, go test, build, test),
// with the module pointed at this checkout.
func TestSDKReadme(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module of its own")
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	readme, err := os.ReadFile("../../../sdk/README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string][]string{}
	for _, m := range regexp.MustCompile("(?s)```(\\w+)\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		blocks[m[1]] = append(blocks[m[1]], m[2])
	}
	if len(blocks["proto"]) < 1 || len(blocks["go"]) < 2 || len(blocks["json"]) < 1 {
		t.Fatalf("README code blocks: %d proto, %d go, %d json", len(blocks["proto"]), len(blocks["go"]), len(blocks["json"]))
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/myreducer\n\ngo 1.26\n\nrequire github.com/strata-state/strata v0.0.0\n\nreplace github.com/strata-state/strata => "+root+"\n")
	write("contract/acme/v1/acme.proto", blocks["proto"][0])
	write("main.go", blocks["go"][0])
	write("main_test.go", blocks["go"][1])
	write("testdata/volumes.jsonl", blocks["json"][0])

	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
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

	strata("reducer", "gen", "--contract", "contract", "-o", "acmev1")
	run(gotool, "mod", "tidy")
	run(gotool, "test", "./...", "-update")
	golden, err := os.ReadFile(filepath.Join(dir, "testdata", "golden.json"))
	if err != nil || !strings.Contains(string(golden), `"totalBytes": "150"`) {
		t.Fatalf("golden file: %v\n%s", err, golden)
	}
	run(gotool, "test", "./...")
	strata("reducer", "build", ".", "-o", "myreducer.wasm")
	reducertest.Precompile(t, filepath.Join(dir, "myreducer.wasm"))
	out := strata("reducer", "test", "myreducer.wasm", "--cache", reducertest.HostCacheDir(), "--contract", "contract", "--rows", "testdata/volumes.jsonl",
		"--region", "ord", "--golden", "testdata/golden.json")
	if !strings.Contains(out, "3 rows in, 2 records out") || !strings.Contains(out, "ok: every record passes") {
		t.Errorf("strata reducer test:\n%s", out)
	}
}

// TestDocsGoVersion: the Go version README.md and sdk/README.md ask for
// is the one go.mod needs (sdk/README.md once said 1.24 while the module
// needed 1.26).
func TestDocsGoVersion(t *testing.T) {
	gomod, err := os.ReadFile("../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	want := "Go " + string(m[1])
	for _, doc := range []string{"../../../README.md", "../../../sdk/README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		found := regexp.MustCompile(`Go 1\.\d+`).FindAllString(string(b), -1)
		if len(found) == 0 {
			t.Errorf("%s names no Go version", doc)
		}
		for _, v := range found {
			if v != want {
				t.Errorf("%s asks for %s, go.mod needs %s", doc, v, want)
			}
		}
	}
}
