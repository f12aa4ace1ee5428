package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/strata-state/strata/agent/cluster"
)

// CodeKeyNotHeld answers a "use" of a key some alive members of the tier
// do not hold: they could not read this node's gossip any more.
const CodeKeyNotHeld = "key_not_held"

// refuseUse refuses to make key the primary of tier t while an alive
// member of the tier does not advertise it, unless force is set; nil
// otherwise, and for other operations.
func refuseUse(t MemberLister, op string, key []byte, force bool) *Error {
	if op != "use" || force {
		return nil
	}
	if info, err := t.Keys(); err != nil || info.Primary == "" {
		return nil // no encryption: ChangeKey says so
	}
	lacking := cluster.LackingKey(t.Members(), key)
	if len(lacking) == 0 {
		return nil
	}
	return &Error{Status: http.StatusConflict, Code: CodeKeyNotHeld, Message: fmt.Sprintf(
		"refusing to encrypt with key %s: alive members of the tier do not hold it and would stop hearing this node: %s; "+
			"run `strata keys add` on them first (or `strata keys rotate`, which does every step on every node), or use --force",
		cluster.MetaFingerprint(key), strings.Join(lacking, ", "))}
}

// keyByFingerprint resolves a "remove" by fingerprint to the key.
func keyByFingerprint(t MemberLister, op, fp string) ([]byte, error) {
	kt, ok := t.(interface{ KeyByFingerprint(string) ([]byte, bool) })
	if op != "remove" || !ok {
		return nil, errors.New("a fingerprint names a key only to remove it")
	}
	key, ok := kt.KeyByFingerprint(fp)
	if !ok {
		return nil, fmt.Errorf("no key with fingerprint %q", fp)
	}
	return key, nil
}
