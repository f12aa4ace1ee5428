package cluster

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ErrNoEncryption is returned by key changes on a tier started without a
// keyring: memberlist cannot turn encryption on while running.
var ErrNoEncryption = errors.New("cluster: this tier runs without encryption; set its keyring file and restart to enable it")

// KeyInfo describes a tier's keys without revealing them.
type KeyInfo struct {
	// Primary is the fingerprint of the key that encrypts.
	Primary string `json:"primary"`
	// Keys are the fingerprints of every key accepted for decryption.
	Keys []string `json:"keys"`
}

// Fingerprint is a short, non-secret name of a key: the first 8 bytes of
// its SHA-256, in hex.
func Fingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// Keys describes the tier's keyring.
func (t *Tier) Keys() (KeyInfo, error) {
	if t.keyring == nil {
		return KeyInfo{Keys: []string{}}, nil
	}
	info := KeyInfo{Primary: Fingerprint(t.keyring.GetPrimaryKey())}
	for _, k := range t.keyring.GetKeys() {
		info.Keys = append(info.Keys, Fingerprint(k))
	}
	return info, nil
}

// ChangeKey applies one step of a key rotation, in memberlist's order: "add"
// a new key (accepted, not yet used), "use" it (it encrypts from now on),
// "remove" the old one once every node uses the new one. The keyring file
// is rewritten so that a restart keeps the change.
func (t *Tier) ChangeKey(op string, key []byte) error {
	if t.keyring == nil {
		return ErrNoEncryption
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return fmt.Errorf("cluster: key is %d bytes, want 16, 24 or 32", n)
	}
	t.keysMu.Lock()
	defer t.keysMu.Unlock()
	var err error
	switch op {
	case "add":
		err = t.keyring.AddKey(key)
	case "use":
		err = t.keyring.UseKey(key)
	case "remove":
		err = t.keyring.RemoveKey(key)
	default:
		return fmt.Errorf("cluster: unknown key operation %q (want add, use or remove)", op)
	}
	if err != nil {
		return fmt.Errorf("cluster: %s key %s: %w", op, Fingerprint(key), err)
	}
	t.log.Info("keyring changed", "op", op, "key", Fingerprint(key))
	if err := t.advertiseKeys(); err != nil {
		t.log.Warn("keyring changed but not advertised to peers", "err", err)
	}
	return t.saveKeyring()
}

// saveKeyring writes the keys, primary first, to the keyring file.
func (t *Tier) saveKeyring() error {
	if t.cfg.KeyringFile == "" {
		return nil
	}
	primary := t.keyring.GetPrimaryKey()
	lines := []string{"# strata keyring: base64 AES keys, the first encrypts. Rewritten by strata keys."}
	lines = append(lines, base64.StdEncoding.EncodeToString(primary))
	for _, k := range t.keyring.GetKeys() {
		if string(k) != string(primary) {
			lines = append(lines, base64.StdEncoding.EncodeToString(k))
		}
	}
	if err := writeFileSynced(t.cfg.KeyringFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("cluster: saving keyring: %w", err)
	}
	return nil
}
