package tierbench

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// wire counts the gossip bytes of one topology: all of them, and those
// between nodes of different regions. A byte is counted once: a packet by
// its sender, a stream (both directions) by the node that dialled it,
// since only the dialler knows which peer is at the other end.
type wire struct {
	total, cross atomic.Int64
	mu           sync.RWMutex
	region       map[string]string // transport address → region
}

func newWire() *wire { return &wire{region: map[string]string{}} }

// register records that the transport at addr belongs to region.
func (w *wire) register(addr, region string) {
	w.mu.Lock()
	w.region[addr] = region
	w.mu.Unlock()
}

// crosses reports whether bytes from region to the transport at addr
// cross regions. An address no node registered (none in a bench) counts
// as crossing, so that nothing is hidden.
func (w *wire) crosses(from, addr string) bool {
	w.mu.RLock()
	to, ok := w.region[addr]
	w.mu.RUnlock()
	return !ok || to != from
}

func (w *wire) add(cross bool, n int) {
	if n <= 0 {
		return
	}
	w.total.Add(int64(n))
	if cross {
		w.cross.Add(int64(n))
	}
}

// countingTransport is memberlist's own UDP/TCP transport, counting what
// its node sends by peer region.
type countingTransport struct {
	*memberlist.NetTransport
	w      *wire
	region string
	addr   string
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

// newTransport binds a transport on 127.0.0.1 with a free port for a
// node of region.
func newTransport(w *wire, region string) (*countingTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0})
	if err != nil {
		return nil, err
	}
	t := &countingTransport{NetTransport: nt, w: w, region: region,
		addr: net.JoinHostPort("127.0.0.1", itoa(nt.GetAutoBindPort()))}
	w.register(t.addr, region)
	return t, nil
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.w.add(t.w.crosses(t.region, addr), len(b))
	return t.NetTransport.WriteTo(b, addr)
}

func (t *countingTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	t.w.add(t.w.crosses(t.region, addr.Addr), len(b))
	return t.NetTransport.WriteToAddress(b, addr)
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, w: t.w, cross: t.w.crosses(t.region, addr)}, nil
}

func (t *countingTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialAddressTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, w: t.w, cross: t.w.crosses(t.region, addr.Addr)}, nil
}

// countingConn counts a dialled stream's bytes in both directions.
type countingConn struct {
	net.Conn
	w     *wire
	cross bool
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.w.add(c.cross, n)
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.w.add(c.cross, n)
	return n, err
}

func itoa(i int) string { return strconv.Itoa(i) }
