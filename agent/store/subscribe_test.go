package store

import (
	"context"
	"fmt"
	"testing"
)

// A subscriber that does not read never holds the commit loop: commits
// past its buffer are dropped and counted, and writes go on.
func TestSubscriptionNeverHoldsCommits(t *testing.T) {
	s := openTest(t, "", Options{})
	sub := s.Subscribe(2)
	defer sub.Close()
	for i := range 10 {
		if _, err := s.Apply(context.Background(), put(fmt.Sprintf("m-%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	if got := sub.Dropped(); got != 8 {
		t.Fatalf("dropped %d changes, want 8 (10 single-row commits, room for 2)", got)
	}
	for i := range 2 {
		c := <-sub.C
		if len(c.Local) != 1 || c.Local[0].Key != fmt.Sprintf("m-%d", i) {
			t.Fatalf("commit %d delivered %+v, want m-%d", i, c.Local, i)
		}
	}
	sub.Close()
	if _, ok := <-sub.C; ok {
		t.Fatal("C still open after Close")
	}
	// A closed subscription gets nothing more, and the store goes on.
	if _, err := s.Apply(context.Background(), put("after", "v")); err != nil {
		t.Fatal(err)
	}
}
