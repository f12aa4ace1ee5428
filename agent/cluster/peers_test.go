package cluster

import (
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"
)

// TestNoPeersSaveAfterClose: a peers save scheduled by a membership event
// (savePeersSoon coalesces them for a second) is cancelled by Close, not
// left to fire afterwards. A save that fired after Close wrote a stopped
// node's view of its peers into a data dir that a restarted node, a
// restore or a cleanup (BenchmarkCatchUpAfterRestart: "TempDir RemoveAll
// cleanup: directory not empty") had since taken over.
func TestNoPeersSaveAfterClose(t *testing.T) {
	c := newCluster(t)
	a, b, x := c.add("a", nil), c.add("b", nil), c.add("x", nil)
	waitFor(t, 10*time.Second, membersSee(3, a, b, x))
	// x leaves: a schedules a save of its peers (b is still one).
	x.stop()
	waitFor(t, 10*time.Second, func() (bool, string) {
		return a.tier.savePending.Load(), "a has no peers save scheduled after x left"
	})
	a.stop()
	if err := os.Remove(a.cfg.PeersFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	// The scheduled save was due within a second of x leaving. This waits
	// for something that must not happen, so it cannot poll for it: it
	// watches for twice that delay.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(a.cfg.PeersFile); err == nil {
			t.Fatalf("%s was written after its tier was closed", a.cfg.PeersFile)
		}
	}
}
