package cluster

import (
	"fmt"
	"io"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-state/strata/agent/cluster/plumtree"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// hostilePeer is a bare memberlist node that joins a test cluster with its
// label and sends whatever bytes a test hands it: a peer that misbehaves on
// purpose, over the real wire.
type hostilePeer struct {
	name string
	ml   *memberlist.Memberlist
}

// silentDelegate receives nothing and broadcasts nothing.
type silentDelegate struct{}

func (silentDelegate) NodeMeta(int) []byte                { return []byte(`{"region":"r1"}`) }
func (silentDelegate) NotifyMsg([]byte)                   {}
func (silentDelegate) GetBroadcasts(int, int) [][]byte    { return nil }
func (silentDelegate) LocalState(bool) []byte             { return nil }
func (silentDelegate) MergeRemoteState([]byte, bool)      {}
func (silentDelegate) NotifyAlive(*memberlist.Node) error { return nil }

// addHostile joins a hostile peer to the cluster through node join, and
// waits until join sees it alive.
func (c *testCluster) addHostile(name string, join *testNode) *hostilePeer {
	c.t.Helper()
	ft, err := NewFaultTransport(c.faults)
	if err != nil {
		c.t.Fatal(err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = name
	mc.Label = Label("test", Regional, "r1")
	host, port, _ := splitHostPort(ft.Addr())
	mc.BindAddr, mc.BindPort = host, port
	mc.Transport = ft
	mc.Delegate = silentDelegate{}
	mc.Logger = log.New(io.Discard, "", 0)
	mc.GossipInterval, mc.ProbeInterval, mc.ProbeTimeout = 50*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	ml, err := memberlist.Create(mc)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { ml.Shutdown() })
	if _, err := ml.Join([]string{join.tier.Addr()}); err != nil {
		c.t.Fatal(err)
	}
	waitFor(c.t, 10*time.Second, func() (bool, string) {
		return join.tier.node(name) != nil, fmt.Sprintf("%s does not see %s alive", join.name, name)
	})
	return &hostilePeer{name: name, ml: ml}
}

// send streams raw message bytes to a node, as SendReliable does for strata.
func (h *hostilePeer) send(t *testing.T, to *testNode, msg []byte) {
	t.Helper()
	for _, m := range h.ml.Members() {
		if m.Name == to.name {
			if err := h.ml.SendReliable(m, msg); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("hostile peer does not see %s", to.name)
}

// liveChange is a one-field live row stamped now by node.
func liveChange(node, table, key, value string) store.Change {
	st := store.Stamp{HLC: hlc.New(time.Now().UnixMilli(), 0), Node: store.NodeIDOf(node)}
	return store.Change{Table: table, Key: key, Row: store.Row{CL: 1, Stamp: st,
		Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte(value)}}}}
}

func rejectedCount(n *testNode, reason string) float64 {
	return testutil.ToFloat64(n.tier.m.rejected.WithLabelValues(Regional, reason))
}

// TestOneOverlongKeyRefusesOnlyItsItem: a peer that really joins sends a
// gossip (stream) message and an anti-entropy rows message, each with one
// key over store.MaxKeyLen among good rows. The good rows are merged; the
// bad item is refused, counted, and stored nowhere.
func TestOneOverlongKeyRefusesOnlyItsItem(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", func(cfg *Config) { cfg.SyncInterval = time.Hour })
	evil := c.addHostile("evil", a)
	long := strings.Repeat("k", store.MaxKeyLen+1)

	evil.send(t, a, encodeMessage(&changesMsg{header: header{Type: msgChanges, Sender: evil.name}, Changes: []store.Change{
		liveChange(evil.name, "machines", "g1", "v"),
		liveChange(evil.name, "machines", long, "v"),
		liveChange(evil.name, strings.Repeat("t", store.MaxTableLen+1), "k", "v"),
		liveChange(evil.name, "machines", "g2", "v"),
	}}))
	evil.send(t, a, encodeMessage(&syncRowsMsg{header: header{Type: msgSyncRows, Sender: evil.name}, Session: 1, Rows: []store.Change{
		liveChange(evil.name, "machines", "s1", "v"),
		liveChange(evil.name, "machines", long, "v"),
		liveChange(evil.name, "machines", "s2", "v"),
	}, Final: true}))
	waitFor(t, 10*time.Second, func() (bool, string) {
		var missing []string
		for _, k := range []string{"g1", "g2", "s1", "s2"} {
			if _, err := a.store.Get("machines", k); err != nil {
				missing = append(missing, k)
			}
		}
		return len(missing) == 0, fmt.Sprintf("good rows %v not merged", missing)
	})
	waitFor(t, 5*time.Second, func() (bool, string) {
		n := rejectedCount(a, "too_long")
		return n == 3, fmt.Sprintf("too_long rejections %v, want 3", n)
	})
	if got := a.store.Stats().Rows["machines"]; got != 4 {
		t.Fatalf("a holds %d machines rows, want the 4 good ones", got)
	}
}

// TestAbsurdCausalLengthIsRefused: a peer sends a row at causal length
// 2^64-1 (after which a delete would wrap the length to 0 and the row
// could never be deleted) beside a good row. Only the good row is merged.
func TestAbsurdCausalLengthIsRefused(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", func(cfg *Config) { cfg.SyncInterval = time.Hour })
	evil := c.addHostile("evil", a)
	huge := liveChange(evil.name, "machines", "forever", "v")
	huge.Row.CL = 1<<64 - 1
	evil.send(t, a, encodeMessage(&changesMsg{header: header{Type: msgChanges, Sender: evil.name}, Changes: []store.Change{
		huge, liveChange(evil.name, "machines", "good", "v"),
	}}))
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, err := a.store.Get("machines", "good")
		n := rejectedCount(a, "invalid_row")
		return err == nil && n == 1, fmt.Sprintf("good row: %v; invalid_row rejections %v", err, n)
	})
	if row, err := a.store.GetAny("machines", "forever"); err == nil {
		t.Fatalf("row at causal length 2^64-1 stored: %+v", row)
	}
}

// TestInboxIsBoundedInBytes: a node whose inbox holds 4 KiB receives, from
// a peer that really joined, a message larger than that: it is dropped
// and counted, never queued; a small message after it is merged.
func TestInboxIsBoundedInBytes(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", func(cfg *Config) { cfg.SyncInterval = time.Hour; cfg.InboxBytes = 4 << 10 })
	evil := c.addHostile("evil", a)
	dropped0 := testutil.ToFloat64(a.tier.m.dropped.WithLabelValues(Regional))
	evil.send(t, a, encodeMessage(&changesMsg{header: header{Type: msgChanges, Sender: evil.name}, Changes: []store.Change{
		liveChange(evil.name, "machines", "big", strings.Repeat("v", 8<<10)),
	}}))
	waitFor(t, 10*time.Second, func() (bool, string) {
		d := testutil.ToFloat64(a.tier.m.dropped.WithLabelValues(Regional)) - dropped0
		return d == 1, fmt.Sprintf("%v messages dropped, want 1", d)
	})
	evil.send(t, a, encodeMessage(&changesMsg{header: header{Type: msgChanges, Sender: evil.name}, Changes: []store.Change{
		liveChange(evil.name, "machines", "small", "v"),
	}}))
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, err := a.store.Get("machines", "small")
		return err == nil, fmt.Sprintf("small row: %v", err)
	})
	if _, err := a.store.GetAny("machines", "big"); err == nil {
		t.Fatal("a message over the inbox bound was merged")
	}
	if n := a.tier.inbox.bytes.Load(); n != 0 {
		t.Fatalf("inbox holds %d bytes once idle, want 0", n)
	}
}

// TestRejectionLogIsBounded: a peer that sends malformed messages under
// ever new sender names does not grow the set of rejections already
// logged beyond its bound, and every message is still counted.
func TestRejectionLogIsBounded(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", nil)
	d := (*delegate)(a.tier)
	const n = 3 * maxLogged
	for i := 0; i < n; i++ {
		msg := encodeMessage(&syncDigestMsg{header: header{Type: msgSyncDigest, Sender: fmt.Sprintf("name-%d", i)}})
		d.NotifyMsg(msg[:len(msg)-1]) // truncated: malformed
	}
	if got := rejectedCount(a, "malformed"); got != n {
		t.Fatalf("%v malformed messages counted, want %d", got, n)
	}
	if got := a.tier.logged.size(); got > maxLogged {
		t.Fatalf("log-once set holds %d entries, bound %d", got, maxLogged)
	}
}

// TestInboxBoundsPushedBundles: a pushed bundle goes through the same
// byte bound as gossip and sync messages; the push path's queue alone
// bounded only how many bundles wait, whatever their size.
func TestInboxBoundsPushedBundles(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", func(cfg *Config) { cfg.SyncInterval = time.Hour; cfg.InboxBytes = 4 << 10 })
	dropped0 := testutil.ToFloat64(a.tier.m.dropped.WithLabelValues(Regional))
	payload := encodePayload(liveChange("evil", "machines", "big", strings.Repeat("v", 8<<10)))
	(*delegate)(a.tier).NotifyMsg(encodePlum("evil", []plumtree.Message{{Kind: plumtree.Push,
		Items: []plumtree.Item{{ID: plumtree.ID{Origin: "evil", Epoch: 1, Seq: 1}, Payload: payload}}}}))
	if d := testutil.ToFloat64(a.tier.m.dropped.WithLabelValues(Regional)) - dropped0; d != 1 {
		t.Fatalf("%v bundles dropped, want 1: an 8 KiB bundle was queued past a 4 KiB inbox", d)
	}
	if n := a.tier.inbox.bytes.Load(); n != 0 {
		t.Fatalf("inbox holds %d bytes after refusing the bundle, want 0", n)
	}
}
