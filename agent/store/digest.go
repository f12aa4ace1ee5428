package store

import (
	"crypto/sha256"
	"encoding/binary"
)

// Digest geometry: a three-level hash tree over the rows of a tier.
//
// Every (table, key) hashes to one of Leaves buckets; a leaf is the XOR of
// the hashes of the rows in it, so a write updates it in O(1) by XOR-ing the
// old row hash out and the new one in, whatever the order of writes. Each
// branch is the XOR of BranchFanout consecutive leaves, and the root the XOR
// of all branches. Two replicas with equal roots hold the same rows (up to
// hash collisions); otherwise they compare the Branches, then the leaves of
// differing branches, then the keys in differing leaves.
const (
	Leaves       = 4096
	BranchFanout = 64
	Branches     = Leaves / BranchFanout
)

// Hash is a 128-bit hash of a row or of a set of rows.
type Hash [16]byte

// xor sets h to h XOR o.
func (h *Hash) xor(o Hash) {
	a := binary.LittleEndian.Uint64(h[:8]) ^ binary.LittleEndian.Uint64(o[:8])
	b := binary.LittleEndian.Uint64(h[8:]) ^ binary.LittleEndian.Uint64(o[8:])
	binary.LittleEndian.PutUint64(h[:8], a)
	binary.LittleEndian.PutUint64(h[8:], b)
}

// IsZero reports whether h is the empty hash (no rows).
func (h Hash) IsZero() bool { return h == Hash{} }

// LeafOf returns the digest bucket of a row key.
func LeafOf(table, key string) int {
	h := sha256.New()
	h.Write([]byte(table))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	return int(binary.BigEndian.Uint16(h.Sum(sum[:0])) % Leaves)
}

// RowHash returns the hash of a row's identity and encoded state. A row
// that does not exist (nil encoding) hashes to zero.
func RowHash(table, key string, encoded []byte) Hash {
	if encoded == nil {
		return Hash{}
	}
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(table)))])
	h.Write([]byte(table))
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(key)))])
	h.Write([]byte(key))
	h.Write(encoded)
	var sum [sha256.Size]byte
	var out Hash
	copy(out[:], h.Sum(sum[:0]))
	return out
}

// Digest is the hash tree of one tier's rows. The zero value is the digest
// of an empty store. It is a plain value: not safe for concurrent mutation.
type Digest struct {
	leaves   [Leaves]Hash
	branches [Branches]Hash
	root     Hash
}

// Update replaces the contribution of one row in leaf from old to new (row
// hashes from RowHash; zero for a row that did not or no longer exists).
func (d *Digest) Update(leaf int, old, new Hash) {
	var delta Hash
	delta.xor(old)
	delta.xor(new)
	d.leaves[leaf].xor(delta)
	d.branches[leaf/BranchFanout].xor(delta)
	d.root.xor(delta)
}

// SetLeaf sets a leaf hash directly, as when loading a persisted digest, and
// keeps the branches and root consistent.
func (d *Digest) SetLeaf(leaf int, h Hash) {
	d.Update(leaf, d.leaves[leaf], h)
}

// Root is the hash of the whole tier.
func (d *Digest) Root() Hash { return d.root }

// Branch returns the hash of branch i (0 ≤ i < Branches).
func (d *Digest) Branch(i int) Hash { return d.branches[i] }

// Leaf returns the hash of leaf i (0 ≤ i < Leaves).
func (d *Digest) Leaf(i int) Hash { return d.leaves[i] }

// DiffBranches returns the indexes of the branches where d and branches
// (another replica's) differ.
func (d *Digest) DiffBranches(branches []Hash) []int {
	var out []int
	for i := range d.branches {
		if i >= len(branches) || d.branches[i] != branches[i] {
			out = append(out, i)
		}
	}
	return out
}
