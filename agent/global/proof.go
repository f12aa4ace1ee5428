package global

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Proof layout (field 2 of a global row):
//
//	version  byte (proofFormat)
//	key      32 bytes: the signer's Ed25519 public key
//	sig      64 bytes: its signature of the batch root (rootMessage)
//	n        uvarint: leaves in the batch
//	index    uvarint: this record's leaf
//	path     32 bytes per level with a sibling, leaf to root
//
// The leaf of a record hashes (record type, region, key, causal length,
// stamp, value); interior nodes hash their two children; a level's last
// node without a sibling moves up unchanged. The signed message names the
// region, so a key trusted for one region proves nothing for another.
const proofFormat = 1

// MaxBatch is the most records one signature covers: a record's path is at
// most 8 hashes (256 bytes), which keeps a signed change small enough for
// one gossip packet.
const MaxBatch = 256

// Reasons a proof is refused, as labels of
// strata_global_received_rejected_total.
const (
	ReasonUnsigned    = "unsigned"
	ReasonWrongRegion = "wrong_region"
	ReasonSignature   = "signature"
)

// ProofError is a change whose proof does not show that the region owning
// it wrote it.
type ProofError struct {
	// Record is the change.
	Record string
	// Reason is one of the Reason constants.
	Reason string
	// Detail says what is wrong.
	Detail string
}

// Error returns e.g. `global: app_placements/ord/web refused [unsigned]: ...`.
func (e *ProofError) Error() string {
	return fmt.Sprintf("global: %s refused [%s]: %s", e.Record, e.Reason, e.Detail)
}

// ErrProof is matched by every *ProofError.
var ErrProof = errors.New("global: bad region proof")

// Is reports whether target is ErrProof.
func (e *ProofError) Is(target error) bool { return target == ErrProof }

// leaf returns the leaf hash of s.
func leaf(s *Stored) [32]byte {
	var buf [512]byte
	b := append(buf[:0], 0)
	for _, str := range []string{s.Name, s.Region, s.Key} {
		b = binary.AppendUvarint(b, uint64(len(str)))
		b = append(b, str...)
	}
	b = binary.BigEndian.AppendUint64(b, s.CL)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Stamp.HLC))
	b = binary.BigEndian.AppendUint64(b, uint64(s.Stamp.Node))
	b = binary.AppendUvarint(b, uint64(len(s.Value)))
	if len(b)+len(s.Value) <= len(buf) {
		return sha256.Sum256(append(b, s.Value...)) // no allocation
	}
	h := sha256.New()
	h.Write(b)
	h.Write(s.Value)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// node hashes two children.
func node(l, r *[32]byte) [32]byte {
	var b [65]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[33:], r[:])
	return sha256.Sum256(b[:])
}

// rootMessage is what the region signs.
func rootMessage(region string, root [32]byte, n int) []byte {
	b := append([]byte("strata/global/root/v1\x00"), region...)
	b = append(b, 0)
	b = append(b, root[:]...)
	return binary.AppendUvarint(b, uint64(n))
}

// Sign sets the Proof of each record of batch (at most MaxBatch, all of
// s.Region, stamps set) to one signature over the batch.
func (s *Signer) Sign(batch []Stored) error {
	if len(batch) == 0 {
		return nil
	}
	if len(batch) > MaxBatch {
		return fmt.Errorf("global: sign %d records at once, at most %d", len(batch), MaxBatch)
	}
	levels := [][][32]byte{make([][32]byte, len(batch))}
	for i := range batch {
		if batch[i].Region != s.Region {
			return fmt.Errorf("global: key of region %s cannot sign %s", s.Region, batch[i].Record)
		}
		levels[0][i] = leaf(&batch[i])
	}
	for l := levels[0]; len(l) > 1; l = levels[len(levels)-1] {
		next := make([][32]byte, 0, (len(l)+1)/2)
		for i := 0; i < len(l); i += 2 {
			if i+1 < len(l) {
				next = append(next, node(&l[i], &l[i+1]))
			} else {
				next = append(next, l[i])
			}
		}
		levels = append(levels, next)
	}
	root := levels[len(levels)-1][0]
	sig := ed25519.Sign(s.key, rootMessage(s.Region, root, len(batch)))
	pub := s.Public()
	for i := range batch {
		p := make([]byte, 0, 1+32+64+4+32*len(levels))
		p = append(p, proofFormat)
		p = append(p, pub...)
		p = append(p, sig...)
		p = binary.AppendUvarint(p, uint64(len(batch)))
		p = binary.AppendUvarint(p, uint64(i))
		idx := i
		for _, l := range levels[:len(levels)-1] {
			if sib := idx ^ 1; sib < len(l) {
				p = append(p, l[sib][:]...)
			}
			idx /= 2
		}
		batch[i].Proof = p
	}
	return nil
}

// Verifier checks proofs against a Trust. It remembers the batch roots it
// has verified, so a batch costs one signature check however many of its
// records arrive, and the tree nodes below them: a record whose path
// reaches a node already proven to be under a signed root is proven too
// (leaves and nodes are hashed apart, and a leaf covers all of its
// record), so the second record of a batch costs about two hashes rather
// than one per level. It is safe for concurrent use.
type Verifier struct {
	trust *Trust

	mu       sync.Mutex
	verified map[[32 + 64]byte]struct{} // root and signature
	nodes    map[[32]byte]struct{}      // nodes under a verified root
}

// verifiedCap bounds the remembered roots, nodeCap the nodes; when full,
// they start again.
const (
	verifiedCap = 8192
	nodeCap     = 1 << 16
)

// NewVerifier returns a Verifier of proofs by the keys of t.
func NewVerifier(t *Trust) *Verifier {
	return &Verifier{trust: t, verified: map[[96]byte]struct{}{}, nodes: map[[32]byte]struct{}{}}
}

// Verify checks that s carries a proof, by a key trusted for s.Region, of
// exactly these contents. It returns a *ProofError if not.
func (v *Verifier) Verify(s *Stored) error {
	bad := func(reason, format string, args ...any) error {
		return &ProofError{Record: s.String(), Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
	p := s.Proof
	if len(p) == 0 {
		return bad(ReasonUnsigned, "the change carries no signature of region %s", s.Region)
	}
	if len(p) < 1+32+64+2 || p[0] != proofFormat {
		return bad(ReasonSignature, "malformed proof")
	}
	pub, sig := p[1:33], p[33:97]
	signer, ok := v.trust.RegionOf(pub)
	switch {
	case !ok:
		return bad(ReasonWrongRegion, "signed by a key not in trusted_regions")
	case signer != s.Region:
		return bad(ReasonWrongRegion, "signed by region %s's key, but the record belongs to region %s", signer, s.Region)
	}
	rest := p[97:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n == 0 || n > MaxBatch {
		return bad(ReasonSignature, "malformed proof: batch size")
	}
	rest = rest[k:]
	idx, k := binary.Uvarint(rest)
	if k <= 0 || idx >= n {
		return bad(ReasonSignature, "malformed proof: leaf index")
	}
	rest = rest[k:]
	h := leaf(s)
	v.mu.Lock()
	_, known := v.nodes[h] // a sibling of a record already proven
	v.mu.Unlock()
	if known {
		return nil
	}
	// The nodes computed and the siblings on the path, to remember once
	// the root is proven: they are all in the signed tree.
	var path [16][32]byte
	depth := 0
	i, size := int(idx), int(n)
	for size > 1 {
		if i%2 == 1 || i+1 < size {
			if len(rest) < 32 {
				return bad(ReasonSignature, "malformed proof: path too short")
			}
			sib := [32]byte(rest[:32])
			rest = rest[32:]
			if depth < len(path) {
				path[depth] = sib
				depth++
			}
			if i%2 == 1 {
				h = node(&sib, &h)
			} else {
				h = node(&h, &sib)
			}
			v.mu.Lock()
			_, known := v.nodes[h]
			if known {
				v.remember(path[:depth])
			}
			v.mu.Unlock()
			if known {
				return nil
			}
			if depth < len(path) {
				path[depth] = h
				depth++
			}
		}
		i, size = i/2, (size+1)/2
	}
	if len(rest) != 0 {
		return bad(ReasonSignature, "malformed proof: trailing bytes")
	}
	var id [96]byte
	copy(id[:32], h[:])
	copy(id[32:], sig)
	v.mu.Lock()
	_, seen := v.verified[id]
	v.mu.Unlock()
	if seen {
		v.mu.Lock()
		v.remember(path[:depth])
		v.mu.Unlock()
		return nil
	}
	if !ed25519.Verify(pub, rootMessage(s.Region, h, int(n)), sig) {
		return bad(ReasonSignature, "the signature does not match the record: altered, or not signed by region %s", s.Region)
	}
	v.mu.Lock()
	if len(v.verified) >= verifiedCap {
		clear(v.verified)
	}
	v.verified[id] = struct{}{}
	v.remember(path[:depth])
	v.mu.Unlock()
	return nil
}

// remember adds nodes proven to be under a signed root. v.mu is held.
func (v *Verifier) remember(nodes [][32]byte) {
	if len(v.nodes)+len(nodes) > nodeCap {
		clear(v.nodes)
	}
	for _, h := range nodes {
		v.nodes[h] = struct{}{}
	}
}
