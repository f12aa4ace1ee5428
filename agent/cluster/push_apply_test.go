package cluster

import (
	"fmt"
	"testing"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// The push path merges what arrived in bounded transactions: a burst of
// 10,000 pushed changes becomes at least three commits, so writes queued
// meanwhile wait for one of them, not for all (an outside review saw one
// merge of 592,000 changes hold the commit loop for over ten minutes).
func TestPushedBurstIsMergedInBoundedCommits(t *testing.T) {
	c := newCluster(t)
	n := c.add("a", nil)
	clock := hlc.NewClock(nil, 0)
	origin := store.NodeIDOf("b")
	var cs []store.Change
	for i := range 10_000 {
		st := store.Stamp{HLC: clock.Now(), Node: origin}
		cs = append(cs, store.Change{Table: "machines", Key: fmt.Sprintf("m-%05d", i),
			Row: store.Row{CL: 1, Stamp: st, Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte("v")}}}})
	}
	before := n.store.Stats().Commits
	n.tier.plum.apply(cs, pathPush)
	commits := n.store.Stats().Commits - before
	if commits < 3 || maxApplyChanges > 4096 {
		t.Fatalf("%d pushed changes merged in %d commits (at most %d changes a commit), want at least 3 commits of at most 4096", len(cs), commits, maxApplyChanges)
	}
	if got := n.store.Stats().Rows["machines"]; got != int64(len(cs)) {
		t.Fatalf("%d rows after the merge, want %d", got, len(cs))
	}
}
