package global

import (
	"testing"

	"github.com/strata-state/strata/agent/store"
)

// FuzzVerify feeds the proof decoder and the layout check bytes from
// outside: they must refuse, never panic, and never accept a proof they
// were not given by ord's key, neither a fresh verifier nor one that has
// proven the batch the seeds come from.
func FuzzVerify(f *testing.F) {
	keys, trust := signers(f, "ord")
	batch := []Stored{stored("ord", "a", placement("a"), 1), stored("ord", "b", placement("b"), 2), stored("ord", "c", placement("c"), 3)}
	if err := keys["ord"].Sign(batch); err != nil {
		f.Fatal(err)
	}
	warm := NewVerifier(trust)
	for _, s := range batch {
		f.Add(s.Proof, s.Value, uint64(1))
		if err := warm.Verify(&s); err != nil {
			f.Fatal(err)
		}
	}
	f.Add([]byte{}, []byte{}, uint64(2))
	f.Add([]byte{1}, []byte{1, 2}, uint64(0))
	f.Fuzz(func(t *testing.T, proof, value []byte, cl uint64) {
		st := store.Stamp{HLC: 5, Node: 9}
		row := store.Row{CL: cl, Stamp: st, Fields: []store.Field{{Num: ValueField, Stamp: st, Value: value}, {Num: ProofField, Stamp: st, Value: proof}}}
		s, err := FromRow("app_placements", "ord/z", row)
		if err != nil {
			return
		}
		if NewVerifier(trust).Verify(&s) == nil || warm.Verify(&s) == nil {
			t.Fatalf("a made-up record verified: proof %x value %x", proof, value)
		}
	})
}
