package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/waitfor"
)

// trustMaxPerRegion is app_placements' max_per_region in the trust tests'
// contract: small, so that a flood past it is quick.
const trustMaxPerRegion = 5

// trustContract is the example contract with a small max_per_region.
func trustContract(t testing.TB) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	for _, name := range []string{"fleet/v1/regional.proto", "fleet/v1/global.proto", "strata/v1/options.proto"} {
		b, err := contracts.Example.(interface{ ReadFile(string) ([]byte, error) }).ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "fleet/v1/global.proto" {
			b = []byte(strings.Replace(string(b), "max_per_region: 10000", fmt.Sprintf("max_per_region: %d", trustMaxPerRegion), 1))
		}
		fsys[name] = &fstest.MapFile{Data: b}
	}
	return fsys
}

// trustKeys writes a global gossip key, a signing key per region and the
// trusted_regions file listing them, in dir.
type trustKeys struct {
	dir       string
	gossip    string // keyring file of the global tier
	gossipKey []byte
	signers   map[string]*global.Signer
	keyFiles  map[string]string
	trusted   string
}

func newTrustKeys(t testing.TB, regions ...string) *trustKeys {
	t.Helper()
	k := &trustKeys{dir: t.TempDir(), signers: map[string]*global.Signer{}, keyFiles: map[string]string{}}
	k.gossipKey = make([]byte, 32)
	rand.Read(k.gossipKey)
	k.gossip = filepath.Join(k.dir, "global.key")
	must(t, os.WriteFile(k.gossip, []byte(base64.StdEncoding.EncodeToString(k.gossipKey)+"\n"), 0o600))
	var lines []string
	for _, r := range regions {
		s, err := global.NewSigner(r)
		must(t, err)
		k.signers[r] = s
		k.keyFiles[r] = filepath.Join(k.dir, r+".key")
		must(t, os.WriteFile(k.keyFiles[r], s.PrivateKeyFile(), 0o600))
		lines = append(lines, s.TrustLine())
	}
	k.trusted = filepath.Join(k.dir, "regions.pub")
	must(t, os.WriteFile(k.trusted, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	return k
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// trustGateway is a gateway of region without reducers (records are
// written through the API), with region keys and an API token.
func trustGateway(t testing.TB, node, region string, k *trustKeys, regionalJoin, globalJoin []string) *config.Config {
	t.Helper()
	cfg := gatewayConfig(t, node, region, "unused.wasm", regionalJoin, globalJoin)
	cfg.Reducers = nil
	cfg.Global.Keyring = k.gossip
	cfg.Global.RegionKey = k.keyFiles[region]
	cfg.Global.TrustedRegions = k.trusted
	tok := filepath.Join(t.TempDir(), "token")
	must(t, os.WriteFile(tok, []byte("client-secret\n"), 0o600))
	cfg.API.TokenFile = tok
	return cfg
}

// startWith starts an agent on the given contract.
func startWith(t testing.TB, cfg *config.Config, fsys fstest.MapFS) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var logw io.Writer = io.Discard
	if os.Getenv("STRATA_TEST_LOG") != "" {
		logw = os.Stderr
	}
	a, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(logw, nil)).With("node", cfg.Node), ContractFS: fsys})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return &runningAgent{a: a, client: api.NewClient(a.Addr(), "client-secret"), stop: stop}
}

// hostile is a peer that joins the global tier with the gossip key and
// sends whatever changes it likes: it merges them into its own store,
// which gossips them and serves them to anti-entropy.
type hostile struct {
	st   *store.Store
	tier *cluster.Tier
	now  func() store.Stamp
}

func joinHostile(t testing.TB, name, claimedRegion string, gossipKey []byte, join string) *hostile {
	t.Helper()
	clock := hlc.NewClock(nil, time.Minute)
	st, err := store.Open(filepath.Join(t.TempDir(), "global.db"), store.Options{Node: name, Clock: clock, NoSync: true})
	must(t, err)
	tier, err := cluster.New(cluster.Config{
		Node: name, Tier: cluster.Global, Cluster: "test", Region: claimedRegion,
		Bind: "127.0.0.1:0", Join: []string{join}, Keys: [][]byte{gossipKey},
		GossipInterval: 50 * time.Millisecond, ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		SyncInterval: 300 * time.Millisecond,
		// It says it is a gateway of the region it attacks.
		Meta:   cluster.Meta{Region: claimedRegion, Roles: []string{"gateway"}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, st)
	must(t, err)
	tier.Start()
	t.Cleanup(func() { tier.Close(); st.Close() })
	id := store.NodeIDOf(name)
	return &hostile{st: st, tier: tier, now: func() store.Stamp { return store.Stamp{HLC: clock.Now(), Node: id} }}
}

// send merges changes into the hostile peer's store, so it gossips them.
func (h *hostile) send(t testing.TB, changes ...store.Change) {
	t.Helper()
	if _, rej, err := h.st.Merge(context.Background(), changes); err != nil || len(rej) > 0 {
		t.Fatalf("hostile peer: %v %v", err, rej)
	}
}

// record is a record change stamped now by h, signed by signer (nil:
// unsigned) and then labelled as region's.
func (h *hostile) record(t testing.TB, name, region, key string, value []byte, signer *global.Signer) store.Change {
	t.Helper()
	s := global.Stored{Record: global.Record{Name: name, Region: region, Key: key, Value: value}, CL: 1, Stamp: h.now()}
	if signer != nil {
		s.Region = signer.Region
		one := []global.Stored{s}
		must(t, signer.Sign(one))
		s.Proof, s.Region = one[0].Proof, region
	}
	return s.Change()
}

// placementValue encodes app_placements {app, serving}.
func placementValue(app string, serving bool) []byte {
	b := append([]byte{0x0a, byte(len(app))}, app...)
	if serving {
		b = append(b, 0x10, 0x01)
	}
	return b
}

// rejectedBy reads strata_global_received_rejected_total by reason from a
// node's /metrics.
func rejectedBy(ctx context.Context, addr string) (map[string]int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer client-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "strata_global_received_rejected_total{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `reason="`)
		reason, _, _ := strings.Cut(rest, `"`)
		f := strings.Fields(line)
		n, _ := strconv.ParseFloat(f[len(f)-1], 64)
		out[reason] += int(n)
	}
	return out, sc.Err()
}

// TestHostilePeersCannotWriteForOtherRegions joins two hostile peers to
// the global tier of two regions (ord, ams) with the right gossip key: one
// with no region key, one with ams's key (stolen). They send forged
// upserts and deletes of ord's records, heartbeats for ord, a store
// tombstone, and a flood of ams records past max_per_region. Every
// gateway refuses all of it, counts it, and keeps serving ord's real
// records and heartbeat.
func TestHostilePeersCannotWriteForOtherRegions(t *testing.T) {
	ctx := context.Background()
	fsys := trustContract(t)
	k := newTrustKeys(t, "ord", "ams")
	ord := startWith(t, trustGateway(t, "ord-1", "ord", k, nil, nil), fsys)
	ams := startWith(t, trustGateway(t, "ams-1", "ams", k, nil, []string{ord.a.GlobalTier().Addr()}), fsys)
	gateways := map[string]*runningAgent{"ord-1": ord, "ams-1": ams}

	must(t, ord.client.PutJSON(ctx, "/v1/global/app_placements/web", []byte(`{"app":"web","serving":true}`), nil))
	must(t, ord.client.PutJSON(ctx, "/v1/global/app_placements/api", []byte(`{"app":"api","serving":true}`), nil))
	waitfor.Until(t, 15*time.Second, "ord's records at ams", func() error {
		p, err := placement(ctx, ams.client, "api")
		if err != nil {
			return err
		}
		if !strings.Contains(p["ord"], `"serving":true`) || !strings.Contains(p["ord"], "stale=false") {
			return fmt.Errorf("ams sees %v", p)
		}
		return nil
	})

	// Mallory has the gossip key and no region key; Eve has ams's key.
	mallory := joinHostile(t, "mallory", "ord", k.gossipKey, ord.a.GlobalTier().Addr())
	eve := joinHostile(t, "eve", "ams", k.gossipKey, ams.a.GlobalTier().Addr())
	waitfor.Until(t, 15*time.Second, "hostile peers in the global tier", func() error {
		if n := ord.a.GlobalTier().NumAlive(); n != 4 {
			return fmt.Errorf("ord-1 sees %d members", n)
		}
		return nil
	})
	amsKey := k.signers["ams"]
	mallory.send(t,
		mallory.record(t, "app_placements", "ord", "web", placementValue("web", false), nil),  // altered
		mallory.record(t, "app_placements", "ord", "evil", placementValue("evil", true), nil), // new
		mallory.record(t, "app_placements", "ord", "api", nil, nil),                           // delete
		mallory.record(t, global.HeartbeatTable, "ord", "ord", []byte("mallory"), nil),        // heartbeat
	)
	// A bare store tombstone of ord's record.
	mallory.send(t, store.Change{Table: "app_placements", Key: "ord/web", Row: store.Row{CL: 2, Stamp: mallory.now()}})
	eve.send(t,
		eve.record(t, "app_placements", "ord", "web", placementValue("web", false), amsKey),
		eve.record(t, "app_placements", "ord", "evil2", placementValue("evil2", true), amsKey),
		eve.record(t, "app_placements", "ord", "api", nil, amsKey),
		eve.record(t, global.HeartbeatTable, "ord", "ord", []byte("eve"), amsKey),
	)
	// A flood of ams records, signed with ams's real key, past max_per_region.
	var flood []store.Change
	for i := range 3 * trustMaxPerRegion {
		app := fmt.Sprintf("flood-%d", i)
		flood = append(flood, eve.record(t, "app_placements", "ams", app, placementValue(app, true), amsKey))
	}
	eve.send(t, flood...)

	for name, g := range gateways {
		waitfor.Until(t, 20*time.Second, name+" refused every kind of forgery", func() error {
			got, err := rejectedBy(ctx, g.a.Addr())
			if err != nil {
				return err
			}
			t.Logf("%s: rejections %v", name, got)
			for _, reason := range []string{global.ReasonUnsigned, global.ReasonWrongRegion, "budget", "layout"} {
				if got[reason] == 0 {
					return fmt.Errorf("rejections by reason %v: none for %q yet", got, reason)
				}
			}
			return nil
		})
	}
	for name, g := range gateways {
		for app, want := range map[string]string{"web": `"serving":true`, "api": `"serving":true`} {
			p, err := placement(ctx, g.client, app)
			if err != nil {
				t.Fatalf("%s: %s: %v", name, app, err)
			}
			if !strings.Contains(p["ord"], want) {
				t.Errorf("%s serves ord's %s as %v, want the real record", name, app, p)
			}
		}
		var list api.GlobalList
		must(t, g.client.GetJSON(ctx, "/v1/global/app_placements", &list))
		amsCount := 0
		for _, e := range list.Entries {
			if strings.HasPrefix(e.Key, "evil") {
				t.Errorf("%s serves a forged record %s: %v", name, e.Key, e.Regions)
			}
			if _, ok := e.Regions["ams"]; ok {
				amsCount++
			}
		}
		if amsCount > trustMaxPerRegion {
			t.Errorf("%s holds %d ams records, max_per_region is %d", name, amsCount, trustMaxPerRegion)
		}
		beat, err := global.Get(g.a.Global(), global.HeartbeatTable, "ord", "ord")
		if err != nil || string(beat.Value) != "ord-1" {
			t.Errorf("%s: ord's heartbeat is %q (%v), want ord-1's", name, beat.Value, err)
		}
	}
	// And ord keeps publishing: a new record still reaches ams.
	must(t, ord.client.PutJSON(ctx, "/v1/global/app_placements/db", []byte(`{"app":"db","serving":true}`), nil))
	waitfor.Until(t, 15*time.Second, "ord's new record at ams after the attack", func() error {
		p, err := placement(ctx, ams.client, "db")
		if err != nil {
			return err
		}
		if !strings.Contains(p["ord"], `"serving":true`) {
			return fmt.Errorf("ams sees %v", p)
		}
		return nil
	})
}

// TestFakeGatewayCannotTakeThePublisherRole: a member of ord's regional
// tier that says it is a gateway, with a name lower than the real one's,
// does not become ord's publisher: ord's gateway keeps writing ord's
// heartbeat, which ams keeps receiving.
func TestFakeGatewayCannotTakeThePublisherRole(t *testing.T) {
	fsys := trustContract(t)
	k := newTrustKeys(t, "ord", "ams")
	ord := startWith(t, trustGateway(t, "ord-1", "ord", k, nil, nil), fsys)
	ams := startWith(t, trustGateway(t, "ams-1", "ams", k, nil, []string{ord.a.GlobalTier().Addr()}), fsys)
	beatAt := func() (time.Time, error) {
		b, err := global.Get(ams.a.Global(), global.HeartbeatTable, "ord", "ord")
		return b.Stamp.HLC.Time(), err
	}
	waitfor.Until(t, 15*time.Second, "ord's heartbeat at ams", func() error { _, err := beatAt(); return err })

	clock := hlc.NewClock(nil, time.Minute)
	st, err := store.Open(filepath.Join(t.TempDir(), "regional.db"), store.Options{Node: "ord-0", Clock: clock, NoSync: true})
	must(t, err)
	fake, err := cluster.New(cluster.Config{
		Node: "ord-0", Tier: cluster.Regional, Cluster: "test", Region: "ord",
		Bind: "127.0.0.1:0", Join: []string{ord.a.Tier().Addr()},
		GossipInterval: 50 * time.Millisecond, ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		Meta:   cluster.Meta{Region: "ord", Roles: []string{"gateway"}, API: "127.0.0.1:1"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, st)
	must(t, err)
	fake.Start()
	t.Cleanup(func() { fake.Close(); st.Close() })
	waitfor.Until(t, 15*time.Second, "the fake in ord's tier", func() error {
		if n := ord.a.Tier().NumAlive(); n != 2 {
			return fmt.Errorf("ord-1 sees %d members", n)
		}
		return nil
	})
	joined := time.Now()
	// The heartbeat period is stale_after/3 (2s/3 in these tests).
	waitfor.Until(t, 15*time.Second, "a heartbeat of ord written after the fake joined, at ams", func() error {
		at, err := beatAt()
		if err != nil {
			return err
		}
		if !at.After(joined.Add(time.Second)) {
			return fmt.Errorf("ord's last heartbeat at ams is from %s, the fake joined at %s", at.Format(time.StampMilli), joined.Format(time.StampMilli))
		}
		return nil
	})
}
