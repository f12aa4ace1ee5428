package cluster

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLackingKey: alive members that do not advertise the key are listed,
// members that are not alive are not.
func TestLackingKey(t *testing.T) {
	k := []byte("0123456789abcdef")
	fp := MetaFingerprint(k)
	members := []Member{
		{Name: "c", State: "alive", Keys: []string{"00000000"}},
		{Name: "a", State: "alive", Keys: []string{"00000000", fp}},
		{Name: "b", State: "alive"}, // advertises nothing: an older strata
		{Name: "d", State: "dead", Keys: []string{"00000000"}},
		{Name: "e", State: "left"},
	}
	if got := LackingKey(members, k); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("LackingKey = %v, want [b c]", got)
	}
}

// TestDecryptFailedLines: both memberlist lines for a packet and for a
// stream no key could decrypt are recognised, with the sender's address.
func TestDecryptFailedLines(t *testing.T) {
	for line, addr := range map[string]string{
		"[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=127.0.0.1:7946":        "127.0.0.1:7946",
		"[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=10.0.0.2:51234":            "10.0.0.2:51234",
		"[ERR] memberlist: failed to receive: Remote state is encrypted and encryption is not configured from=10.0.0.3:1": "",
	} {
		m := decryptFailed.FindStringSubmatch(line)
		switch {
		case addr == "" && m != nil:
			t.Errorf("%q matched, want no match", line)
		case addr != "" && (m == nil || m[1] != addr):
			t.Errorf("%q: match %v, want address %s", line, m, addr)
		}
	}
}

// TestReloadKeysKeepsPrimaryWhileAPeerLacksIt: over two real tiers, a
// reloaded keyring whose new first key the peer does not hold adds the key
// but keeps the old primary, naming the peer; once the peer holds it, the
// reload makes it primary and the tier stays whole.
func TestReloadKeysKeepsPrimaryWhileAPeerLacksIt(t *testing.T) {
	oldKey, newKey := []byte("0123456789abcdef"), []byte("fedcba9876543210")
	c := newCluster(t)
	a := c.add("a", func(cfg *Config) { cfg.Keys = [][]byte{oldKey} })
	b := c.add("b", func(cfg *Config) { cfg.Keys = [][]byte{oldKey} })
	waitFor(t, 10*time.Second, membersSee(2, a, b))

	changed, err := a.tier.ReloadKeys([][]byte{newKey, oldKey})
	if !changed || err == nil || !strings.Contains(err.Error(), "alive members do not hold it: b") {
		t.Fatalf("ReloadKeys with a key b lacks: changed %v, err %v; want the key added and b named", changed, err)
	}
	if info, _ := a.tier.Keys(); info.Primary != Fingerprint(oldKey) || len(info.Keys) != 2 {
		t.Fatalf("a's keys: %+v, want the old primary and both keys", info)
	}
	if _, err := b.tier.ReloadKeys([][]byte{oldKey, newKey}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		lacking := LackingKey(a.tier.Members(), newKey)
		return len(lacking) == 0, fmt.Sprintf("a sees %v lacking the new key", lacking)
	})
	if _, err := a.tier.ReloadKeys([][]byte{newKey, oldKey}); err != nil {
		t.Fatalf("ReloadKeys once b holds the key: %v", err)
	}
	if info, _ := a.tier.Keys(); info.Primary != Fingerprint(newKey) {
		t.Fatalf("a's primary: %s, want the new key", info.Primary)
	}
	a.put(t, "after-reload", "v")
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, err := b.store.Get("machines", "after-reload")
		return err == nil, fmt.Sprintf("b: %v", err)
	})
}
