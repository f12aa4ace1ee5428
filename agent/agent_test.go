package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/contracts"
)

// testConfig is a one-node agent on loopback with free ports.
func testConfig(t *testing.T, dir string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`node = "t1"
cluster = "test"
data_dir = %q
[contracts]
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "r1"
bind = "127.0.0.1:0"
[api]
addr = "127.0.0.1:0"
`, filepath.Join(dir, "data"))), "agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runAgent starts an agent and returns a client and a function that stops
// it and waits for Run to return.
func runAgent(t *testing.T, cfg *config.Config) (*api.Client, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ContractFS: contracts.Example})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return api.NewClient(a.Addr(), ""), func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("agent did not stop")
		}
	}
}

// TestRestartKeepsAcknowledgedRows writes through the API, stops the agent
// and starts a new one on the same data_dir: every acknowledged row is
// served again.
func TestRestartKeepsAcknowledgedRows(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	c, stop := runAgent(t, testConfig(t, dir))
	var keys []string
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("m-%d", i)
		row := fmt.Sprintf(`{"id":%q,"app":"web","state":"MACHINE_STATE_STARTED","healthy":%v}`, key, i%2 == 0)
		if _, err := c.Put(ctx, "machines", key, []byte(row)); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	if _, err := c.Delete(ctx, "machines", "m-3"); err != nil {
		t.Fatal(err)
	}
	stop()

	c2, stop2 := runAgent(t, testConfig(t, dir))
	defer stop2()
	for _, key := range keys {
		_, err := c2.Get(ctx, "machines", key)
		if key == "m-3" {
			if e, ok := err.(*api.Error); !ok || e.Status != 404 {
				t.Fatalf("deleted row m-3 after restart: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("acknowledged row %s lost across restart: %v", key, err)
		}
	}
}

func TestBadContractIsAClearError(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Contracts.Files = []string{"fleet/v1/missing.proto"}
	_, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ContractFS: contracts.Example})
	if err == nil || !strings.Contains(err.Error(), "missing.proto") {
		t.Fatalf("err = %v, want an error naming fleet/v1/missing.proto", err)
	}
}

// TestKeyRotationThroughTheAPI rotates the regional key of a running agent
// with the client (as strata keys does) and checks the keyring file is
// rewritten, primary first, for the next start.
func TestKeyRotationThroughTheAPI(t *testing.T) {
	dir := t.TempDir()
	keyfile := filepath.Join(dir, "regional.key")
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	if err := os.WriteFile(keyfile, []byte(base64.StdEncoding.EncodeToString(oldKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir)
	cfg.Regional.Keyring = keyfile
	c, stop := runAgent(t, cfg)
	defer stop()
	ctx := context.Background()
	for _, step := range []struct {
		op  string
		key []byte
	}{{"add", newKey}, {"use", newKey}, {"remove", oldKey}} {
		if _, err := c.ChangeKey(ctx, "regional", step.op, step.key); err != nil {
			t.Fatalf("%s: %v", step.op, err)
		}
	}
	keys, err := cluster.LoadKeyring(keyfile)
	if err != nil || len(keys) != 1 || !bytes.Equal(keys[0], newKey) {
		t.Fatalf("keyring file after rotation: %d keys, %v", len(keys), err)
	}
	if _, err := c.ChangeKey(ctx, "global", "add", newKey); err == nil {
		t.Fatal("a key change on a tier this node does not have succeeded")
	}
}
