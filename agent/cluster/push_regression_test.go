package cluster

import (
	"fmt"
	"testing"
	"time"
)

// Sustained writes must reach every node by the broadcast path, without
// anti-entropy. Before the push path, every change rode memberlist's
// piggyback gossip (about 1.4 KB a round): at a few hundred writes/s the
// bounded queue dropped changes and only anti-entropy delivered them, so
// with anti-entropy off this test timed out.
func TestSustainedWritesArriveWithoutAntiEntropy(t *testing.T) {
	c := newCluster(t)
	a, b, x := c.add("a", noAntiEntropy), c.add("b", noAntiEntropy), c.add("x", noAntiEntropy)
	waitFor(t, 10*time.Second, membersSee(3, a, b, x))
	const writes = 1500 // 3 s at 500 writes/s
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < writes; i++ {
		<-tick.C
		a.put(t, fmt.Sprintf("m-%05d", i), "host-ord-rack17-unit-42.internal.example.net", "10.17.42.199", "web")
	}
	waitFor(t, 5*time.Second, func() (bool, string) {
		got := x.store.Stats().Rows["machines"]
		return got == writes, fmt.Sprintf("x holds %d of %d rows", got, writes)
	})
}
