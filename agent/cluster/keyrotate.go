package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MetaFingerprintLen is the length of the key fingerprints a node
// advertises in its meta: the first 8 hex digits of Fingerprint, enough to
// tell a tier's few keys apart and small enough for memberlist's 512-byte
// meta with room for several keys.
const MetaFingerprintLen = 8

// MetaFingerprint is the short fingerprint of key that nodes advertise.
func MetaFingerprint(key []byte) string { return Fingerprint(key)[:MetaFingerprintLen] }

// encodeMeta encodes the tier's meta with the short fingerprints of keys,
// the primary first.
func (t *Tier) encodeMeta(keys [][]byte) ([]byte, error) {
	m := t.cfg.Meta
	m.Keys = nil
	for _, k := range keys {
		m.Keys = append(m.Keys, MetaFingerprint(k))
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("cluster: node meta is %d bytes, memberlist allows %d (%d keys in the keyring: remove old ones)", len(b), memberlist.MetaMaxSize, len(keys))
	}
	return b, nil
}

// KeyringKeys returns the keys the tier holds now, the primary first (nil
// without encryption). It reads memberlist's keyring, so it follows key
// changes made through the API and reloads, with no file I/O.
func (t *Tier) KeyringKeys() [][]byte {
	if t.keyring == nil {
		return nil
	}
	primary := t.keyring.GetPrimaryKey()
	keys := [][]byte{primary}
	for _, k := range t.keyring.GetKeys() {
		if string(k) != string(primary) {
			keys = append(keys, k)
		}
	}
	return keys
}

// advertiseKeys publishes the keyring's fingerprints in this node's meta,
// after a key change, so that peers can tell which keys it holds.
func (t *Tier) advertiseKeys() error {
	meta, err := t.encodeMeta(t.KeyringKeys())
	if err != nil {
		return err
	}
	t.meta.Store(&meta)
	if err := t.ml.UpdateNode(time.Second); err != nil {
		return fmt.Errorf("cluster: advertising the new keys: %w", err)
	}
	return nil
}

// LackingKey returns, sorted, the names of the alive members that do not
// advertise key among the keys they hold: those that could not read
// gossip encrypted with it. A member that advertises no keys at all (an
// older strata) is listed too.
func LackingKey(members []Member, key []byte) []string {
	fp := MetaFingerprint(key)
	var out []string
	for _, m := range members {
		if m.State == "alive" && !slices.Contains(m.Keys, fp) {
			out = append(out, m.Name)
		}
	}
	slices.Sort(out)
	return out
}

// KeyByFingerprint returns the key of the tier's keyring whose
// fingerprint (Fingerprint, or its MetaFingerprint prefix) is fp.
func (t *Tier) KeyByFingerprint(fp string) ([]byte, bool) {
	if t.keyring == nil || len(fp) < MetaFingerprintLen {
		return nil, false
	}
	for _, k := range t.keyring.GetKeys() {
		if strings.HasPrefix(Fingerprint(k), fp) {
			return k, true
		}
	}
	return nil, false
}

// decryptCounts counts, per peer, the packets and streams this node could
// not decrypt: the sign of a key rotation step done on one node before
// the others.
type decryptCounts struct {
	mu    sync.Mutex
	peers map[string]uint64
}

// decryptFailed matches memberlist's log lines for a packet or stream no
// installed key could decrypt, capturing the sender's address.
var decryptFailed = regexp.MustCompile(`(?:Decrypt packet failed|failed to receive: .*decrypt).* from=(\S+)`)

// noteLogLine counts a decrypt failure reported by a memberlist log line,
// under the member whose address sent it ("unknown" when none matches:
// streams come from ephemeral ports, so only a member alone on its host
// is recognised by its IP).
func (t *Tier) noteLogLine(line string) {
	m := decryptFailed.FindStringSubmatch(line)
	if m == nil {
		return
	}
	peer := t.memberAt(m[1])
	t.m.decryptFailed.WithLabelValues(t.cfg.Tier, peer).Inc()
	t.decrypt.mu.Lock()
	if t.decrypt.peers == nil {
		t.decrypt.peers = map[string]uint64{}
	}
	t.decrypt.peers[peer]++
	t.decrypt.mu.Unlock()
}

// memberAt names the member at addr (host:port), or the only member on
// its host, or "unknown".
func (t *Tier) memberAt(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "unknown"
	}
	t.membersMu.RLock()
	defer t.membersMu.RUnlock()
	byHost := ""
	for name, n := range t.members {
		if n.Address() == addr {
			return name
		}
		if n.Addr.String() == host {
			if byHost != "" {
				byHost = "unknown"
			} else {
				byHost = name
			}
		}
	}
	if byHost == "" {
		return "unknown"
	}
	return byHost
}

// decryptFailures is the number of packets and streams from peer this
// node could not decrypt.
func (t *Tier) decryptFailures(peer string) uint64 {
	t.decrypt.mu.Lock()
	defer t.decrypt.mu.Unlock()
	return t.decrypt.peers[peer]
}

// ReloadKeys makes the tier's keyring hold keys (a keyring file read
// again), keys[0] the primary: new keys are added; the primary changes
// only when every alive member advertises it (else the old primary stays
// and an error says who lacks it); keys no longer listed are removed,
// except a primary that could not change. The keyring file is not
// rewritten: it is the source. It reports whether the keyring changed.
func (t *Tier) ReloadKeys(keys [][]byte) (changed bool, err error) {
	if t.keyring == nil {
		if len(keys) == 0 {
			return false, nil
		}
		return false, ErrNoEncryption
	}
	if len(keys) == 0 {
		return false, fmt.Errorf("cluster: no keys: memberlist cannot turn encryption off while running; restart without a keyring")
	}
	t.keysMu.Lock()
	defer t.keysMu.Unlock()
	if slices.EqualFunc(t.KeyringKeys(), keys, func(a, b []byte) bool { return string(a) == string(b) }) {
		return false, nil
	}
	for _, k := range keys {
		if err := t.keyring.AddKey(k); err != nil {
			return changed, fmt.Errorf("cluster: add key %s: %w", Fingerprint(k), err)
		}
	}
	if err := t.advertiseKeys(); err != nil { // this node holds them now
		return true, err
	}
	if primary := keys[0]; string(t.keyring.GetPrimaryKey()) != string(primary) {
		if lacking := LackingKey(t.Members(), primary); len(lacking) > 0 {
			err = fmt.Errorf("cluster: not encrypting with key %s yet: alive members do not hold it: %s (the key is added; reload again once they hold it)",
				Fingerprint(primary), strings.Join(lacking, ", "))
		} else if uerr := t.keyring.UseKey(primary); uerr != nil {
			err = fmt.Errorf("cluster: use key %s: %w", Fingerprint(primary), uerr)
		}
	}
	current := t.keyring.GetPrimaryKey()
	for _, k := range t.keyring.GetKeys() {
		if string(k) != string(current) && !slices.ContainsFunc(keys, func(x []byte) bool { return string(x) == string(k) }) {
			if rerr := t.keyring.RemoveKey(k); rerr != nil && err == nil {
				err = fmt.Errorf("cluster: remove key %s: %w", Fingerprint(k), rerr)
			}
		}
	}
	t.log.Info("keyring reloaded", "primary", Fingerprint(current), "keys", len(t.keyring.GetKeys()))
	if aerr := t.advertiseKeys(); aerr != nil && err == nil {
		err = aerr
	}
	return true, err
}
