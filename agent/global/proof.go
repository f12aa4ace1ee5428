package global

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
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

// appendRootMessage appends what the region signs to b.
func appendRootMessage(b []byte, region string, root [32]byte, n int) []byte {
	b = append(b, "strata/global/root/v1\x00"...)
	b = append(b, region...)
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
	sig := ed25519.Sign(s.key, appendRootMessage(nil, s.Region, root, len(batch)))
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
