package agent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/internal/waitfor"
)

// fakeGateway is a member of a region's regional tier that says it is a
// gateway, with an API that records what it is sent and answers global
// reads with whatever rows it is given.
type fakeGateway struct {
	mu      sync.Mutex
	headers []http.Header
	rows    []api.SignedRow
}

func (f *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.headers = append(f.headers, r.Header.Clone())
	rows := f.rows
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(api.SignedRows{Rows: rows})
}

func (f *fakeGateway) set(rows ...store.Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rows = nil
	for _, ch := range rows {
		f.rows = append(f.rows, api.SignedRow{Table: ch.Table, Key: ch.Key, Row: store.AppendRow(nil, ch.Row)})
	}
}

func (f *fakeGateway) seen() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header{}, f.headers...)
}

// TestForwardedReadsKeepTheTokenAndVerifyTheAnswer runs region ord with a
// gateway and a node that is not one, holding the regions' public keys.
// The node answers global reads through the gateway, authenticated as a
// node of the region, never with the client's token. Then a fake member
// of ord that claims to be a gateway takes the real one's place: it never
// receives the token, and every bad answer it gives (unsigned, altered,
// signed by another region, failing the contract with a regional value in
// it) is refused with a 502 that says why.
func TestForwardedReadsKeepTheTokenAndVerifyTheAnswer(t *testing.T) {
	ctx := context.Background()
	k, regionalKey, gw, plain := forwardingRegion(t)

	must(t, gw.client.PutJSON(ctx, "/v1/global/app_placements/web", []byte(`{"app":"web","serving":true}`), nil))
	waitfor.Until(t, 15*time.Second, "a global read through the non-gateway", func() error {
		p, err := placement(ctx, plain.client, "web")
		if err != nil {
			return err
		}
		if !strings.Contains(p["ord"], `"serving":true`) {
			return fmt.Errorf("ord-9 answers %v", p)
		}
		return nil
	})
	var list api.GlobalList
	must(t, plain.client.GetJSON(ctx, "/v1/global/app_placements", &list))
	if len(list.Entries) != 1 || list.Entries[0].Key != "web" {
		t.Fatalf("list through the non-gateway: %+v", list)
	}
	// A signed read without the node credential or the token is refused.
	resp, err := http.Get("http://" + gw.a.Addr() + "/v1/global/app_placements/web?format=signed")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("signed read with no credential: %d", resp.StatusCode)
	}

	// The real gateway goes; a fake member of ord says it is one.
	gw.stop()
	fake := &fakeGateway{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{Handler: fake}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	joinFakeGateway(t, "ord-0", plain.a.Tier().Addr(), ln.Addr().String(), regionalKey)
	clock := hlc.NewClock(nil, time.Minute)
	stamp := store.Stamp{HLC: clock.Now(), Node: store.NodeIDOf("ord-0")}
	signed := func(region, key string, value []byte, s *global.Signer) store.Change {
		rec := global.Stored{Record: global.Record{Name: "app_placements", Region: s.Region, Key: key, Value: value}, CL: 1, Stamp: stamp}
		one := []global.Stored{rec}
		must(t, s.Sign(one))
		one[0].Region = region
		return one[0].Change()
	}
	good := signed("ord", "web", placementValue("web", true), k.signers["ord"])
	altered := good
	altered.Row.Fields = append([]store.Field{}, good.Row.Fields...)
	altered.Row.Fields[0].Value = placementValue("web", false)
	unsigned := good
	unsigned.Row.Fields = good.Row.Fields[:1]
	// A record with a field the contract lacks (#9, a machine's address),
	// signed by ord's stolen key: the signature holds, the contract not.
	leaky := signed("ord", "web", append(placementValue("web", true), 0x4a, 8, '1', '0', '.', '1', '.', '2', '.', '3'), k.signers["ord"])
	for name, tc := range map[string]struct {
		rows []store.Change
		why  string
	}{
		"unsigned":            {[]store.Change{unsigned}, "[unsigned]"},
		"altered":             {[]store.Change{altered}, "[signature]"},
		"another region":      {[]store.Change{signed("ord", "web", placementValue("web", true), k.signers["ams"])}, "[wrong_region]"},
		"breaks the contract": {[]store.Change{leaky}, "[unknown_field]"},
		"not asked for":       {[]store.Change{signed("ord", "api", placementValue("api", true), k.signers["ord"])}, "not asked for"},
	} {
		fake.set(tc.rows...)
		waitfor.Until(t, 15*time.Second, name+": answer refused", func() error {
			p, err := placement(ctx, plain.client, "web")
			var e *api.Error
			if !errors.As(err, &e) {
				return fmt.Errorf("ord-9 served %v (err %v)", p, err)
			}
			if e.Status != http.StatusBadGateway || !strings.Contains(e.Message, tc.why) {
				return fmt.Errorf("ord-9 answered %d %q, want a 502 naming %q", e.Status, e.Message, tc.why)
			}
			return nil
		})
	}
	if len(fake.seen()) == 0 {
		t.Fatal("the fake gateway was never asked")
	}
	for _, h := range fake.seen() {
		for name, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, "client-secret") {
					t.Fatalf("the client's token reached the fake gateway in header %s", name)
				}
			}
		}
	}
}

// joinFakeGateway joins region ord's regional tier at join as a member
// named node that says it is a gateway with its API at addr.
func joinFakeGateway(t *testing.T, node, join, addr string, key []byte) {
	t.Helper()
	clock := hlc.NewClock(nil, time.Minute)
	st, err := store.Open(filepath.Join(t.TempDir(), "regional.db"), store.Options{Node: node, Clock: clock, NoSync: true})
	must(t, err)
	tier, err := cluster.New(cluster.Config{
		Node: node, Tier: cluster.Regional, Cluster: "test", Region: "ord",
		Bind: "127.0.0.1:0", Join: []string{join}, Keys: [][]byte{key},
		GossipInterval: 50 * time.Millisecond, ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		Meta:   cluster.Meta{Region: "ord", Roles: []string{"gateway"}, API: addr},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, st)
	must(t, err)
	tier.Start()
	t.Cleanup(func() { tier.Close(); st.Close() })
}

// TestForwardedReadsPassOverDeadAndLyingGateways runs region ord with a
// real gateway (ord-1), a node that is not one (ord-9), and two members
// that claim to be gateways and sort before the real one: ord-0a, whose
// API address refuses connections, and ord-0b, which answers with an
// unsigned record. ord-9's reads keep being answered, by ord-1. Then
// ord-1 goes and ord-0b answers with a record and heartbeat that ord
// signed a minute ago: ord-9 serves them marked stale (stale_after is
// 30 s by default), although ord-9 has no [global] section of its own.
func TestForwardedReadsPassOverDeadAndLyingGateways(t *testing.T) {
	ctx := context.Background()
	k, regionalKey, gw, plain := forwardingRegion(t)
	must(t, gw.client.PutJSON(ctx, "/v1/global/app_placements/web", []byte(`{"app":"web","serving":true}`), nil))

	// ord-0a: nothing listens at its API address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	deadAPI := ln.Addr().String()
	ln.Close()
	joinFakeGateway(t, "ord-0a", plain.a.Tier().Addr(), deadAPI, regionalKey)
	// ord-0b: answers with whatever it is given, an unsigned record first.
	fake := &fakeGateway{}
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{Handler: fake}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	joinFakeGateway(t, "ord-0b", plain.a.Tier().Addr(), ln.Addr().String(), regionalKey)
	old := store.Stamp{HLC: hlc.New(time.Now().Add(-time.Minute).UnixMilli(), 0), Node: store.NodeIDOf("ord-1")}
	signed := func(rec global.Record) store.Change {
		one := []global.Stored{{Record: rec, CL: 1, Stamp: old}}
		must(t, k.signers["ord"].Sign(one))
		return one[0].Change()
	}
	web := signed(global.Record{Name: "app_placements", Region: "ord", Key: "web", Value: placementValue("web", true)})
	unsigned := web
	unsigned.Row.Fields = web.Row.Fields[:1]
	fake.set(unsigned)

	waitfor.Until(t, 15*time.Second, "ord-9 to see ord-0a, ord-0b and ord-1 as gateways", func() error {
		if gws := plain.a.gatewayAPIs(); len(gws) != 3 {
			return fmt.Errorf("gateways %v", gws)
		}
		return nil
	})
	for i := range 5 {
		p, err := placement(ctx, plain.client, "web")
		if err != nil {
			t.Fatalf("read %d through ord-9 with two bad gateways and a good one: %v", i, err)
		}
		if !strings.Contains(p["ord"], `"serving":true`) || !strings.HasSuffix(p["ord"], "stale=false") {
			t.Fatalf("read %d through ord-9: %v", i, p)
		}
	}

	gw.stop()
	beat := signed(global.Record{Name: global.HeartbeatTable, Region: "ord", Key: "ord", Value: []byte("ord-1")})
	fake.set(web, beat)
	waitfor.Until(t, 15*time.Second, "ord-9 to serve ord-0b's minute-old record as stale", func() error {
		p, err := placement(ctx, plain.client, "web")
		if err != nil {
			return err
		}
		if !strings.Contains(p["ord"], `"serving":true`) || !strings.HasSuffix(p["ord"], "stale=true") {
			return fmt.Errorf("ord-9 answers %v", p)
		}
		return nil
	})
}

// forwardingRegion starts region ord, with a regional keyring: a gateway
// ord-1 and ord-9, a node that is not one and holds the regions' public
// keys. It returns the keys, the regional gossip key, and the two agents.
func forwardingRegion(t *testing.T) (k *trustKeys, regionalKey []byte, gw, plain *runningAgent) {
	t.Helper()
	fsys := trustContract(t)
	k = newTrustKeys(t, "ord", "ams")
	regionalKey = make([]byte, 32)
	rand.Read(regionalKey)
	regionalKeyring := filepath.Join(t.TempDir(), "regional.key")
	must(t, os.WriteFile(regionalKeyring, []byte(base64.StdEncoding.EncodeToString(regionalKey)+"\n"), 0o600))

	gwCfg := trustGateway(t, "ord-1", "ord", k, nil, nil)
	gwCfg.Regional.Keyring = regionalKeyring
	gw = startWith(t, gwCfg, fsys)
	plainCfg := trustGateway(t, "ord-9", "ord", k, []string{gw.a.Tier().Addr()}, nil)
	plainCfg.Global, plainCfg.Reducers = nil, nil
	plainCfg.Regional.Keyring = regionalKeyring
	plainCfg.API.TrustedRegions = k.trusted
	plain = startWith(t, plainCfg, fsys)
	return k, regionalKey, gw, plain
}
