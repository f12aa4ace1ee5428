package global

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
)

// Verifier checks proofs against a Trust. It is safe for concurrent use.
//
// A record is proven when its whole proof holds: its leaf, hashed up its
// own path, gives a root whose signature by a key trusted for the
// record's region verifies. The proof is stored and sent on with the
// record, so every byte of it is checked, not only as much as shows the
// record to be in some signed batch: a receiver that had not seen the
// batch would refuse a proof that does not verify by itself.
//
// # Why a tree cache
//
// An Ed25519 verification costs some 50 µs, and a full path 8 hashes. The
// Verifier keeps the trees it has proven, by the signature that covers
// them: a record of a known batch costs its leaf hash, the hashes up to
// the first node of its path the tree already holds, and comparisons of
// the rest of its path with the tree (about two hashes a record over a
// batch, whatever the order its records come in).
//
// Trees are kept by the signature that covers them, in two generations
// bounded by their nodes (treeCap). Beyond them, the roots proven are
// kept (rootCap): a record of a batch whose tree was dropped costs its
// full path, but no second Ed25519 verification.
//
// # Why record by record
//
// Verifying a message's records of one batch together, building the tree
// once from all their leaves, costs the same two hashes a record as this
// cache, and measured no faster (docs/BENCHMARKS.md); the push path
// delivers records one at a time anyway. So a record is proven, and
// refused, alone: an altered record costs no other record of its batch
// anything.
type Verifier struct {
	trust *Trust

	last atomic.Pointer[keyedTree] // the tree proven or used last

	mu       sync.Mutex
	cur, old map[treeKey]*tree    // proven trees, two generations
	curNodes int                  // nodes of the trees in cur
	roots    map[treeKey][32]byte // proven roots
}

// treeCap bounds the nodes (32 bytes each) of one generation of proven
// trees: when cur is full it becomes old, and old is dropped. 2 MiB a
// generation holds the trees of 128 full batches. rootCap bounds the
// roots kept (about 130 bytes each); when full, they start again.
const (
	treeCap = 1 << 16
	rootCap = 1 << 13
)

// NewVerifier returns a Verifier of proofs by the keys of t.
func NewVerifier(t *Trust) *Verifier {
	return &Verifier{trust: t, cur: map[treeKey]*tree{}, old: map[treeKey]*tree{}, roots: map[treeKey][32]byte{}}
}

// treeKey names a signed batch: the signer's public key, its signature,
// and the batch size.
type treeKey struct {
	keySig [32 + 64]byte
	n      uint16
}

// proof is a parsed proof whose form, key and region have been checked.
type proof struct {
	key  treeKey
	n    int
	idx  int
	path []byte // 32 bytes per level with a sibling, leaf to root
}

// refuse returns a *ProofError about s.
func refuse(s *Stored, reason, format string, args ...any) *ProofError {
	return &ProofError{Record: s.String(), Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// altered is the refusal of a record its proof does not cover.
func altered(s *Stored) *ProofError {
	return refuse(s, ReasonSignature, "the signature does not match the record: altered, or not signed by region %s", s.Region)
}

// parse reads s's proof and checks its form, and that its key is trusted
// for s.Region.
func (v *Verifier) parse(s *Stored) (proof, error) {
	p := s.Proof
	if len(p) == 0 {
		return proof{}, refuse(s, ReasonUnsigned, "the change carries no signature of region %s", s.Region)
	}
	if len(p) < 1+32+64+2 || p[0] != proofFormat {
		return proof{}, refuse(s, ReasonSignature, "malformed proof")
	}
	signer, ok := v.trust.RegionOf(p[1:33])
	switch {
	case !ok:
		return proof{}, refuse(s, ReasonWrongRegion, "signed by a key not in trusted_regions")
	case signer != s.Region:
		return proof{}, refuse(s, ReasonWrongRegion, "signed by region %s's key, but the record belongs to region %s", signer, s.Region)
	}
	rest := p[97:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n == 0 || n > MaxBatch {
		return proof{}, refuse(s, ReasonSignature, "malformed proof: batch size")
	}
	rest = rest[k:]
	idx, k := binary.Uvarint(rest)
	if k <= 0 || idx >= n {
		return proof{}, refuse(s, ReasonSignature, "malformed proof: leaf index")
	}
	rest = rest[k:]
	switch want := 32 * pathLen(int(idx), int(n)); {
	case len(rest) < want:
		return proof{}, refuse(s, ReasonSignature, "malformed proof: path too short")
	case len(rest) > want:
		return proof{}, refuse(s, ReasonSignature, "malformed proof: trailing bytes")
	}
	pr := proof{n: int(n), idx: int(idx), path: rest}
	copy(pr.key.keySig[:], p[1:97])
	pr.key.n = uint16(n)
	return pr, nil
}

// pathLen is the number of siblings on the path of leaf idx of n.
func pathLen(idx, n int) int {
	k := 0
	for i, size := idx, n; size > 1; i, size = i/2, (size+1)/2 {
		if i%2 == 1 || i+1 < size {
			k++
		}
	}
	return k
}

// Verify checks that s carries a proof, by a key trusted for s.Region, of
// exactly these contents. It returns a *ProofError if not.
func (v *Verifier) Verify(s *Stored) error {
	p, err := v.parse(s)
	if err != nil {
		return err
	}
	return v.verifyOne(s, &p, leaf(s))
}

// verifyOne proves one record whose proof parsed as p and whose leaf hash
// is h: against its batch's tree if proven already, else by hashing its
// path up to the root and checking the root's signature.
func (v *Verifier) verifyOne(s *Stored, p *proof, h [32]byte) error {
	if t := v.proven(p.key); t != nil {
		if !t.holds(h, p.idx, p.path) {
			return altered(s)
		}
		return nil
	}
	t := pathTree(p.n, p.idx, h, p.path)
	if !v.rootProven(p.key, t.root()) {
		if !v.signed(s.Region, p.key, p.n, t) {
			return altered(s)
		}
	}
	v.remember(p.key, t)
	return nil
}

// signed reports whether t's root is signed by p's key for region.
func (v *Verifier) signed(region string, k treeKey, n int, t *tree) bool {
	var buf [128]byte
	return ed25519.Verify(k.keySig[:32], appendRootMessage(buf[:0], region, *t.root(), n), k.keySig[32:])
}

// keyedTree is a proven tree with its key.
type keyedTree struct {
	key  treeKey
	tree *tree
}

// proven returns the proven tree of a batch, or nil. The records of a
// batch mostly come together, so the last tree is tried first, without
// the lock.
func (v *Verifier) proven(k treeKey) *tree {
	if last := v.last.Load(); last != nil && last.key == k {
		return last.tree
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.cur[k]
	if !ok {
		if t, ok = v.old[k]; !ok {
			return nil
		}
		v.add(k, t)
	}
	v.last.Store(&keyedTree{k, t})
	return t
}

// rootProven reports whether root is the proven root of batch k.
func (v *Verifier) rootProven(k treeKey, root *[32]byte) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	r, ok := v.roots[k]
	return ok && r == *root
}

// remember keeps t, proven, as the tree of batch k.
func (v *Verifier) remember(k treeKey, t *tree) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.cur[k]; !ok {
		v.add(k, t)
		v.last.Store(&keyedTree{k, t})
	}
	if _, ok := v.roots[k]; !ok {
		if len(v.roots) >= rootCap {
			clear(v.roots)
		}
		v.roots[k] = *t.root()
	}
}

// add puts t in the current generation. v.mu is held.
func (v *Verifier) add(k treeKey, t *tree) {
	if v.curNodes+len(t.nodes) > treeCap {
		v.old, v.cur, v.curNodes = v.cur, map[treeKey]*tree{}, 0
	}
	v.cur[k] = t
	v.curNodes += len(t.nodes)
}

// maxLevels is the number of levels of a tree of MaxBatch leaves.
const maxLevels = 9

// tree is a batch's Merkle tree, as far as the records seen of it show
// it: levels from the leaves (level 0) to the root, each node known or
// not. Every known node has its sibling known (where it has one) and its
// parent known, up to the root: a node becomes known only with the whole
// path above it. Once proven (its root's signature verified) a tree is
// shared, and mu guards its nodes.
type tree struct {
	mu     sync.Mutex
	levels int
	off    [maxLevels + 1]int // level l holds nodes[off[l]:off[l+1]]
	nodes  [][32]byte
	have   []bool
}

func newTree(n int) *tree {
	t := &tree{}
	total := 0
	for size := n; ; size = (size + 1) / 2 {
		t.off[t.levels] = total
		total += size
		t.levels++
		if size == 1 {
			break
		}
	}
	t.off[t.levels] = total
	t.nodes = make([][32]byte, total)
	t.have = make([]bool, total)
	return t
}

func (t *tree) size(l int) int { return t.off[l+1] - t.off[l] }

func (t *tree) root() *[32]byte { return &t.nodes[t.off[t.levels-1]] }

// set makes node i of level l known as h, and reports false if it was
// known as something else.
func (t *tree) set(l, i int, h *[32]byte) bool {
	pos := t.off[l] + i
	if t.have[pos] {
		return t.nodes[pos] == *h
	}
	t.nodes[pos], t.have[pos] = *h, true
	return true
}

// pathTree returns the tree of a batch of n records as far as the leaf
// idx of hash h and its path show it: the nodes of the path, hashed up to
// the root, and their siblings.
func pathTree(n, idx int, h [32]byte, path []byte) *tree {
	t := newTree(n)
	i := idx
	for l := 0; l < t.levels-1; l, i = l+1, i/2 {
		t.set(l, i, &h)
		if sib := i ^ 1; sib < t.size(l) {
			s := [32]byte(path[:32])
			path = path[32:]
			t.set(l, sib, &s)
			if i%2 == 1 {
				h = node(&s, &h)
			} else {
				h = node(&h, &s)
			}
		}
	}
	t.set(t.levels-1, 0, &h)
	return t
}

// pathFrom reports whether path, from level l where the node is i, gives
// the siblings t knows.
func (t *tree) pathFrom(l, i int, path []byte) bool {
	for ; l < t.levels-1; l, i = l+1, i/2 {
		if sib := i ^ 1; sib < t.size(l) {
			pos := t.off[l] + sib
			if !t.have[pos] || t.nodes[pos] != [32]byte(path[:32]) {
				return false
			}
			path = path[32:]
		}
	}
	return true
}

// holds reports whether the record of leaf hash h at index idx with that
// path is in t, a proven tree, and adds the nodes its path proves.
func (t *tree) holds(h [32]byte, idx int, path []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	// The nodes of the path below the first node t knows, and their
	// siblings, to add once the path is shown to reach it.
	type pending struct {
		pos int
		h   [32]byte
	}
	var add [2 * maxLevels]pending
	na := 0
	i, k := idx, 0
	for l := 0; l < t.levels; l++ {
		pos := t.off[l] + i
		if t.have[pos] {
			if t.nodes[pos] != h {
				return false
			}
			// All the path above a known node is known: compare the
			// rest of the proof with it.
			if !t.pathFrom(l, i, path[32*k:]) {
				return false
			}
			for _, a := range add[:na] {
				t.nodes[a.pos], t.have[a.pos] = a.h, true
			}
			return true
		}
		if l == t.levels-1 {
			break // a proven tree knows its root
		}
		add[na] = pending{pos, h}
		na++
		if sib := i ^ 1; sib < t.size(l) {
			s := [32]byte(path[32*k:])
			k++
			add[na] = pending{t.off[l] + sib, s}
			na++
			if i%2 == 1 {
				h = node(&s, &h)
			} else {
				h = node(&h, &s)
			}
		}
		i /= 2
	}
	return false
}
