package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAgentCheckReportsEveryProblem: `strata agent --check` reads the
// files start-up reads and builds the reducers a gateway loads, and
// reports every problem in one run: a missing token file, a missing
// regional keyring, a global keyring that is not base64, and a source
// reducer that does not compile, named with the compiler's reason.
func TestAgentCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken")
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"go.mod":  "module example.com/broken\n\ngo 1.24\n",
		"main.go": "package main\n\nfunc main() { notDefined() }\n",
	} {
		if err := os.WriteFile(filepath.Join(broken, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "global.key"), []byte("# a comment\nnot base64!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "agent.toml")
	conf := `node = "n-1"
data_dir = "data"

[contracts]
dir = "` + filepath.ToSlash(mustAbs(t, "../../../contracts")) + `"
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]

[regional]
region = "ord"
keyring = "regional.key"

[global]
keyring = "global.key"

[api]
token_file = "token"

[[reducers]]
name = "broken"
source = "broken"
inputs = ["machines"]
outputs = ["app_placements"]
`
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runStrata(t, "agent", "--check", "--config", cfg)
	if err == nil {
		t.Fatalf("agent --check passed:\n%s", out)
	}
	for _, want := range []string{
		"api.token_file: stat " + filepath.Join(dir, "token") + ": no such file",
		"regional.keyring: keyring: open " + filepath.Join(dir, "regional.key") + ": no such file",
		"global.keyring: keyring " + filepath.Join(dir, "global.key") + ":2: not base64",
		"reducer broken (source " + broken + "): ",
		"undefined: notDefined",
		"the agent would start without it",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("agent --check error lacks %q:\n%v", want, err)
		}
	}
	if out != "" {
		t.Errorf("a failed check printed the configuration:\n%s", out)
	}
}
