package plumtree

import "time"

// track is the seen-state of one origin's current epoch.
type track struct {
	epoch  uint64
	mark   uint64              // every seq ≤ mark seen
	above  map[uint64]struct{} // seen seqs > mark
	active time.Time           // last change, for MaxOrigins eviction
}

func (t *track) seen(seq uint64) bool {
	if seq <= t.mark {
		return true
	}
	_, ok := t.above[seq]
	return ok
}

// add records seq; it reports how many sequence numbers were given up to
// keep the window bound (everything below the lowest seen seq above the
// mark, left to anti-entropy).
func (t *track) add(seq uint64, window int) (lost uint64) {
	if t.seen(seq) {
		return 0
	}
	t.above[seq] = struct{}{}
	for len(t.above) > window {
		lo := uint64(0)
		for s := range t.above {
			if lo == 0 || s < lo {
				lo = s
			}
		}
		lost += lo - t.mark - 1
		t.mark = lo
		delete(t.above, lo)
		t.absorb()
	}
	t.absorb()
	return lost
}

// absorb moves the mark over contiguous seen seqs.
func (t *track) absorb() {
	for {
		if _, ok := t.above[t.mark+1]; !ok {
			return
		}
		delete(t.above, t.mark+1)
		t.mark++
	}
}

// missing returns the unseen seqs in (mark, to] as ranges.
func (t *track) missing(origin string, to uint64) []Range {
	var out []Range
	for s := t.mark + 1; s <= to; s++ {
		if t.seen(s) {
			continue
		}
		if n := len(out); n > 0 && out[n-1].To == s-1 {
			out[n-1].To = s
		} else {
			out = append(out, Range{Origin: origin, Epoch: t.epoch, From: s, To: s})
		}
	}
	return out
}
