package plumtree

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Seen answers what Step then does: an item it reports seen is counted as
// a duplicate and not delivered, and one it reports unseen is delivered.
// The push path skips decoding the payloads of items Seen reports, so a
// disagreement would lose a change (or apply one twice).
func TestSeenAgreesWithStep(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		r := rand.New(rand.NewPCG(seed, 1))
		n := New(Config{Self: "self", Epoch: 1, Rand: r})
		n.Tick(time.Unix(0, 0))
		n.PeerUp("p")
		n.Broadcast([]byte("own"))
		n.Ready()
		for i := 0; i < 300; i++ {
			id := ID{Origin: []string{"a", "b", "self"}[r.IntN(3)], Epoch: uint64(1 + r.IntN(3)), Seq: uint64(1 + r.IntN(40))}
			seen := n.Seen(id)
			before := n.Stats().Duplicates
			n.Step("p", Message{Kind: Push, Items: []Item{{ID: id, Payload: []byte("x")}}})
			delivered := len(n.Ready().Deliveries) == 1
			dup := n.Stats().Duplicates > before
			switch {
			case id.Origin == "self":
				if !seen || delivered {
					t.Fatalf("seed %d: own message %v: Seen %v, delivered %v", seed, id, seen, delivered)
				}
			case seen != dup || seen == delivered:
				t.Fatalf("seed %d: %v: Seen %v, but Step counted a duplicate: %v, delivered: %v", seed, id, seen, dup, delivered)
			}
		}
	}
}
