package cluster

import (
	"encoding/json"
	"os"
	"slices"
	"time"
)

// peersFile is the persisted list of peers of a tier.
type peersFile struct {
	Peers   []string  `json:"peers"`
	SavedAt time.Time `json:"saved_at"`
}

// joinTargets is the configured join list plus the persisted peers.
func (t *Tier) joinTargets() []string {
	targets := slices.Clone(t.cfg.Join)
	if t.cfg.PeersFile != "" {
		if b, err := os.ReadFile(t.cfg.PeersFile); err == nil {
			var pf peersFile
			if json.Unmarshal(b, &pf) == nil {
				targets = append(targets, pf.Peers...)
			}
		}
	}
	self := t.Addr()
	targets = slices.DeleteFunc(targets, func(s string) bool { return s == self })
	slices.Sort(targets)
	return slices.Compact(targets)
}

// savePeersSoon saves the peers a moment later, coalescing bursts of
// membership events. A save still waiting when the tier closes is
// dropped (Close saves the peers itself) and Close waits for one under
// way: no save outlives the tier, to write a stopped node's peers into a
// data dir that a restarted node or a restore has since taken over.
func (t *Tier) savePeersSoon() {
	if t.cfg.PeersFile == "" || !t.savePending.CompareAndSwap(false, true) {
		return
	}
	t.closeMu.Lock()
	defer t.closeMu.Unlock()
	if t.closed {
		return
	}
	t.done.Add(1)
	go func() {
		defer t.done.Done()
		timer := time.NewTimer(time.Second)
		defer timer.Stop()
		select {
		case <-timer.C:
			t.savePending.Store(false)
			t.savePeers()
		case <-t.stop:
		}
	}()
}

// savePeers writes the addresses of the other alive members, atomically
// and durably.
func (t *Tier) savePeers() {
	if t.cfg.PeersFile == "" {
		return
	}
	var pf peersFile
	for _, n := range t.peers() {
		pf.Peers = append(pf.Peers, n.Address())
	}
	if len(pf.Peers) == 0 {
		return // keep the last known peers for the next start
	}
	pf.SavedAt = time.Now().UTC()
	b, _ := json.MarshalIndent(pf, "", "  ")
	if err := writeFileSynced(t.cfg.PeersFile, b, 0o600); err != nil {
		t.log.Warn("saving peers", "err", err)
	}
}
