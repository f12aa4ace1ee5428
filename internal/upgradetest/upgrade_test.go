package upgradetest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api/client"
	"github.com/strata-state/strata/internal/testbin"
	"github.com/strata-state/strata/internal/waitfor"
)

// PreviousCommit is the earlier build the mixed-version tests run against:
// the last state before protocol versions, push broadcast, region
// signatures and data format versions (docs/UPGRADING.md, Release history).
const PreviousCommit = "604301e"

// TestMain removes the binary built from this checkout (the old one stays
// in the cache).
func TestMain(m *testing.M) { os.Exit(testbin.Run(m)) }

// newBinary builds the agent from this checkout, once per test run.
func newBinary(t *testing.T) string { return testbin.Strata(t) }

// oldBinary returns the agent built from PreviousCommit, building it in a
// git worktree the first time and caching it by full commit hash. It skips
// the test when the commit is not in the local git history.
func oldBinary(t *testing.T) string {
	t.Helper()
	return oldBuild(t, "strata", func(src, out string) *exec.Cmd {
		return exec.Command("go", "build", "-o", out, "./agent/cmd/strata")
	})
}

// oldPlacementsReducer is a reducer of PreviousCommit's SDK: its example
// reducer without healthy_machines (field 3, which the contract now
// reserves), so that the old gateway publishes app_placements records
// that both builds' contract checks accept.
const oldPlacementsReducer = `package main

import (
	"github.com/strata-state/strata/plugins/fleetv1"
	"github.com/strata-state/strata/sdk"
)

func init() { sdk.Register(Reduce) }

func Reduce(in *sdk.Input, out *sdk.Output) error {
	apps := map[string]*fleetv1.AppPlacement{}
	err := sdk.Each(in, "machines", func(m *fleetv1.Machine) error {
		if m.State != fleetv1.MachineState_MACHINE_STATE_STARTED {
			return nil
		}
		p := apps[m.App]
		if p == nil {
			p = &fleetv1.AppPlacement{App: m.App}
			apps[m.App] = p
		}
		p.Serving = p.Serving || m.Healthy
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range apps {
		out.Add(p)
	}
	return nil
}

func main() {}
`

// oldPlacementsWasm returns oldPlacementsReducer built by the old agent
// (strata reducer build) in a worktree of PreviousCommit, cached beside
// the old binary.
func oldPlacementsWasm(t *testing.T) string {
	t.Helper()
	bin := oldBinary(t)
	return oldBuild(t, "placements.wasm", func(src, out string) *exec.Cmd {
		dir := filepath.Join(src, "plugins", "upgradetest-placements")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(oldPlacementsReducer), 0o644); err != nil {
			t.Fatal(err)
		}
		return exec.Command(bin, "reducer", "build", "./plugins/upgradetest-placements", "-o", out)
	})
}

// oldBuild returns the file name in PreviousCommit's cache directory,
// building it first, if absent, with the command build returns for a
// fresh git worktree of PreviousCommit at src (run in src). It skips the
// test when the commit is not in the local git history.
func oldBuild(t *testing.T, name string, build func(src, out string) *exec.Cmd) string {
	t.Helper()
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("no git checkout here (%v): the mixed-version test needs commit %s in the git history", err, PreviousCommit)
	}
	root := strings.TrimSpace(string(top))
	full, err := exec.Command("git", "-C", root, "rev-parse", "--verify", "--quiet", PreviousCommit+"^{commit}").Output()
	if err != nil {
		t.Skipf("commit %s is not in this clone's git history (shallow clone?): fetch it (git fetch --unshallow) to run the mixed-version test", PreviousCommit)
	}
	hash := strings.TrimSpace(string(full))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = t.TempDir()
	}
	dir := filepath.Join(cache, "strata", "upgradetest", hash)
	file := filepath.Join(dir, name)
	if _, err := os.Stat(file); err == nil {
		return file
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	if out, err := exec.Command("git", "-C", root, "worktree", "add", "--detach", src, hash).CombinedOutput(); err != nil {
		t.Fatalf("git worktree add %s: %v\n%s", hash, err, out)
	}
	defer func() {
		if out, err := exec.Command("git", "-C", root, "worktree", "remove", "--force", src).CombinedOutput(); err != nil {
			t.Logf("git worktree remove %s: %v\n%s", src, err, out)
		}
	}()
	tmp := file + fmt.Sprintf(".tmp%d", os.Getpid())
	cmd := build(src, tmp)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s at %s (%s): %v\n%s", name, hash, cmd, err, out)
	}
	// Rename so a concurrent or interrupted run never sees half a file.
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	return file
}

// repoPath is a path in this checkout, from this package's directory.
func repoPath(t *testing.T, rel string) string {
	t.Helper()
	a, err := filepath.Abs(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// agent is one strata agent process; its directory, addresses and config
// outlive the process, so another build can start on the same data_dir.
type agent struct {
	name, dir, api, gossip string
	bin                    string // the binary running now
	conf                   string // agent.toml but for extra
	extra                  string // TOML appended to conf at start
	cmd                    *exec.Cmd
	c                      *client.Client
}

// newAgent writes the config of a node of region r1 joining join.
func newAgent(t *testing.T, name string, join []string) *agent {
	return newAgentIn(t, name, "r1", join)
}

// newAgentIn writes the config of a node of region joining join; its
// extra TOML, if any, is appended when it starts.
func newAgentIn(t *testing.T, name, region string, join []string) *agent {
	t.Helper()
	a := &agent{name: name, dir: t.TempDir(), api: testbin.FreeAddr(t, false), gossip: testbin.FreeAddr(t, true)}
	// Only keys both builds know: an old agent refuses unknown keys.
	conf := fmt.Sprintf(`node = %q
cluster = "upgrade-test"
data_dir = "data"
[contracts]
dir = %q
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = %q
bind = %q
join = [%s]
sync_interval = "500ms"
[api]
addr = %q
`, name, repoPath(t, "contracts"), region, a.gossip, tomlList(join), a.api)
	a.conf = conf
	a.c = client.New(a.api, "")
	t.Cleanup(func() { a.stop(t) })
	return a
}

func tomlList(ss []string) string {
	var quoted []string
	for _, s := range ss {
		quoted = append(quoted, fmt.Sprintf("%q", s))
	}
	return strings.Join(quoted, ", ")
}

// start runs bin on the agent's config and data_dir, appending to its log.
func (a *agent) start(t *testing.T, bin string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(a.dir, "agent.toml"), []byte(a.conf+a.extra), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(filepath.Join(a.dir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(log, "=== start %s\n", bin)
	a.bin = bin
	a.cmd = exec.Command(bin, "agent", "--config", filepath.Join(a.dir, "agent.toml"))
	a.cmd.Stdout, a.cmd.Stderr = log, log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log.Close()
	waitfor.Until(t, 30*time.Second, fmt.Sprintf("%s (%s) answering on its API", a.name, bin), func() error {
		_, err := a.c.Members(context.Background())
		return err
	})
}

// stop sends SIGTERM and waits for a clean exit.
func (a *agent) stop(t *testing.T) {
	if a.cmd == nil || a.cmd.ProcessState != nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- a.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s (%s) exited with %v on SIGTERM:\n%s", a.name, a.bin, err, a.log())
		}
	case <-time.After(15 * time.Second):
		a.cmd.Process.Kill()
		<-done
		t.Errorf("%s (%s) did not stop within 15s of SIGTERM", a.name, a.bin)
	}
}

func (a *agent) log() string {
	b, _ := os.ReadFile(filepath.Join(a.dir, "agent.log"))
	return string(b)
}

// ackedRows are the rows a node acknowledged, by key, with their body.
type ackedRows map[string]string

// put writes a machines row on a and records it once acknowledged.
func (r ackedRows) put(t *testing.T, a *agent, key, app string) {
	t.Helper()
	row := fmt.Sprintf(`{"id":%q,"app":%q,"state":"MACHINE_STATE_STARTED","healthy":true}`, key, app)
	if _, err := a.c.Put(context.Background(), "machines", key, []byte(row)); err != nil {
		t.Fatalf("put %s on %s (%s): %v\n%s", key, a.name, a.bin, err, a.log())
	}
	r[key] = app
}

// converged fails the test unless every agent has every acknowledged row
// with its last written app, and all agents agree on each row's stamp.
func converged(t *testing.T, what string, agents []*agent, rows ackedRows) {
	t.Helper()
	ctx := context.Background()
	waitfor.Until(t, 30*time.Second, what, func() error {
		for key, app := range rows {
			stamp := ""
			for _, a := range agents {
				got, err := a.c.Get(ctx, "machines", key)
				if err != nil {
					return fmt.Errorf("%s (%s) row %s: %w", a.name, a.bin, key, err)
				}
				if !strings.Contains(string(got.Row), fmt.Sprintf("%q", app)) {
					return fmt.Errorf("%s (%s) row %s is %s, want app %q", a.name, a.bin, key, got.Row, app)
				}
				if stamp != "" && got.Stamp != stamp {
					return fmt.Errorf("row %s: stamp %s on %s, %s on another node", key, got.Stamp, a.name, stamp)
				}
				stamp = got.Stamp
			}
		}
		return nil
	})
}

// aliveMembers waits until every agent sees n alive regional members.
func aliveMembers(t *testing.T, agents []*agent, n int) {
	t.Helper()
	ctx := context.Background()
	waitfor.Until(t, 30*time.Second, fmt.Sprintf("%d alive members on every node", n), func() error {
		for _, a := range agents {
			res, err := a.c.Members(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
			alive := 0
			for _, m := range res.Tiers["regional"] {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != n {
				return fmt.Errorf("%s (%s) sees %d alive", a.name, a.bin, alive)
			}
		}
		return nil
	})
}

// protocols is what a sees of each member's protocol range.
func protocols(t *testing.T, a *agent) map[string]string {
	t.Helper()
	res, err := a.c.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range res.Tiers["regional"] {
		if m.State == "alive" {
			out[m.Name] = m.Protocol
		}
	}
	return out
}

// metric is the value of one series of a's /metrics, written as the
// Prometheus text format writes it (labels in name order); 0 when absent.
func metric(a *agent, series string) (float64, error) {
	resp, err := http.Get("http://" + a.api + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, sc.Err()
}

// membersCLI checks that `strata members` run with bin against a shows
// each regional member in want with its protocol range.
func membersCLI(t *testing.T, bin string, a *agent, want map[string]string) {
	t.Helper()
	out, err := exec.Command(bin, "--addr", a.api, "members").CombinedOutput()
	if err != nil {
		t.Fatalf("strata members on %s: %v\n%s", a.name, err, out)
	}
	lines := strings.Split(string(out), "\n")
	if !strings.Contains(lines[0], "PROTOCOL") || !strings.Contains(lines[0], "BUILD") {
		t.Errorf("strata members has no PROTOCOL and BUILD columns:\n%s", out)
	}
	for name, proto := range want {
		found := false
		for _, line := range lines[1:] {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "regional" && f[1] == name {
				found = slices.Contains(f, proto)
			}
		}
		if !found {
			t.Errorf("strata members shows no regional %s with protocol %s:\n%s", name, proto, out)
		}
	}
}

// TestMixedRegionThenUpgradeInPlace runs a 3-node region of two agents of
// PreviousCommit and one of this build. Rows written on old and new nodes
// reach every node; then each old agent is stopped and this build started
// on its data_dir, one at a time, with writes in between, and every
// acknowledged row is still on every node at the end. Finally one upgraded
// node is rolled back to the old build on its (now versioned) file.
func TestMixedRegionThenUpgradeInPlace(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two agents and starts processes")
	}
	oldBin, newBin := oldBinary(t), newBinary(t)

	a0 := newAgent(t, "n0", nil)
	a0.start(t, oldBin)
	a1 := newAgent(t, "n1", []string{a0.gossip})
	a1.start(t, newBin)
	a2 := newAgent(t, "n2", []string{a0.gossip})
	a2.start(t, oldBin)
	agents := []*agent{a0, a1, a2}
	aliveMembers(t, agents, 3)

	// The new node sees the old ones as speaking protocol 1 only (gossip),
	// and itself as 1-2.
	if got := protocols(t, a1); got["n0"] != "1-1" || got["n2"] != "1-1" || got["n1"] != "1-2" {
		t.Errorf("protocols seen by the new node: %v, want n0 and n2 1-1, n1 1-2", got)
	}

	// strata members on the new node shows each member's range: the old
	// builds advertise none, so they are shown as 1-1.
	membersCLI(t, newBin, a1, map[string]string{"n0": "1-1", "n1": "1-2", "n2": "1-1"})

	// New to old by gossip: the new node pushes to no old node, so its rows
	// reach them in gossip "changes" messages, which the old build counts.
	// Nothing else has been written yet, so every such message they have
	// received is the new node's (the old build does not relay gossip).
	rows := ackedRows{}
	for j := 0; j < 5; j++ {
		rows.put(t, a1, fmt.Sprintf("mixed-1-%d", j), "v1")
	}
	waitfor.Until(t, 30*time.Second, "the new node's rows gossiped to both old nodes", func() error {
		for _, a := range []*agent{a0, a2} {
			v, err := metric(a, `strata_gossip_received_total{tier="regional",type="changes"}`)
			if err != nil {
				return err
			}
			if v == 0 {
				return fmt.Errorf("%s (%s) has received no changes message", a.name, a.bin)
			}
		}
		return nil
	})
	for _, i := range []int{0, 2} {
		for j := 0; j < 5; j++ {
			rows.put(t, agents[i], fmt.Sprintf("mixed-%d-%d", i, j), "v1")
		}
	}
	// An update of an old node's row on the new node, and the reverse.
	rows.put(t, a1, "mixed-0-0", "v2")
	converged(t, "rows written on old and new nodes reach every node", agents, rows)
	rows.put(t, a0, "mixed-1-0", "v2")
	converged(t, "an old node's update of a new node's row reaches every node", agents, rows)
	// Old to new by gossip: some of the old nodes' rows were new state to
	// the new node when they came by gossip (anti-entropy, every 500ms,
	// could bring the others first).
	if v, err := metric(a1, `strata_changes_applied_total{path="gossip",tier="regional"}`); err != nil || v == 0 {
		t.Errorf("the new node applied %v changes that came by gossip (%v), want the old nodes' rows", v, err)
	}

	// Upgrade in place, one node at a time, writing on the others meanwhile.
	for _, a := range []*agent{a0, a2} {
		a.stop(t)
		for _, w := range agents {
			if w != a {
				rows.put(t, w, fmt.Sprintf("during-%s-%s", a.name, w.name), "v1")
			}
		}
		a.start(t, newBin)
		aliveMembers(t, agents, 3)
		// The old build already wrote data format 1, the format this build
		// writes: nothing was migrated, so no backup was taken.
		if baks, _ := filepath.Glob(filepath.Join(a.dir, "data", "*.bak")); len(baks) > 0 {
			t.Errorf("%s upgraded: unexpected migration backups %v (the formats are the same)", a.name, baks)
		}
		rows.put(t, a, "after-"+a.name, "v1")
		converged(t, "every acknowledged row on every node after upgrading "+a.name, agents, rows)
	}
	if got := protocols(t, a0); got["n0"] != "1-2" || got["n1"] != "1-2" || got["n2"] != "1-2" {
		t.Errorf("protocols after the upgrade: %v, want 1-2 everywhere", got)
	}

	// Rollback: n2 goes back to the old build on the file this build wrote
	// (format 1, whose layout the old build reads; it ignores the version).
	a2.stop(t)
	rows.put(t, a1, "before-rollback", "v1")
	a2.start(t, oldBin)
	aliveMembers(t, agents, 3)
	rows.put(t, a2, "after-rollback", "v1")
	converged(t, "every acknowledged row on every node after rolling n2 back", agents, rows)
	if t.Failed() {
		for _, a := range agents {
			t.Logf("%s log:\n%s", a.name, a.log())
		}
	}
}
