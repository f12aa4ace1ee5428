package testbin

import (
	"net"
	"testing"
)

// FreeAddr hands out each address once, and each can be bound for the
// protocols asked for.
func TestFreeAddrIsBindableAndNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for i := range 200 {
		udp := i%2 == 0
		addr := FreeAddr(t, udp)
		if seen[addr] {
			t.Fatalf("call %d: %s handed out twice", i, addr)
		}
		seen[addr] = true
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("call %d: %s not free for TCP: %v", i, addr, err)
		}
		if udp {
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				l.Close()
				t.Fatalf("call %d: %s not free for UDP: %v", i, addr, err)
			}
			u.Close()
		}
		l.Close()
	}
}
