package cluster

import (
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// The decisions of an anti-entropy exchange, as pure functions of the
// local digest or rows and the peer's message: no store, no socket, no
// clock. sync.go reads the store, calls these, and sends what they return;
// antientropy_test.go runs whole exchanges between in-memory replicas
// through them.

// answerDigest is the responder's step: given the initiator's root and
// branch hashes, the branches where mine differs, each with all its leaf
// hashes (BranchFanout per branch, in order). Nothing when the roots agree:
// the replicas are in sync.
func answerDigest(mine *store.Digest, theirRoot store.Hash, theirBranches []store.Hash) (branches []uint16, leaves []store.Hash) {
	if mine.Root() == theirRoot {
		return nil, nil
	}
	for _, b := range mine.DiffBranches(theirBranches) {
		branches = append(branches, uint16(b))
		for l := b * store.BranchFanout; l < (b+1)*store.BranchFanout; l++ {
			leaves = append(leaves, mine.Leaf(l))
		}
	}
	return branches, leaves
}

// differingLeaves is the initiator's step: given the responder's leaf
// hashes of some branches (BranchFanout per branch, in order), the leaves
// where mine differs, ascending. None: in sync after all (the branches
// differed only in leaves that have since converged).
func differingLeaves(mine *store.Digest, branches []uint16, leaves []store.Hash) []int {
	var out []int
	for i, b := range branches {
		for j := 0; j < store.BranchFanout; j++ {
			l := int(b)*store.BranchFanout + j
			if i*store.BranchFanout+j < len(leaves) && mine.Leaf(l) != leaves[i*store.BranchFanout+j] {
				out = append(out, l)
			}
		}
	}
	return out
}

// diffKeys is the responder's step on the initiator's keys: given this
// node's rows in the differing leaves and the initiator's (keys and row
// hashes), the rows to send (the initiator lacks them or holds them
// differently) and the rows to ask for (this node lacks them or holds
// them differently). A row held differently goes both ways: each side
// merges the other's state, and the join of the two is the same on both.
// Both lists keep the order of their input.
func diffKeys(mine, theirs []store.KeyHash) (send, want []store.KeyHash) {
	type id struct{ table, key string }
	theirHash := make(map[id]store.Hash, len(theirs))
	for _, k := range theirs {
		theirHash[id{k.Table, k.Key}] = k.Hash
	}
	held := make(map[id]bool, len(mine))
	for _, k := range mine {
		held[id{k.Table, k.Key}] = true
		h, ok := theirHash[id{k.Table, k.Key}]
		if !ok || h != k.Hash {
			send = append(send, k)
		}
		if ok && h != k.Hash {
			want = append(want, store.KeyHash{Table: k.Table, Key: k.Key})
		}
	}
	for _, k := range theirs {
		if !held[id{k.Table, k.Key}] {
			want = append(want, store.KeyHash{Table: k.Table, Key: k.Key})
		}
	}
	return send, want
}

// freshWindow is the span of stamps the push path is taken to be still
// carrying: from a little before this node's wall clock up to it. A stamp
// ahead of the clock (a node whose clock runs fast) is outside it: how
// fresh it is cannot be told, and holding it until this clock caught up
// would hold it for the skew. The zero window holds nothing.
type freshWindow struct{ from, to hlc.Timestamp }

func (w freshWindow) holds(ts hlc.Timestamp) bool { return w.to != 0 && ts >= w.from && ts <= w.to }

// leaveFresh is the step before rows are shipped to (or merged from) a
// peer that takes pushes: what was stamped within w is left out, as the
// push path is still carrying it (an exchange that ran while a change
// was on its way would otherwise ship it a second time, and deliver it
// before the push did). Fields are left out one by one: a row whose other
// fields are older goes with those, so a row with one field written over
// and over still has its older fields repaired. A row whose own stamp
// (its causal length's) is in w is left out whole. What is left out and
// still missing at a later exchange is older by then, and goes. It
// returns the rows to send and how many rows lost something.
func leaveFresh(rows []store.Change, w freshWindow) (send []store.Change, held int) {
	send = rows[:0:0]
	for _, r := range rows {
		if r.Row.Stamp.HLC != 0 && w.holds(r.Row.Stamp.HLC) {
			held++
			continue
		}
		var kept []store.Field
		for _, f := range r.Row.Fields {
			if !w.holds(f.Stamp.HLC) {
				kept = append(kept, f)
			}
		}
		switch {
		case len(kept) == len(r.Row.Fields):
			send = append(send, r)
		case len(kept) > 0:
			held++
			r.Row.Fields = kept
			send = append(send, r)
		default:
			held++
		}
	}
	return send, held
}

// rowSize estimates the encoded size of a change, for batching.
func rowSize(c store.Change) int {
	size := len(c.Table) + len(c.Key) + 64
	for _, f := range c.Row.Fields {
		size += len(f.Value) + 8
	}
	return size
}

// batchRows cuts rows into messages of about limit bytes each: a message
// is closed once it reaches limit, and holds at least one row, so a row
// larger than limit travels alone. No rows: one empty batch, which still
// carries the wanted keys and ends the exchange.
func batchRows(rows []store.Change, limit int) [][]store.Change {
	var out [][]store.Change
	for {
		var batch []store.Change
		size := 0
		for len(rows) > 0 && (size < limit || len(batch) == 0) {
			size += rowSize(rows[0])
			batch = append(batch, rows[0])
			rows = rows[1:]
		}
		out = append(out, batch)
		if len(rows) == 0 {
			return out
		}
	}
}

// keySize is the encoded size of one key of a sync-keys message, with its
// row hash (two length prefixes of at most two bytes each: tables and keys
// are bounded by the store).
func keySize(k store.KeyHash) int { return len(k.Table) + len(k.Key) + 4 + len(k.Hash) }

// pageLeaves cuts the differing leaves of an exchange into pages, each
// listing whole leaves whose keys take at most limit bytes in all; a leaf
// whose keys alone exceed limit is a page of its own. keys are this node's
// keys in leaves (any order); leaves are ascending, and every leaf is in
// one page, including those where this node holds nothing (the peer must
// learn that too). One page when everything fits.
func pageLeaves(leaves []int, keys []store.KeyHash, limit int) [][]int {
	bytes := make(map[int]int, len(leaves))
	for _, k := range keys {
		bytes[store.LeafOf(k.Table, k.Key)] += keySize(k)
	}
	var pages [][]int
	var page []int
	size := 0
	for _, l := range leaves {
		if len(page) > 0 && size+bytes[l] > limit {
			pages = append(pages, page)
			page, size = nil, 0
		}
		page = append(page, l)
		size += bytes[l]
	}
	return append(pages, page)
}
