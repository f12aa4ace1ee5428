package cluster

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-state/strata/agent/cluster/plumtree"
	"github.com/strata-state/strata/agent/store"
)

// dialCounter counts the streams a node dials.
type dialCounter struct {
	*FaultTransport
	dials atomic.Int64
}

func (d *dialCounter) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return d.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (d *dialCounter) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d.dials.Add(1)
	return d.FaultTransport.DialAddressTimeout(addr, timeout)
}

// Many push batches to a peer travel on one long-lived stream, not one
// connection each; on a keyed tier, sealed with the tier's key.
func TestPushBatchesShareOneStream(t *testing.T) {
	key := []byte("0123456789abcdef")
	c := newCluster(t)
	var dc *dialCounter
	a := c.add("a", func(cfg *Config) {
		noAntiEntropy(cfg)
		cfg.Keys = [][]byte{key}
		dc = &dialCounter{FaultTransport: cfg.Transport.(*FaultTransport)}
		cfg.Transport = dc
	})
	b := c.add("b", func(cfg *Config) { noAntiEntropy(cfg); cfg.Keys = [][]byte{key} })
	waitFor(t, 10*time.Second, membersSee(2, a, b))
	a.put(t, "first", "v")
	waitFor(t, 5*time.Second, func() (bool, string) { return converged(a, b) })

	batches := func() float64 { return testutil.ToFloat64(a.tier.m.bcast.batches.WithLabelValues(Regional, "sent")) }
	b0, d0 := batches(), dc.dials.Load()
	for i := 0; i < 60; i++ {
		a.put(t, fmt.Sprintf("k%02d", i), "v")
		time.Sleep(3 * time.Millisecond) // longer than the batch delay: one batch each
	}
	waitFor(t, 5*time.Second, func() (bool, string) { return converged(a, b) })
	sent, dials := batches()-b0, dc.dials.Load()-d0
	if sent < 30 {
		t.Fatalf("a sent %v push batches for 60 spaced writes, want at least 30 (the test needs many batches)", sent)
	}
	// memberlist may dial a push/pull of its own meanwhile.
	if dials > 3 {
		t.Errorf("a dialled %d streams for %v push batches, want them on one stream", dials, sent)
	}
	if got := arrivals(b.tier); got[pathPush] < 30 {
		t.Errorf("b's rows arrived %v, want most of the 60 by push", got)
	}
}

// A client that opens a push stream to a keyed node without the key, or
// with another tier's label, is refused and counted, and nothing it sends
// is merged; the same stream sealed with the tier's key and label is
// accepted (so the refusals are the key's and the label's doing).
func TestPushStreamNeedsKeyAndLabel(t *testing.T) {
	key := []byte("0123456789abcdef")
	c := newCluster(t)
	a := c.add("a", func(cfg *Config) { noAntiEntropy(cfg); cfg.Keys = [][]byte{key} })
	kr, err := memberlist.NewKeyring([][]byte{key}, key)
	if err != nil {
		t.Fatal(err)
	}
	label := Label("test", Regional, "r1")
	decrypt := func() float64 {
		a.tier.decrypt.mu.Lock()
		defer a.tier.decrypt.mu.Unlock()
		n := uint64(0)
		for _, v := range a.tier.decrypt.peers {
			n += v
		}
		return float64(n)
	}
	labels := func() float64 { return testutil.ToFloat64(a.tier.m.rejected.WithLabelValues(Regional, "label")) }

	for _, tc := range []struct {
		name     string
		seal     *pushSealer
		counter  func() float64
		accepted bool
	}{
		{"no key", &pushSealer{label: label}, decrypt, false},
		{"other label", &pushSealer{label: Label("test", Regional, "r2"), kr: kr}, labels, false},
		{"key and label", &pushSealer{label: label, kr: kr}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "from-" + tc.name
			var before float64
			if tc.counter != nil {
				before = tc.counter()
			}
			st := store.Stamp{HLC: 1 << 20, Node: 7}
			row := store.Row{CL: 1, Stamp: st, Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte("x")}}}
			push := encodePlum("outsider", []plumtree.Message{{Kind: plumtree.Push, Items: []plumtree.Item{
				{ID: plumtree.ID{Origin: "outsider-" + tc.name, Epoch: 1, Seq: 1}, Payload: encodePayload(store.Change{Table: "machines", Key: key, Row: row})}}}})
			conn, err := net.Dial("tcp", a.tier.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			hello, _ := tc.seal.frame([]byte(pushStreamHello))
			frame, _ := tc.seal.frame(push)
			start, err := memberlist.AddLabelHeaderToPacket(append([]byte{byte(msgPushStream)}, hello...), tc.seal.label)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(append(start, frame...)); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			answer, err := readFrame(conn)
			if !tc.accepted {
				if err == nil {
					t.Fatalf("a answered the push stream (%d bytes), want it closed", len(answer))
				}
				waitFor(t, 5*time.Second, func() (bool, string) {
					return tc.counter() > before, "the refusal was not counted"
				})
				if _, err := a.store.Get("machines", key); err == nil {
					t.Fatal("a merged a change from a refused push stream")
				}
				return
			}
			if err != nil {
				t.Fatalf("a refused a push stream with the key and label: %v", err)
			}
			waitFor(t, 5*time.Second, func() (bool, string) {
				_, err := a.store.Get("machines", key)
				return err == nil, fmt.Sprintf("the pushed change is not on a: %v", err)
			})
		})
	}
}

// plumRecorder is a memberlist delegate that records push bundles, as a
// node of an older build (push by SendReliable only) receives them.
type plumRecorder struct {
	noDelegate
	mu   sync.Mutex
	msgs int
}

func (r *plumRecorder) NotifyMsg(b []byte) {
	if len(b) > 0 && msgType(b[0]) == msgPlum {
		r.mu.Lock()
		r.msgs++
		r.mu.Unlock()
	}
}

func (r *plumRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs
}

// A peer that speaks the push protocol but not push streams (an older
// build: memberlist refuses the stream's type byte) is sent its bundles
// by memberlist streams instead.
func TestPeerWithoutPushStreamsGetsBundles(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", noAntiEntropy)
	rec := &plumRecorder{}
	mc := memberlist.DefaultLANConfig()
	mc.Name, mc.BindAddr, mc.BindPort = "older", "127.0.0.1", 0
	mc.Label = Label("test", Regional, "r1")
	mc.Delegate = rec
	mc.Logger = log.New(io.Discard, "", 0)
	h, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown()
	if _, err := h.Join([]string{a.tier.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		n := testutil.ToFloat64(a.tier.m.bcast.peers.WithLabelValues(Regional, "eager"))
		return n == 1, "the older node is not in a's push set yet"
	})
	for i := 0; i < 5; i++ {
		a.put(t, fmt.Sprintf("k%d", i), "v")
	}
	waitFor(t, 5*time.Second, func() (bool, string) {
		n := rec.count()
		return n >= 2, fmt.Sprintf("the older node received %d push bundles, want its hello and the pushes", n)
	})
}

// FuzzPushFrame: whatever a peer writes on a push stream, reading and
// opening its frames returns a frame or an error, never a panic, and a
// sealed frame opens to what was sealed.
func FuzzPushFrame(f *testing.F) {
	key := []byte("0123456789abcdef")
	kr, err := memberlist.NewKeyring([][]byte{key}, key)
	if err != nil {
		f.Fatal(err)
	}
	keyed := &pushSealer{label: "l", kr: kr}
	plain := &pushSealer{label: "l"}
	good, _ := keyed.frame([]byte("bundle"))
	f.Add(good)
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0, 0, 3, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			body, err := readFrame(r)
			if err != nil {
				break
			}
			keyed.open(body)
			plain.open(body)
		}
		if sealed, err := keyed.frame(b); err != nil {
			t.Fatal(err)
		} else if body, err := readFrame(bytes.NewReader(sealed)); err != nil {
			t.Fatal(err)
		} else if got, err := keyed.open(body); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("sealed frame opens to %q, %v; want %q", got, err, b)
		}
	})
}
