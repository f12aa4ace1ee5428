package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDeployTokenFileMode takes every file mode deploy/README.md's install
// steps give the API token file and checks that `strata agent --check`
// accepts a token file with that mode: following the guide must not
// leave the agent refusing to start (a restart loop under systemd).
func TestDeployTokenFileMode(t *testing.T) {
	readme, err := os.ReadFile("../../../deploy/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var modes []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		for _, line := range strings.Split(block[1], "\n") {
			if !strings.Contains(line, "token") {
				continue
			}
			for _, m := range regexp.MustCompile(`(?:-m|mode) (0[0-7]{3})\b`).FindAllStringSubmatch(line, -1) {
				modes = append(modes, m[1])
			}
		}
	}
	if len(modes) == 0 {
		t.Fatal("deploy/README.md gives the token file no mode")
	}
	for _, mode := range modes {
		perm, _ := strconv.ParseUint(mode, 8, 32)
		dir := t.TempDir()
		token := filepath.Join(dir, "token")
		if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(token, os.FileMode(perm)); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "agent.toml")
		conf := `node = "n-1"
data_dir = "data"
` + exampleContracts(t) + `[regional]
region = "ord"
[api]
token_file = "token"
`
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := runStrata(t, "agent", "--check", "--config", cfg); err != nil {
			t.Errorf("deploy/README.md installs the token file with mode %s; agent --check: %v\n%s", mode, err, out)
		}
	}
}
