package cluster

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestKeyRotation rotates a running two-node cluster to a new key in
// memberlist's order (add everywhere, use everywhere, remove the old one)
// and checks the nodes stay together and a restart would load the new
// keyring.
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := []byte("0123456789abcdef"), []byte("fedcba9876543210")
	c := newCluster(t)
	dir := t.TempDir()
	a := c.add("a", func(cfg *Config) { cfg.Keys = [][]byte{oldKey}; cfg.KeyringFile = filepath.Join(dir, "a.key") })
	b := c.add("b", func(cfg *Config) { cfg.Keys = [][]byte{oldKey}; cfg.KeyringFile = filepath.Join(dir, "b.key") })
	waitFor(t, 10*time.Second, membersSee(2, a, b))
	for _, op := range []string{"add", "use"} {
		for _, n := range []*testNode{a, b} {
			if err := n.tier.ChangeKey(op, newKey); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range []*testNode{a, b} {
		if err := n.tier.ChangeKey("remove", oldKey); err != nil {
			t.Fatal(err)
		}
	}
	a.put(t, "after-rotation", "v")
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, err := b.store.Get("machines", "after-rotation")
		return err == nil, fmt.Sprintf("b: %v; members %d", err, b.tier.NumAlive())
	})
	info, _ := a.tier.Keys()
	if info.Primary != Fingerprint(newKey) || !slices.Equal(info.Keys, []string{Fingerprint(newKey)}) {
		t.Fatalf("keys after rotation: %+v", info)
	}
	keys, err := LoadKeyring(filepath.Join(dir, "a.key"))
	if err != nil || len(keys) != 1 || string(keys[0]) != string(newKey) {
		t.Fatalf("saved keyring: %q, %v", keys, err)
	}
	if err := a.tier.ChangeKey("remove", newKey); err == nil {
		t.Fatal("removing the primary key was allowed")
	}
	nokey := c.add("plain", nil)
	if err := nokey.tier.ChangeKey("add", newKey); err != ErrNoEncryption {
		t.Fatalf("adding a key to an unencrypted tier: %v", err)
	}
}
