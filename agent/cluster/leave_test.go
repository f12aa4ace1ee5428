package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A node that restarts within a minute of stopping hears its own leave
// announcement again: its peers still hold their relays of it. That is
// normal, not a malformed message from a peer.
func TestRestartIgnoresOwnLeaveAnnouncement(t *testing.T) {
	c := newCluster(t)
	a, b := c.add("a", nil), c.add("b", nil)
	waitFor(t, 10*time.Second, membersSee(2, a, b))
	b.tier.savePeers()
	dir := b.dir
	b.stop() // announces its leave; a relays the announcement
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, ok := a.tier.leaving.Load("b")
		return ok, "a has not heard b's leave announcement"
	})
	b2 := c.start("b", dir, nil)
	received := func() float64 { return testutil.ToFloat64(b2.tier.m.received.WithLabelValues(Regional, "leaving")) }
	waitFor(t, 10*time.Second, func() (bool, string) {
		return received() > 0, fmt.Sprintf("restarted b received %v leave announcements, want its own relayed back", received())
	})
	if n := testutil.ToFloat64(b2.tier.m.rejected.WithLabelValues(Regional, reasonMalformed)); n != 0 {
		t.Fatalf("restarted b rejected %v messages as malformed: its own leave announcement", n)
	}
	if _, ok := b2.tier.leaving.Load("b"); ok {
		t.Fatal("b recorded its own leave")
	}
}
