package agent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/contracts"
)

// TestReload runs a real agent with a token and a keyring, changes the
// token file, the log level, the keyring file (a new primary key) and
// two settings that need a restart, and reloads: the new token is
// required at once, the level and keys are in effect, and the report
// lists what needs a restart.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() []byte { k := make([]byte, 32); rand.Read(k); return k }
	oldKey, newKey := key(), key()
	b64 := base64.StdEncoding.EncodeToString
	write("token", "old-token\n")
	write("regional.key", b64(oldKey)+"\n")
	conf := `node = "t1"
cluster = "test"
data_dir = "data"
log_level = "info"
[contracts]
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "r1"
bind = "127.0.0.1:0"
keyring = "regional.key"
[api]
addr = "127.0.0.1:0"
token_file = "token"
`
	cfgPath := write("agent.toml", conf)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	level := new(slog.LevelVar)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Level: level, ContractFS: contracts.Example})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	write("token", "new-token\n")
	write("regional.key", "# rotated\n"+b64(newKey)+"\n"+b64(oldKey)+"\n")
	conf = strings.Replace(conf, `log_level = "info"`, `log_level = "debug"`, 1)
	conf = strings.Replace(conf, `bind = "127.0.0.1:0"`, `bind = "127.0.0.1:0"
sync_interval = "3s"`, 1)
	conf = strings.Replace(conf, `data_dir = "data"`, `data_dir = "data2"`, 1)
	write("agent.toml", conf)
	next, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	r := a.Reload(next)

	if len(r.Errors) > 0 {
		t.Errorf("reload errors: %v", r.Errors)
	}
	if want := []string{"log_level", "api.token_file", "regional.keyring"}; !slices.Equal(r.Applied, want) {
		t.Errorf("applied = %v, want %v", r.Applied, want)
	}
	if want := []string{"data_dir", "regional.sync_interval"}; !slices.Equal(r.NeedRestart, want) {
		t.Errorf("need restart = %v, want %v", r.NeedRestart, want)
	}
	if level.Level() != slog.LevelDebug {
		t.Errorf("level = %v, want debug", level.Level())
	}
	if _, err := api.NewClient(a.Addr(), "old-token").Status(ctx); err == nil {
		t.Error("the old token still works after the reload")
	}
	if _, err := api.NewClient(a.Addr(), "new-token").Status(ctx); err != nil {
		t.Errorf("the new token does not work after the reload: %v", err)
	}
	info, _ := a.Tier().Keys()
	if info.Primary != cluster.Fingerprint(newKey) || len(info.Keys) != 2 {
		t.Errorf("keys after reload: %+v, want primary %s and two keys", info, cluster.Fingerprint(newKey))
	}

	// Reloading the same files again changes nothing.
	if r := a.Reload(next); len(r.Applied) != 0 || len(r.Errors) != 0 {
		t.Errorf("second reload of the same files: %+v, want nothing applied", r)
	}
	// A token file that became empty keeps the previous token.
	write("token", "")
	if r := a.Reload(next); len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Error(), "api.token_file") {
		t.Errorf("reload with an empty token file: %+v, want one api.token_file error", r)
	}
	if _, err := api.NewClient(a.Addr(), "new-token").Status(ctx); err != nil {
		t.Errorf("a failed token reload dropped the token in effect: %v", err)
	}
	// token_file taken out of the configuration does not turn
	// authentication off on the running agent: it needs a restart.
	write("token", "new-token\n")
	noToken, err := config.Load(write("agent-no-token.toml", strings.Replace(conf, "token_file = \"token\"\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if r := a.Reload(noToken); !slices.Contains(r.NeedRestart, "api.token_file") || slices.Contains(r.Applied, "api.token_file") {
		t.Errorf("reload without token_file: %+v, want api.token_file among what needs a restart", r)
	}
	if _, err := api.NewClient(a.Addr(), "").Status(ctx); err == nil {
		t.Error("a reload without token_file turned authentication off")
	}

	// A keyring path that changed needs a restart; a new file that would
	// not load is an error now, not an agent that does not start later.
	write("next.key", "not base64!\n")
	moved, err := config.Load(write("agent-moved-key.toml", strings.Replace(conf, `keyring = "regional.key"`, `keyring = "next.key"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	r = a.Reload(moved)
	if !slices.Contains(r.NeedRestart, "regional.keyring") {
		t.Errorf("reload with a new keyring path: %+v, want regional.keyring among what needs a restart", r)
	}
	if len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Error(), "regional.keyring (needs a restart, which would fail): keyring "+filepath.Join(dir, "next.key")+":1: not base64") {
		t.Errorf("reload with a new keyring path to a bad file: errors %v, want one naming regional.keyring and the file", r.Errors)
	}
	if info, _ := a.Tier().Keys(); info.Primary != cluster.Fingerprint(newKey) || len(info.Keys) != 2 {
		t.Errorf("a keyring path change changed the keys in effect: %+v", info)
	}
	write("next.key", b64(newKey)+"\n")
	if r := a.Reload(moved); len(r.Errors) != 0 || !slices.Contains(r.NeedRestart, "regional.keyring") {
		t.Errorf("reload with a new keyring path to a good file: %+v, want no error and regional.keyring needing a restart", r)
	}
	// So does a new api.trusted_regions that would not load.
	write("regions.pub", "ord\n")
	trusting, err := config.Load(write("agent-trust.toml", strings.Replace(conf, `token_file = "token"`, `token_file = "token"
trusted_regions = "regions.pub"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if r := a.Reload(trusting); len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Error(), "api.trusted_regions (needs a restart, which would fail): global: bad key file: "+filepath.Join(dir, "regions.pub")+":1") {
		t.Errorf("reload with a bad new api.trusted_regions: %+v, want one error naming it", r)
	}
}
