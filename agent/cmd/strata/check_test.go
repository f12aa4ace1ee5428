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

` + exampleContracts(t) + `
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

// TestAgentCheckReadsRegionKeys: `strata agent --check` reads a gateway's
// region_key and trusted_regions files, and api.trusted_regions, as
// start-up does, and reports a problem in each file in the same run: a
// missing region key and a trusted_regions line that is not a key, then
// (both files good) a trusted_regions that does not list the region key.
func TestAgentCheckReadsRegionKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("regions.pub", "# regions\nord not-a-key\n")
	write("api-regions.pub", "ord\n")
	conf := func(trusted string) string {
		return `node = "n-1"
data_dir = "data"

` + exampleContracts(t) + `
[regional]
region = "ord"

[global]
region_key = "ord.key"
trusted_regions = "` + trusted + `"
`
	}
	write("gateway.toml", conf("regions.pub"))
	_, err := runStrata(t, "agent", "--check", "--config", filepath.Join(dir, "gateway.toml"))
	if err == nil {
		t.Fatal("agent --check passed a missing region_key and a bad trusted_regions")
	}
	for _, want := range []string{
		"global.region_key: open " + filepath.Join(dir, "ord.key") + ": no such file",
		"global.trusted_regions: global: bad key file: " + filepath.Join(dir, "regions.pub") + ":2: the key of region ord",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("agent --check error lacks %q:\n%v", want, err)
		}
	}

	// Both files load, but trusted_regions lacks the region key's line.
	if out, err := runStrata(t, "keys", "gen-region", "ord", "-o", filepath.Join(dir, "ord.key")); err != nil {
		t.Fatalf("keys gen-region: %v\n%s", err, out)
	}
	write("other.pub", "# another deployment's key\n")
	write("gateway.toml", conf("other.pub"))
	_, err = runStrata(t, "agent", "--check", "--config", filepath.Join(dir, "gateway.toml"))
	if err == nil || !strings.Contains(err.Error(), "global.trusted_regions: "+filepath.Join(dir, "other.pub")+" does not list the public key of global.region_key") {
		t.Errorf("agent --check with a trusted_regions that lacks the region key: %v", err)
	}

	// A node that is not a gateway: api.trusted_regions.
	write("node.toml", `node = "n-2"
`+exampleContracts(t)+`[regional]
region = "ord"
[api]
trusted_regions = "api-regions.pub"
`)
	_, err = runStrata(t, "agent", "--check", "--config", filepath.Join(dir, "node.toml"))
	if err == nil || !strings.Contains(err.Error(), "api.trusted_regions: global: bad key file: "+filepath.Join(dir, "api-regions.pub")+":1:") {
		t.Errorf("agent --check with a bad api.trusted_regions: %v", err)
	}
}

// exampleContracts is the [contracts] section of an agent.toml that loads
// the repository's example contract.
func exampleContracts(t *testing.T) string {
	return `[contracts]
dir = "` + filepath.ToSlash(mustAbs(t, "../../../contracts")) + `"
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
`
}
