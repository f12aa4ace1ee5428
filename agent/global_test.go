package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/reducertest"
	"github.com/strata-state/strata/internal/waitfor"
)

// gatewayConfig is a gateway of region with the app-regions reducer.
func gatewayConfig(t testing.TB, node, region, wasm string, regionalJoin, globalJoin []string) *config.Config {
	t.Helper()
	q := func(ss []string) string {
		var out []string
		for _, s := range ss {
			out = append(out, fmt.Sprintf("%q", s))
		}
		return strings.Join(out, ", ")
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`node = %q
cluster = "test"
data_dir = %q
[contracts]
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = %q
bind = "127.0.0.1:0"
join = [%s]
gossip_interval = "50ms"
probe_interval = "200ms"
probe_timeout = "100ms"
sync_interval = "500ms"
[global]
bind = "127.0.0.1:0"
join = [%s]
stale_after = "2s"
gossip_interval = "50ms"
probe_interval = "200ms"
probe_timeout = "100ms"
sync_interval = "500ms"
[api]
addr = "127.0.0.1:0"
[[reducers]]
name = "app-regions"
wasm = %q
inputs = ["machines"]
outputs = ["app_placements"]
debounce = "50ms"
`, node, filepath.Join(t.TempDir(), "data"), region, q(regionalJoin), q(globalJoin), wasm)), "agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

type runningAgent struct {
	a      *Agent
	client *api.Client
	stop   func()
}

func startAgent(t testing.TB, cfg *config.Config) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var logw io.Writer = io.Discard
	if os.Getenv("STRATA_TEST_LOG") != "" {
		logw = os.Stderr
	}
	a, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(logw, nil)).With("node", cfg.Node), ContractFS: contracts.Example})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return &runningAgent{a: a, client: api.NewClient(a.Addr(), ""), stop: stop}
}

// placement fetches app_placements/app from a gateway's API and returns
// the regions that publish it, with serving and staleness.
func placement(ctx context.Context, c *api.Client, app string) (map[string]string, error) {
	var res api.GlobalEntry
	if err := c.GetJSON(ctx, "/v1/global/app_placements/"+app, &res); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for region, rr := range res.Regions {
		out[region] = fmt.Sprintf("%s stale=%v", strings.Join(strings.Fields(string(rr.Record)), ""), rr.Stale)
	}
	return out, nil
}

// TestRegionsPublishAcrossTheGlobalTier runs two regions in one process:
// ord with two gateways, ams with one. A machine started in ord shows up
// in app_placements on ams's gateway; when ord's publisher stops, the other
// ord gateway takes over publishing.
func TestRegionsPublishAcrossTheGlobalTier(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("starts gateways that compile reducers: too slow under -short or -race (.ci/run runs it without -race)")
	}
	wasm := reducertest.Module(t, "app-regions")
	ctx := context.Background()
	ord1 := startAgent(t, gatewayConfig(t, "ord-1", "ord", wasm, nil, nil))
	ams1 := startAgent(t, gatewayConfig(t, "ams-1", "ams", wasm, nil, []string{ord1.a.GlobalTier().Addr()}))
	ord2 := startAgent(t, gatewayConfig(t, "ord-2", "ord", wasm, []string{ord1.a.Tier().Addr()}, []string{ord1.a.GlobalTier().Addr()}))
	waitfor.Until(t, 15*time.Second, "ord has two members", func() error {
		if n := ord2.a.Tier().NumAlive(); n != 2 {
			return fmt.Errorf("ord-2 sees %d", n)
		}
		return nil
	})

	row := `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","healthy":true,"host":"h-17","private_ip":"10.1.2.3"}`
	if _, err := ord2.client.Put(ctx, "machines", "m-1", []byte(row)); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 15*time.Second, "web in ord, seen from ams", func() error {
		p, err := placement(ctx, ams1.client, "web")
		if err != nil {
			return err
		}
		if !strings.Contains(p["ord"], `"serving":true`) || !strings.Contains(p["ord"], "stale=false") {
			return fmt.Errorf("ams sees %v", p)
		}
		return nil
	})
	// A global watch starts with a snapshot of every region's entries.
	wctx, cancelWatch := context.WithTimeout(ctx, 10*time.Second)
	var first api.WatchEvent
	err := ams1.client.WatchGlobal(wctx, "app_placements", 0, func(ev api.WatchEvent) error {
		first = ev
		return io.EOF // stop at the first event
	})
	cancelWatch()
	if err != io.EOF || first.Name != api.EventSnapshot || !strings.Contains(string(first.Data), `"region":"ord"`) || !strings.Contains(string(first.Data), `"key":"web"`) {
		t.Fatalf("global watch: first event %s %s, err %v", first.Name, first.Data, err)
	}

	// A node that is not a gateway forwards global reads to one.
	plainCfg := gatewayConfig(t, "ord-9", "ord", wasm, []string{ord1.a.Tier().Addr()}, nil)
	plainCfg.Global, plainCfg.Reducers = nil, nil
	plain := startAgent(t, plainCfg)
	waitfor.Until(t, 15*time.Second, "global read through a non-gateway", func() error {
		p, err := placement(ctx, plain.client, "web")
		if err != nil {
			return err
		}
		if !strings.Contains(p["ord"], `"serving":true`) {
			return fmt.Errorf("ord-9 sees %v", p)
		}
		return nil
	})
	// It does not forward watches, which it could not verify as they go:
	// it answers 503, as README.md says.
	err = plain.client.WatchGlobal(ctx, "app_placements", 0, func(api.WatchEvent) error { return nil })
	var werr *api.Error
	if !errors.As(err, &werr) || werr.Status != http.StatusServiceUnavailable {
		t.Fatalf("global watch on a non-gateway: %v, want 503", err)
	}
	plain.stop()

	// The record carries no regional detail.
	p, _ := placement(ctx, ams1.client, "web")
	for _, secret := range []string{"m-1", "h-17", "10.1.2.3"} {
		if strings.Contains(p["ord"], secret) {
			t.Fatalf("regional value %q leaked into the global record: %s", secret, p["ord"])
		}
	}

	// Regional churn that does not change the projection writes nothing:
	// wait for the publisher to have run on it, then look at the feed.
	before := ord1.a.Global().Stats().Seq
	skipped := ord1.a.Publisher().Status()[0].Unchanged
	if _, err := ord2.client.Patch(ctx, "machines", "m-1", []byte(`{"host":"h-18"}`)); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 10*time.Second, "publisher ran on the churn", func() error {
		if st := ord1.a.Publisher().Status()[0]; st.Unchanged == skipped {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if evs, _, _ := ord1.a.Global().FeedSince(before, "app_placements", 0); len(evs) != 0 {
		t.Fatalf("churn that leaves the projection unchanged wrote %d global records", len(evs))
	}

	// Direct API writes go through the same pipeline.
	for _, tc := range []struct{ body, want string }{
		{`{"app":"db","serving":true,"colour":"red"}`, "colour"},
		{`{"app":"other","serving":true}`, "key_mismatch"},
		{`{"app":"Bad Name"}`, "validate"},
	} {
		err := ams1.client.PutJSON(ctx, "/v1/global/app_placements/db", []byte(tc.body), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("PUT %s: err = %v, want a rejection mentioning %q", tc.body, err, tc.want)
		}
	}
	if err := ams1.client.PutJSON(ctx, "/v1/global/app_placements/db", []byte(`{"app":"db","serving":true}`), nil); err != nil {
		t.Fatalf("valid API write refused: %v", err)
	}

	// Failover: ord-1 (lowest name, the publisher) stops; ord-2 publishes.
	ord1.stop()
	if _, err := ord2.client.Put(ctx, "machines", "m-2", []byte(`{"id":"m-2","app":"api","state":"MACHINE_STATE_STARTED","healthy":false}`)); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 20*time.Second, "api in ord after failover, seen from ams", func() error {
		p, err := placement(ctx, ams1.client, "api")
		if err != nil {
			return err
		}
		if !strings.Contains(p["ord"], `"serving":false`) {
			return fmt.Errorf("ams sees %v", p)
		}
		return nil
	})

	// The machine stops: the placement disappears in the other region.
	if _, err := ord2.client.Patch(ctx, "machines", "m-2", []byte(`{"state":"MACHINE_STATE_STOPPED"}`)); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 20*time.Second, "api gone from ord, seen from ams", func() error {
		p, err := placement(ctx, ams1.client, "api")
		if e, ok := err.(*api.Error); ok && e.Status == 404 {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("ams still sees %v", p)
	})

	// ord goes dark: ams reports its records stale.
	ord2.stop()
	waitfor.Until(t, 15*time.Second, "ord stale in ams", func() error {
		p, err := placement(ctx, ams1.client, "web")
		if err != nil {
			return err
		}
		if !strings.Contains(p["ord"], "stale=true") {
			return fmt.Errorf("ams sees %v", p)
		}
		return nil
	})
}

// TestFaultyRegionsCannotPoisonOthers runs one region per misbehaving
// reducer (a leak of a regional_only id, an address copied into a record, a
// field not in the contract, a panic, an endless loop, and a module with
// the wrong ABI that does not even load) beside region ord with the real
// one. Each faulty agent keeps running and shows its rejection, ord keeps
// publishing, and no record of a faulty region is stored on any gateway.
func TestFaultyRegionsCannotPoisonOthers(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("starts 12 gateways that compile reducers: too slow under -short or -race (.ci/run runs it without -race)")
	}
	faulty := []string{"leakid", "leakip", "unknownfield", "panic", "loop", "wrongabi",
		"membomb", "guesterror", "hugeoutput", "garbage", "noexports"}
	mods := reducertest.Modules(t, append([]string{"app-regions"}, faulty...)...)
	ctx := context.Background()
	ord := startAgent(t, gatewayConfig(t, "ord-1", "ord", mods["app-regions"], nil, nil))
	all := []*runningAgent{ord}
	bad := map[string]*runningAgent{}
	for _, name := range faulty {
		cfg := gatewayConfig(t, name+"-1", "bad-"+name, mods[name], nil, []string{ord.a.GlobalTier().Addr()})
		cfg.Reducers[0].Name = name
		if name == "loop" {
			cfg.Reducers[0].Timeout.Duration = 200 * time.Millisecond
		}
		if name == "membomb" {
			cfg.Reducers[0].MemoryLimit = 16 << 20
		}
		bad[name] = startAgent(t, cfg)
		all = append(all, bad[name])
	}
	machine := `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","healthy":true,"private_ip":"10.9.8.7"}`
	for _, a := range all {
		if _, err := a.client.Put(ctx, "machines", "m-1", []byte(machine)); err != nil {
			t.Fatal(err)
		}
	}
	wantInError := map[string]string{
		"leakid": "[leak]", "leakip": "[validate:string.pattern]", "unknownfield": "[unknown_field]",
		"panic": ": panic:", "loop": ": timeout:", "wrongabi": ": abi:",
		"membomb": ": memory:", "guesterror": ": guest:", "hugeoutput": ": output:", "garbage": ": output:", "noexports": ": abi:",
	}
	waitfor.Until(t, 30*time.Second, "ord's web seen from every faulty region, and every faulty reducer reported", func() error {
		for name, a := range bad {
			p, err := placement(ctx, a.client, "web")
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if !strings.Contains(p["ord"], `"serving":true`) {
				return fmt.Errorf("%s sees %v", name, p)
			}
			if msg := lastError(a.a.Publisher().Status()[0]); !strings.Contains(strings.ToLower(msg), wantInError[name]) {
				return fmt.Errorf("reducer %s: last error %q, want it to mention %q", name, msg, wantInError[name])
			}
		}
		return nil
	})
	for _, a := range all {
		rows, _, err := a.a.Global().List("app_placements", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, kr := range rows {
			if strings.HasPrefix(kr.Key, "bad-") {
				t.Errorf("%s stores a record of a faulty region: %s", a.a.cfg.Node, kr.Key)
			}
		}
	}
	for name, a := range bad {
		t.Logf("%s: %s", name, lastError(a.a.Publisher().Status()[0]))
	}
}

// lastError is a reducer's last problem: a failed run, or a refused write.
func lastError(st reducer.Status) string {
	if st.PublishError != "" {
		return st.PublishError
	}
	if st.LastError != nil {
		return st.LastError.Message
	}
	return ""
}
