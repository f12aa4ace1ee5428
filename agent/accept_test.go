package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/waitfor"
)

// fieldsRow is a live row whose fields are given as number → wire bytes.
func fieldsRow(fields map[uint32]string) store.Row {
	st := store.Stamp{HLC: hlc.New(time.Now().UnixMilli(), 0), Node: 5}
	r := store.Row{CL: 1, Stamp: st}
	for num := uint32(1); num < 32; num++ {
		if v, ok := fields[num]; ok {
			r.Fields = append(r.Fields, store.Field{Num: num, Stamp: st, Value: []byte(v)})
		}
	}
	return r
}

// TestAcceptRegionalChecksFieldsAndKey runs the receive-side check on the
// changes a peer could send: each is refused for the reason the API would
// refuse the same write, or accepted as the API would accept it.
func TestAcceptRegionalChecksFieldsAndKey(t *testing.T) {
	ctx := context.Background()
	fleet, err := contracts.Compile(ctx, contracts.Example, contracts.ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	shop, err := contracts.CompileDir(ctx, filepath.Join("..", "testdata", "contracts", "good"), []string{"shop/v1/shop.proto"})
	if err != nil {
		t.Fatal(err)
	}
	const stockKey = "s1/3/KIND_BOOK/true/42"
	for _, tc := range []struct {
		name     string
		c        *contracts.Contract
		table    string
		key      string
		fields   map[uint32]string
		deleted  bool
		wantRule string // "" accepted; else the rejection reason
	}{
		{name: "whole valid row", c: fleet, table: "machines", key: "m1",
			fields: map[uint32]string{1: "\x0a\x02m1", 2: "\x12\x03web", 3: "\x18\x01", 4: "", 5: "", 6: "", 7: ""}},
		{name: "patch without the key field", c: fleet, table: "machines", key: "m1",
			fields: map[uint32]string{4: "\x20\x01"}},
		{name: "key field differs from the key", c: fleet, table: "machines", key: "m1",
			fields: map[uint32]string{1: "\x0a\x02m2", 2: "\x12\x03web"}, wantRule: "key"},
		{name: "key field carried empty", c: fleet, table: "machines", key: "m1",
			fields: map[uint32]string{1: "", 2: "\x12\x03web"}, wantRule: "key"},
		{name: "key breaks the key field's rules", c: fleet, table: "machines", key: "Not A Machine",
			fields: map[uint32]string{4: "\x20\x01"}, wantRule: "validate"},
		{name: "value breaks its field's rules", c: fleet, table: "machines", key: "m1",
			fields: map[uint32]string{6: "\x32\x03abc"}, wantRule: "validate"},
		{name: "value of the wrong type", c: fleet, table: "machines", key: "m1",
			fields: map[uint32]string{2: "\x10\x01"}, wantRule: "decode"},
		{name: "rule on an absent field is the writer's", c: fleet, table: "machines", key: "m1",
			fields: map[uint32]string{5: "\x2a\x02h1"}},
		{name: "tombstone of any key", c: fleet, table: "machines", key: "Not A Machine", deleted: true},
		{name: "unknown table", c: fleet, table: "secrets", key: "m1",
			fields: map[uint32]string{1: "\x0a\x02m1"}, wantRule: "unknown_table"},
		{name: "composite key, fields absent", c: shop, table: "stock", key: stockKey,
			fields: map[uint32]string{10: "\x52\x01x"}},
		{name: "composite key, fields agree", c: shop, table: "stock", key: stockKey,
			fields: map[uint32]string{1: "\x0a\x02s1", 2: "\x10\x03", 5: "\x28\x2a"}},
		{name: "composite key, one field differs", c: shop, table: "stock", key: stockKey,
			fields: map[uint32]string{2: "\x10\x04"}, wantRule: "key"},
		{name: "composite key, non-canonical part", c: shop, table: "stock", key: "s1/03/KIND_BOOK/true/42",
			fields: map[uint32]string{10: "\x52\x01x"}, wantRule: "key"},
		{name: "composite key, part of the wrong type", c: shop, table: "stock", key: "s1/x/KIND_BOOK/true/42",
			fields: map[uint32]string{10: "\x52\x01x"}, wantRule: "key"},
		{name: "composite key, too few parts", c: shop, table: "stock", key: "s1/3",
			fields: map[uint32]string{10: "\x52\x01x"}, wantRule: "key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := store.Change{Table: tc.table, Key: tc.key, Row: fieldsRow(tc.fields)}
			if tc.deleted {
				ch.Row = store.Row{CL: 2, Stamp: ch.Row.Stamp}
			}
			err := acceptRegional(tc.c)(ch, "peer")
			var r interface{ Reason() string }
			switch {
			case tc.wantRule == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantRule != "" && err == nil:
				t.Fatalf("accepted, want refused for %s", tc.wantRule)
			case tc.wantRule != "" && (!errors.As(err, &r) || r.Reason() != tc.wantRule):
				t.Fatalf("refused with %v, want reason %s", err, tc.wantRule)
			}
		})
	}
}

// TestHostilePeerCannotStoreRowsTheAPIRefuses: a peer that really joins an
// agent's region gossips rows it wrote straight into its own store (no
// contract on its side): a key field that differs from the key, a value
// that breaks its field's rule, a row under a key the key field's rules
// refuse. The agent stores none of them, counts each, and stores the good
// row that came with them.
func TestHostilePeerCannotStoreRowsTheAPIRefuses(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, t.TempDir())
	a, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ContractFS: contracts.Example})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	st, err := store.Open(filepath.Join(t.TempDir(), "evil.db"), store.Options{Node: "evil", Clock: hlc.NewClock(nil, time.Minute), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	evil, err := cluster.New(cluster.Config{Node: "evil", Tier: cluster.Regional, Cluster: cfg.Cluster, Region: cfg.Regional.Region,
		Bind: "127.0.0.1:0", Join: []string{a.Tier().Addr()}, Meta: cluster.Meta{Region: cfg.Regional.Region},
		GossipInterval: 50 * time.Millisecond, SyncInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { evil.Close() })
	evil.Start()
	waitfor.Until(t, 10*time.Second, "evil joins", func() error {
		if n := a.Tier().NumAlive(); n != 2 {
			return fmt.Errorf("agent sees %d members", n)
		}
		return nil
	})
	put := func(key string, fields map[uint32]string) {
		t.Helper()
		m := store.Mutation{Op: store.OpPut, Table: "machines", Key: key}
		for _, f := range fieldsRow(fields).Fields {
			m.Fields = append(m.Fields, store.FieldValue{Num: f.Num, Value: f.Value})
		}
		if _, err := st.Apply(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	put("forged", map[uint32]string{1: "\x0a\x05other", 2: "\x12\x03web", 3: "\x18\x01"})
	put("bad-ip", map[uint32]string{1: "\x0a\x06bad-ip", 2: "\x12\x03web", 3: "\x18\x01", 6: "\x32\x03abc"})
	put("Bad Key", map[uint32]string{4: "\x20\x01"})
	put("good", map[uint32]string{1: "\x0a\x04good", 2: "\x12\x03web", 3: "\x18\x01"})

	waitfor.Until(t, 10*time.Second, "good row arrives, bad ones counted", func() error {
		if _, err := a.Store().Get("machines", "good"); err != nil {
			return fmt.Errorf("good row: %v", err)
		}
		metrics := scrape(t, a.Addr())
		for _, reason := range []string{"key", "validate"} {
			if !strings.Contains(metrics, fmt.Sprintf(`strata_gossip_rejected_total{reason=%q,tier="regional"}`, reason)) {
				return fmt.Errorf("no rejection counted for %s", reason)
			}
		}
		return nil
	})
	for _, key := range []string{"forged", "bad-ip", "Bad Key"} {
		if row, err := a.Store().GetAny("machines", key); err == nil {
			t.Errorf("row %q from the hostile peer was stored: %+v", key, row)
		}
	}
}

// scrape reads the agent's /metrics.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
