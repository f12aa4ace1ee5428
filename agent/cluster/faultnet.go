package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Faults controls the network seen by a set of FaultTransports: it can
// partition nodes, drop a share of packets, and delay packets. It is safe
// for concurrent use; tests change it while the cluster runs.
type Faults struct {
	mu      sync.RWMutex
	blocked map[[2]string]bool // (from, to) addresses that cannot talk
	drop    float64
	delay   time.Duration
}

// NewFaults returns a network with no faults.
func NewFaults() *Faults { return &Faults{blocked: map[[2]string]bool{}} }

// Partition cuts every link between a node of side a and one of side b,
// both ways (addresses as host:port).
func (f *Faults) Partition(a, b []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			f.blocked[[2]string{x, y}] = true
			f.blocked[[2]string{y, x}] = true
		}
	}
}

// Heal removes every partition.
func (f *Faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocked = map[[2]string]bool{}
}

// SetDrop sets the share (0 to 1) of packets dropped at random.
func (f *Faults) SetDrop(rate float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drop = rate
}

// SetDelay delays every packet by d.
func (f *Faults) SetDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// verdict says what happens to a packet from → to.
func (f *Faults) verdict(from, to string) (deliver bool, delay time.Duration) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.blocked[[2]string{from, to}] {
		return false, 0
	}
	if f.drop > 0 && rand.Float64() < f.drop {
		return false, 0
	}
	return true, f.delay
}

// errPartitioned is returned when dialling across a partition.
var errPartitioned = errors.New("cluster: network partitioned (fault injection)")

// FaultTransport is memberlist's real UDP/TCP transport on loopback with
// faults applied on the way out: a partitioned or dropped packet is
// silently lost, and a stream across a partition cannot be dialled.
type FaultTransport struct {
	*memberlist.NetTransport
	addr   string
	faults *Faults
}

var _ memberlist.NodeAwareTransport = (*FaultTransport)(nil)

// NewFaultTransport binds a transport on 127.0.0.1 with a free port.
func NewFaultTransport(f *Faults) (*FaultTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0})
	if err != nil {
		return nil, err
	}
	return &FaultTransport{NetTransport: nt, faults: f,
		addr: net.JoinHostPort("127.0.0.1", fmt.Sprint(nt.GetAutoBindPort()))}, nil
}

// Addr is the host:port the transport is bound to: use it as the node's
// bind address and in Partition.
func (t *FaultTransport) Addr() string { return t.addr }

func (t *FaultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *FaultTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	deliver, delay := t.faults.verdict(t.addr, addr.Addr)
	switch {
	case !deliver:
		return time.Now(), nil
	case delay > 0:
		buf := append([]byte(nil), b...)
		time.AfterFunc(delay, func() { t.NetTransport.WriteToAddress(buf, addr) })
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, addr)
}

func (t *FaultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *FaultTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if deliver, _ := t.faults.verdict(t.addr, addr.Addr); !deliver {
		t.faults.mu.RLock()
		cut := t.faults.blocked[[2]string{t.addr, addr.Addr}]
		t.faults.mu.RUnlock()
		if cut {
			return nil, errPartitioned
		}
	}
	conn, err := t.NetTransport.DialAddressTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &faultConn{Conn: conn, t: t, to: addr.Addr}, nil
}

// faultConn is a dialled stream that a partition cuts: once its link is
// blocked, a write fails and closes it, as a long-lived connection across
// a real partition ends in a write timeout.
type faultConn struct {
	net.Conn
	t  *FaultTransport
	to string
}

func (c *faultConn) Write(b []byte) (int, error) {
	c.t.faults.mu.RLock()
	cut := c.t.faults.blocked[[2]string{c.t.addr, c.to}]
	c.t.faults.mu.RUnlock()
	if cut {
		c.Conn.Close()
		return 0, errPartitioned
	}
	return c.Conn.Write(b)
}
