package store

import (
	"context"
	"errors"
	"math"
	"testing"
)

// A peer's row with a causal length that leaves no room (2^64-1 would
// wrap the next delete to 0, making DELETE a silent no-op) is refused;
// a row at the limit takes its last steps and then fails loudly.
func TestCausalLengthNeverWraps(t *testing.T) {
	s := openTest(t, "", Options{})
	ctx := context.Background()
	remote := func(key string, cl uint64) Change {
		st := Stamp{HLC: s.clock.Now(), Node: 7}
		return Change{Table: "machines", Key: key, Row: Row{CL: cl, Stamp: st, Fields: []Field{{Num: 1, Stamp: st, Value: []byte("x")}}}}
	}
	_, rejected, err := s.Merge(ctx, []Change{remote("wrap", math.MaxUint64)})
	if err != nil || len(rejected) != 1 || !errors.Is(rejected[0].Err, ErrInvalid) {
		t.Fatalf("causal length 2^64-1 from a peer: %v, rejected %v; want it refused", err, rejected)
	}
	if _, err := s.GetAny("machines", "wrap"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused row was stored: %v", err)
	}

	// The highest alive causal length a peer may send: delete works,
	// and the re-insert that would pass the limit fails with an error.
	if _, rejected, err := s.Merge(ctx, []Change{remote("edge", MaxCausalLength-1)}); err != nil || len(rejected) != 0 {
		t.Fatalf("causal length at the limit: %v, rejected %v", err, rejected)
	}
	if _, err := s.Apply(ctx, Mutation{Op: OpDelete, Table: "machines", Key: "edge"}); err != nil {
		t.Fatalf("delete at the limit: %v", err)
	}
	if _, err := s.Get("machines", "edge"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted row still alive: %v", err)
	}
	if _, err := s.Apply(ctx, put("edge", "again")); !errors.Is(err, ErrCausalLength) {
		t.Fatalf("re-insert past the limit: %v, want ErrCausalLength", err)
	}
	if r, _ := s.GetAny("machines", "edge"); r.CL != MaxCausalLength {
		t.Errorf("causal length after the refused re-insert: %d", r.CL)
	}
}
