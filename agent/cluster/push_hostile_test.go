package cluster

import (
	"fmt"
	"io"
	"log"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-state/strata/agent/cluster/plumtree"
	"github.com/strata-state/strata/agent/store"
)

// noDelegate is a memberlist delegate that does nothing.
type noDelegate struct{}

func (noDelegate) NodeMeta(int) []byte                 { return []byte(`{"region":"r1","proto":[1,2]}`) }
func (noDelegate) NotifyMsg([]byte)                    {}
func (noDelegate) GetBroadcasts(o, l int) [][]byte     { return nil }
func (noDelegate) LocalState(bool) []byte              { return nil }
func (noDelegate) MergeRemoteState(buf []byte, _ bool) {}

// A peer that really joins the region (right label, no key) and sends
// malformed push bundles, a change that fails the tier's Accept check,
// and a graft for a huge range: each is refused or bounded, counted, and
// the region keeps replicating.
func TestHostilePushPeerIsRefused(t *testing.T) {
	c := newCluster(t)
	accept := func(cfg *Config) {
		noAntiEntropy(cfg)
		cfg.Accept = func(ch store.Change, from string) error {
			if ch.Table == "forbidden" {
				return fmt.Errorf("table %s is not in the contract", ch.Table)
			}
			return nil
		}
	}
	a, b := c.add("a", accept), c.add("b", accept)
	waitFor(t, 10*time.Second, membersSee(2, a, b))

	mc := memberlist.DefaultLANConfig()
	mc.Name, mc.BindAddr, mc.BindPort = "hostile", "127.0.0.1", 0
	mc.Label = Label("test", Regional, "r1")
	mc.Delegate = noDelegate{}
	mc.Logger = log.New(io.Discard, "", 0)
	h, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown()
	if _, err := h.Join([]string{a.tier.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, membersSee(3, a, b))
	var target *memberlist.Node
	for _, n := range h.Members() {
		if n.Name == "a" {
			target = n
		}
	}
	malformed := func() float64 { return testutil.ToFloat64(a.tier.m.rejected.WithLabelValues(Regional, "malformed")) }
	contract := func() float64 { return testutil.ToFloat64(a.tier.m.rejected.WithLabelValues(Regional, "contract")) }
	m0, c0 := malformed(), contract()

	st := store.Stamp{HLC: 1 << 20, Node: 7}
	row := store.Row{CL: 1, Stamp: st, Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte("x")}}}
	bad := encodePayload(store.Change{Table: "forbidden", Key: "k", Row: row})
	for _, msg := range [][]byte{
		{byte(msgPlum)},
		{byte(msgPlum), 7, 'h', 'o', 's', 't', 'i', 'l', 'e', 0xff, 0xff, 0xff, 0xff, 0x0f},
		encodePlum("hostile", []plumtree.Message{{Kind: plumtree.Push, Items: []plumtree.Item{{ID: plumtree.ID{Origin: "hostile", Epoch: 1, Seq: 1}, Payload: []byte{1, 't', 1, 'k', 0xff}}}}}),
		encodePlum("hostile", []plumtree.Message{{Kind: plumtree.Push, Items: []plumtree.Item{{ID: plumtree.ID{Origin: "hostile", Epoch: 1, Seq: 2}, Payload: bad}}}}),
		encodePlum("hostile", []plumtree.Message{{Kind: plumtree.Graft, Ranges: []plumtree.Range{{Origin: "a", Epoch: 1, From: 1, To: maxChanges - 1}}}}),
	} {
		if err := h.SendReliable(target, msg); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, func() (bool, string) {
		dm, dc := malformed()-m0, contract()-c0
		return dm >= 3 && dc >= 1, fmt.Sprintf("a counted %v malformed and %v contract rejections, want 3 and 1", dm, dc)
	})
	if _, err := a.store.Get("forbidden", "k"); err == nil {
		t.Fatal("a stored the change its Accept check refused")
	}
	a.put(t, "after", "v")
	waitFor(t, 5*time.Second, func() (bool, string) { return converged(a, b) })
}
