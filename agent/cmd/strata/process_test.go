package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/internal/testbin"
	"github.com/strata-state/strata/internal/waitfor"
)

// TestMain removes the strata binary the process tests built.
func TestMain(m *testing.M) { os.Exit(testbin.Run(m)) }

// agentProc is one strata agent process.
type agentProc struct {
	name, dir, api, gossip string
	cmd                    *exec.Cmd
	client                 *api.Client
}

func startProc(t *testing.T, bin string, p *agentProc, join []string) {
	t.Helper()
	var quoted []string
	for _, j := range join {
		quoted = append(quoted, fmt.Sprintf("%q", j))
	}
	conf := fmt.Sprintf(`node = %q
cluster = "proc-test"
data_dir = "data"
[contracts]
dir = %q
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "r1"
bind = %q
join = [%s]
sync_interval = "500ms"
[api]
addr = %q
`, p.name, mustAbs(t, "../../../contracts"), p.gossip, strings.Join(quoted, ", "), p.api)
	if err := os.WriteFile(filepath.Join(p.dir, "agent.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(p.dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "agent", "--config", filepath.Join(p.dir, "agent.toml"))
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.client = api.NewClient(p.api, "")
	t.Cleanup(func() { p.stop(t) })
}

func (p *agentProc) stop(t *testing.T) {
	if p.cmd == nil || p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(p.dir, "agent.log"))
			t.Errorf("%s exited with %v on SIGTERM:\n%s", p.name, err, log)
		}
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("%s did not stop within 15s of SIGTERM", p.name)
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestProcessesReplicateOverLoopback runs three strata agent processes
// with real UDP/TCP gossip on 127.0.0.1: a write on one is readable on the
// others, a node stopped by SIGTERM is seen as left by its peers, and a
// stopped node restarted without its join list (rejoining through its
// persisted peers) catches up on what it missed.
func TestProcessesReplicateOverLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bin := testbin.Strata(t)
	ctx := context.Background()
	var procs []*agentProc
	for i := 0; i < 3; i++ {
		p := &agentProc{name: fmt.Sprintf("p%d", i), dir: t.TempDir(), api: testbin.FreeAddr(t, false), gossip: testbin.FreeAddr(t, true)}
		var join []string
		if i > 0 {
			join = []string{procs[0].gossip}
		}
		startProc(t, bin, p, join)
		procs = append(procs, p)
	}
	waitfor.Until(t, 20*time.Second, "three members everywhere", func() error {
		for _, p := range procs {
			res, err := p.client.Members(ctx)
			if err != nil {
				return err
			}
			alive := 0
			for _, m := range res.Tiers["regional"] {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != 3 {
				return fmt.Errorf("%s sees %d alive", p.name, alive)
			}
		}
		return nil
	})
	// One version string: what --version prints is what /v1/status
	// reports and what every member advertises (strata members' BUILD).
	verOut, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	ver := strings.TrimSpace(strings.TrimPrefix(string(verOut), "strata version "))
	raw, err := procs[0].client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Version string }
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if st.Version != ver {
		t.Errorf("/v1/status version %q, --version %q", st.Version, ver)
	}
	members, err := procs[0].client.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members.Tiers["regional"] {
		if m.Build != ver {
			t.Errorf("member %s advertises build %q, --version says %q", m.Name, m.Build, ver)
		}
	}

	row := `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","healthy":true}`
	if _, err := procs[0].client.Put(ctx, "machines", "m-1", []byte(row)); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 10*time.Second, "m-1 on every node", func() error {
		for _, p := range procs {
			if _, err := p.client.Get(ctx, "machines", "m-1"); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
		return nil
	})

	// p2 stops; p1 takes writes; p2 comes back with no join list.
	p2 := procs[2]
	p2.stop(t)
	// SIGTERM is a graceful leave: peers list p2 as left, not dead.
	waitfor.Until(t, 10*time.Second, "p0 sees p2 as left after its SIGTERM", func() error {
		res, err := procs[0].client.Members(ctx)
		if err != nil {
			return err
		}
		for _, m := range res.Tiers["regional"] {
			if m.Name == p2.name {
				if m.State != "left" {
					return fmt.Errorf("p2 is %s", m.State)
				}
				return nil
			}
		}
		return fmt.Errorf("p2 is not among p0's members")
	})
	for i := 0; i < 10; i++ {
		key := fmt.Sprintf("late-%d", i)
		r := fmt.Sprintf(`{"id":%q,"app":"api","state":"MACHINE_STATE_STOPPED"}`, key)
		if _, err := procs[1].client.Put(ctx, "machines", key, []byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	startProc(t, bin, p2, nil)
	waitfor.Until(t, 20*time.Second, "restarted p2 caught up", func() error {
		_, err := p2.client.Get(ctx, "machines", "late-9")
		return err
	})
}
