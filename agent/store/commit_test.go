package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// A mutation that cannot commit fails alone: the other writers of its
// commit group get their writes committed, and only its writer the error.
func TestFailingMutationFailsAlone(t *testing.T) {
	s := openTest(t, "", Options{})
	// The oversize key skips Apply's checks (as a mutation that only the
	// commit can find bad would): bbolt refuses it inside the transaction.
	bad := &request{muts: []Mutation{put(strings.Repeat("k", 40_000), "x")}}
	good1 := &request{muts: []Mutation{put("m-1", "a")}}
	good2 := &request{changes: []Change{{Table: "machines", Key: "m-2",
		Row: Row{CL: 1, Stamp: Stamp{HLC: s.clock.Now(), Node: 7}, Fields: []Field{{Num: 1, Value: []byte("b"), Stamp: Stamp{HLC: s.clock.Now(), Node: 7}}}}}}}
	batch := []*request{good1, bad, good2}
	for _, r := range batch {
		r.done = make(chan struct{})
	}
	// The commit loop is idle (nothing submitted), so this is the one
	// transaction in flight, as if the loop had drained these three.
	s.commit(batch)
	if good1.err != nil || good2.err != nil {
		t.Fatalf("the good requests failed with the bad one: %v; %v", good1.err, good2.err)
	}
	if bad.err == nil {
		t.Fatal("the oversize key committed")
	}
	for _, k := range []string{"m-1", "m-2"} {
		if _, err := s.Get("machines", k); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if len(good2.applied) != 1 {
		t.Errorf("remote change applied %d times in the outcome, want 1", len(good2.applied))
	}
	// The failed group's leaf deltas are gone with it: the digest is the
	// rows' own, after the retries and after one more commit.
	if _, err := s.Apply(context.Background(), put("m-3", "c")); err != nil {
		t.Fatal(err)
	}
	var d Digest
	rows, _, _ := s.List("machines", "", 0)
	for _, kr := range rows {
		d.Update(LeafOf("machines", kr.Key), Hash{}, RowHash("machines", kr.Key, AppendRow(nil, kr.Row)))
	}
	if d.Root() != s.Digest().Root() {
		t.Error("digest differs from one recomputed from the rows")
	}
}

// Keys and table names over the shared limits are refused before they
// join a commit group, with an error naming the limit.
func TestLimitsCheckedBeforeCommit(t *testing.T) {
	s := openTest(t, "", Options{})
	for name, m := range map[string]Mutation{
		"key":   put(strings.Repeat("k", MaxKeyLen+1), "x"),
		"table": {Op: OpPut, Table: strings.Repeat("t", MaxTableLen+1), Key: "k"},
		"value": {Op: OpPut, Table: "machines", Key: "k", Fields: []FieldValue{{Num: 1, Value: make([]byte, maxValueBytes+1)}}},
	} {
		_, err := s.Apply(context.Background(), m)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "at most") {
			t.Errorf("%s: got %v, want ErrInvalid naming the limit", name, err)
		}
	}
	if _, err := s.Apply(context.Background(), put(strings.Repeat("k", MaxKeyLen), "x")); err != nil {
		t.Errorf("a key of exactly MaxKeyLen: %v", err)
	}
	_, rejected, err := s.Merge(context.Background(), []Change{{Table: "machines", Key: strings.Repeat("k", MaxKeyLen+1),
		Row: Row{CL: 1, Stamp: Stamp{HLC: s.clock.Now(), Node: 7}}}})
	if err != nil || len(rejected) != 1 || !errors.Is(rejected[0].Err, ErrInvalid) {
		t.Errorf("remote change with an oversize key: %v, rejected %v", err, rejected)
	}
}
