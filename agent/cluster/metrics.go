package cluster

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a tier's Prometheus metrics, all prefixed strata_. One
// Metrics may serve several tiers (they are labelled by tier).
type Metrics struct {
	rejected *prometheus.CounterVec // tier, reason
	received *prometheus.CounterVec // tier, type
	dropped  *prometheus.CounterVec // tier
	bytesIn  *prometheus.CounterVec // tier, kind
	bytesOut *prometheus.CounterVec // tier, kind
	syncs    *prometheus.CounterVec // tier, result
	synced   *prometheus.CounterVec // tier, direction
	bcast    *broadcastMetrics

	decryptFailed *prometheus.CounterVec // tier, peer

	// Wire byte totals, for benchmarks and the demo: all tiers, and per
	// tier (index 0 regional, 1 global).
	wireIn, wireOut atomic.Int64
	tierIn, tierOut [2]atomic.Int64
}

func tierIndex(tier string) int {
	if tier == Global {
		return 1
	}
	return 0
}

// TierWireBytes returns the bytes one tier sent and received on the wire.
func (m *Metrics) TierWireBytes(tier string) (sent, received int64) {
	i := tierIndex(tier)
	return m.tierOut[i].Load(), m.tierIn[i].Load()
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_gossip_rejected_total",
			Help: "Messages and changes from peers refused, by tier and reason."}, []string{"tier", "reason"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_gossip_received_total",
			Help: "Strata messages received from peers, by tier and type."}, []string{"tier", "type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_gossip_dropped_total",
			Help: "Broadcasts pruned from a full queue, own changes past the push queue bound, and received messages dropped on a full inbox; anti-entropy repairs them."}, []string{"tier"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_wire_received_bytes_total",
			Help: "Bytes received by the tier's transport (packets and streams)."}, []string{"tier", "kind"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_wire_sent_bytes_total",
			Help: "Bytes sent by the tier's transport (packets and streams)."}, []string{"tier", "kind"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_sync_exchanges_total",
			Help: "Anti-entropy exchanges started by this node, by result (in_sync, repaired, failed, too_large: a message over the limit a peer decodes, not sent)."}, []string{"tier", "result"}),
		synced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_sync_rows_total",
			Help: "Rows shipped by anti-entropy, by direction (sent, received), and rows an exchange left to the push path as still on their way (left_to_push)."}, []string{"tier", "direction"}),
		decryptFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_gossip_decrypt_failed_total",
			Help: "Packets and streams no key of this node's keyring could decrypt, by tier and sending member (unknown when not recognised)."}, []string{"tier", "peer"}),
	}
	m.bcast = newBroadcastMetrics(reg)
	if reg != nil {
		reg.MustRegister(m.decryptFailed)
		reg.MustRegister(m.rejected, m.received, m.dropped, m.bytesIn, m.bytesOut, m.syncs, m.synced)
	}
	return m
}

// WireBytes returns the bytes sent and received on the wire by the tiers
// using m since it was created.
func (m *Metrics) WireBytes() (sent, received int64) { return m.wireOut.Load(), m.wireIn.Load() }

// countingTransport counts the bytes a memberlist transport moves, both
// ways, packets and streams.
type countingTransport struct {
	memberlist.NodeAwareTransport
	m       *Metrics
	tier    string
	packets chan *memberlist.Packet
	streams chan net.Conn
}

// newCountingTransport wraps t. Once stop is closed, packets and streams
// still arriving are discarded (memberlist no longer reads them, and t
// must not block on its own channels or its Shutdown never returns); the
// forwarding goroutines end when done is closed, after t is shut down.
func newCountingTransport(t memberlist.NodeAwareTransport, m *Metrics, tier string, stop, done <-chan struct{}) *countingTransport {
	c := &countingTransport{NodeAwareTransport: t, m: m, tier: tier,
		packets: make(chan *memberlist.Packet), streams: make(chan net.Conn)}
	go func() {
		for {
			select {
			case p := <-t.PacketCh():
				c.count(false, "packet", len(p.Buf))
				select {
				case c.packets <- p:
				case <-stop:
				}
			case <-done:
				return
			}
		}
	}()
	go func() {
		for {
			select {
			case conn := <-t.StreamCh():
				select {
				case c.streams <- countingConn{conn, c}:
				case <-stop:
					conn.Close()
				}
			case <-done:
				return
			}
		}
	}()
	return c
}

func (c *countingTransport) StreamCh() <-chan net.Conn { return c.streams }

func (c *countingTransport) count(out bool, kind string, n int) {
	if n <= 0 {
		return
	}
	if out {
		c.m.tierOut[tierIndex(c.tier)].Add(int64(n))
		c.m.wireOut.Add(int64(n))
		c.m.bytesOut.WithLabelValues(c.tier, kind).Add(float64(n))
	} else {
		c.m.tierIn[tierIndex(c.tier)].Add(int64(n))
		c.m.wireIn.Add(int64(n))
		c.m.bytesIn.WithLabelValues(c.tier, kind).Add(float64(n))
	}
}

func (c *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	c.count(true, "packet", len(b))
	return c.NodeAwareTransport.WriteTo(b, addr)
}

func (c *countingTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	c.count(true, "packet", len(b))
	return c.NodeAwareTransport.WriteToAddress(b, addr)
}

func (c *countingTransport) PacketCh() <-chan *memberlist.Packet { return c.packets }

func (c *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := c.NodeAwareTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return countingConn{conn, c}, nil
}

func (c *countingTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	conn, err := c.NodeAwareTransport.DialAddressTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return countingConn{conn, c}, nil
}

// countingConn counts the bytes of one stream, both directions.
type countingConn struct {
	net.Conn
	c *countingTransport
}

func (cc countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.count(false, "stream", n)
	return n, err
}

func (cc countingConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.count(true, "stream", n)
	return n, err
}
