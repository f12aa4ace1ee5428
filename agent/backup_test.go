package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/internal/waitfor"
)

// regionNode is a regional-only node with quick gossip and anti-entropy.
func regionNode(t *testing.T, node, dataDir string, join []string) *config.Config {
	t.Helper()
	return regionNodeSyncing(t, node, dataDir, join, "300ms")
}

// regionNodeSyncing is a regional-only node with quick gossip that runs
// anti-entropy every syncInterval.
func regionNodeSyncing(tb testing.TB, node, dataDir string, join []string, syncInterval string) *config.Config {
	tb.Helper()
	var q []string
	for _, j := range join {
		q = append(q, fmt.Sprintf("%q", j))
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`node = %q
cluster = "test"
data_dir = %q
[contracts]
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "r1"
bind = "127.0.0.1:0"
join = [%s]
gossip_interval = "50ms"
probe_interval = "200ms"
probe_timeout = "100ms"
sync_interval = %q
[api]
addr = "127.0.0.1:0"
`, node, dataDir, strings.Join(q, ", "), syncInterval)), "agent.toml")
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// A node restored from a backup (strata backup, then strata restore into a
// new data_dir) rejoins its region and converges: it gets every row
// written and deleted after the backup.
func TestRestoredNodeRejoinsAndConverges(t *testing.T) {
	ctx := context.Background()
	n1 := startAgent(t, regionNode(t, "n1", filepath.Join(t.TempDir(), "data"), nil))
	join := []string{n1.a.Tier().Addr()}
	n2 := startAgent(t, regionNode(t, "n2", filepath.Join(t.TempDir(), "data"), join))
	put := func(i int) {
		t.Helper()
		key := fmt.Sprintf("m-%d", i)
		if _, err := n1.client.Put(ctx, "machines", key, []byte(fmt.Sprintf(`{"id":%q,"app":"web","state":"MACHINE_STATE_STARTED"}`, key))); err != nil {
			t.Fatal(err)
		}
	}
	same := func(a, b *store.Store) func() error {
		return func() error {
			if ra, rb := a.Digest().Root(), b.Digest().Root(); ra != rb {
				return fmt.Errorf("digests differ: %x, %x (rows %v, %v)", ra[:4], rb[:4], a.Stats().Rows, b.Stats().Rows)
			}
			return nil
		}
	}
	for i := range 50 {
		put(i)
	}
	waitfor.Until(t, 20*time.Second, "n2 has n1's rows", same(n1.a.Store(), n2.a.Store()))

	var backup bytes.Buffer
	if _, err := n2.client.Backup(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	n2.stop()
	for i := 50; i < 80; i++ {
		put(i)
	}
	for _, k := range []string{"m-3", "m-60"} {
		if _, err := n1.client.Delete(ctx, "machines", k); err != nil {
			t.Fatal(err)
		}
	}

	restored := filepath.Join(t.TempDir(), "restored")
	if _, err := store.RestoreBackup(&backup, restored); err != nil {
		t.Fatal(err)
	}
	n2r := startAgent(t, regionNode(t, "n2", restored, join))
	waitfor.Until(t, 30*time.Second, "the restored n2 converges with n1", same(n1.a.Store(), n2r.a.Store()))
	if _, err := n2r.a.Store().Get("machines", "m-3"); err == nil {
		t.Error("a row deleted after the backup is alive on the restored node")
	}
}

// An agent whose store file cannot be written (a read-only or full disk)
// starts anyway: it serves reads, refuses writes with 503, and its health
// says why.
func TestAgentStartsReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, stop := runAgent(t, testConfig(t, dir))
	if _, err := c.Put(ctx, "machines", "m-1", []byte(`{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED"}`)); err != nil {
		t.Fatal(err)
	}
	stop()
	path := filepath.Join(dir, "data", "regional.db")
	if os.Getuid() == 0 {
		if err := exec.Command("chattr", "+i", path).Run(); err != nil {
			t.Skipf("cannot make the store unwritable as root: %v", err)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
	} else {
		os.Chmod(path, 0o400)
	}
	c, stop = runAgent(t, testConfig(t, dir))
	defer stop()
	if _, err := c.Get(ctx, "machines", "m-1"); err != nil {
		t.Errorf("read on a read-only store: %v", err)
	}
	_, err := c.Put(ctx, "machines", "m-2", []byte(`{"id":"m-2","app":"web","state":"MACHINE_STATE_STARTED"}`))
	if e, ok := err.(*api.Error); !ok || e.Status != 503 || !strings.Contains(e.Message, "read-only") {
		t.Errorf("write on a read-only store: %v, want 503 saying read-only", err)
	}
	var health map[string]any
	err = c.GetJSON(ctx, "/v1/health", &health)
	if e, ok := err.(*api.Error); !ok || e.Status != 503 {
		t.Errorf("health of a read-only agent: %v %v, want 503", health, err)
	}
}
