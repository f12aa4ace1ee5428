package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-state/strata/agent/cluster/plumtree"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/internal/waitfor"
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
	waitfor.Until(t, 30*time.Second, "the pushed changes merged", func() error {
		if got := n.store.Stats().Rows["machines"]; got != int64(len(cs)) {
			return fmt.Errorf("%d rows, want %d", got, len(cs))
		}
		return nil
	})
	commits := n.store.Stats().Commits - before
	if commits < 3 || maxApplyChanges > 4096 {
		t.Fatalf("%d pushed changes merged in %d commits (at most %d changes a commit), want at least 3 commits of at most 4096", len(cs), commits, maxApplyChanges)
	}
}

// The push loop does not wait for the store: a batch delivered while the
// store is inside a commit (as during an fsync) is forwarded at once and
// merged afterwards. a's commit loop is held in its commit hook while a
// change from a third origin is pushed to a; b, a's eager peer, must get
// it while a's store is still held.
func TestPushForwardsWithoutWaitingForTheStore(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", nil)
	b := c.add("b", nil)
	// The push path between them works: a's write reaches b.
	a.put(t, "warm", "x")
	waitFor(t, 20*time.Second, func() (bool, string) {
		_, err := b.store.Get("machines", "warm")
		return err == nil, fmt.Sprintf("b lacks a's first write: %v", err)
	})
	hold, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	a.store.SetOnCommit(func(local, remote []store.Change) {
		once.Do(func() {
			close(hold)
			<-release
		})
	})
	var released sync.Once
	let := func() { released.Do(func() { close(release) }) }
	defer let()
	go a.store.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "machines", Key: "blocker", Fields: []store.FieldValue{{Num: 1, Value: []byte("x")}}})
	<-hold
	// Two batches from a third origin, one after the other: b gets the
	// first, then the second, while a's store is still held (a push loop
	// that waited for its merge of the first would never take the second).
	clock := hlc.NewClock(nil, 0)
	for seq := uint64(1); seq <= 2; seq++ {
		key := fmt.Sprintf("pushed-%d", seq)
		st := store.Stamp{HLC: clock.Now(), Node: store.NodeIDOf("z")}
		ch := store.Change{Table: "machines", Key: key, Row: store.Row{CL: 1, Stamp: st, Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte("v")}}}}
		(*delegate)(a.tier).NotifyMsg(encodePlum("z", []plumtree.Message{{Kind: plumtree.Push,
			Items: []plumtree.Item{{ID: plumtree.ID{Origin: "z", Epoch: 1, Seq: seq}, Payload: encodePayload(ch)}}}}))
		waitFor(t, 10*time.Second, func() (bool, string) {
			_, err := b.store.Get("machines", key)
			return err == nil, fmt.Sprintf("b lacks %s, pushed to a while a's store was held: %v", key, err)
		})
	}
	if _, err := a.store.Get("machines", "pushed-1"); err == nil {
		t.Fatal("a merged a change while its commit loop was held")
	}
	let()
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, err := a.store.Get("machines", "pushed-2")
		return err == nil, fmt.Sprintf("a did not merge the change once its store was let go: %v", err)
	})
}

// The local changes waiting for the push loop are bounded: a commit
// hands over more than the bound allows, the rest are counted as dropped
// (anti-entropy brings them), and the queue never holds more.
func TestLocalPushQueueIsBounded(t *testing.T) {
	c := newCluster(t)
	n := c.add("a", nil)
	p := n.tier.plum
	before := testutil.ToFloat64(n.tier.m.dropped.WithLabelValues(Regional))
	cs := make([]store.Change, maxLocalQueue+10)
	for i := range cs {
		cs[i] = store.Change{Table: "machines", Key: fmt.Sprintf("m-%06d", i)}
	}
	p.offer(cs)
	p.mu.Lock()
	queued := len(p.local)
	p.mu.Unlock()
	if queued > maxLocalQueue {
		t.Fatalf("%d local changes queued, bound %d", queued, maxLocalQueue)
	}
	if got := testutil.ToFloat64(n.tier.m.dropped.WithLabelValues(Regional)) - before; got < 10 {
		t.Fatalf("%v changes counted as dropped, want at least 10", got)
	}
}

// A change queued for the merge loop is copied out of the bundle it was
// decoded from (a queued change must not keep a received bundle of up to
// 16 MiB in memory), and the queue counts its bytes.
func TestQueuedMergesDoNotReferToTheirBundle(t *testing.T) {
	st := store.Stamp{HLC: hlc.NewClock(nil, 0).Now(), Node: store.NodeIDOf("z")}
	ch := store.Change{Table: "machines", Key: "k", Row: store.Row{CL: 1, Stamp: st,
		Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte("one")}, {Num: 2, Stamp: st, Value: []byte("two")}}}}
	bundle, err := decodePlum(encodePlum("z", []plumtree.Message{{Kind: plumtree.Push,
		Items: []plumtree.Item{{ID: plumtree.ID{Origin: "z", Epoch: 1, Seq: 1}, Payload: encodePayload(ch)}}}}))
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := decodePayload(bundle.Msgs[0].Items[0].Payload)
	if err != nil {
		t.Fatal(err)
	}
	d := detach(decoded)
	// Overwrite the received bytes, as the next message read into the
	// same buffer would.
	payload := bundle.Msgs[0].Items[0].Payload
	for i := range payload {
		payload[i] = 'X'
	}
	if string(d.Row.Fields[0].Value) != "one" || string(d.Row.Fields[1].Value) != "two" {
		t.Fatalf("detached values changed with the bundle: %q %q", d.Row.Fields[0].Value, d.Row.Fields[1].Value)
	}
	if string(decoded.Row.Fields[0].Value) == "one" {
		t.Fatal("the decoded change did not refer to its bundle: the test checks nothing")
	}
	// Appending to one value must not run into the next.
	_ = append(d.Row.Fields[0].Value, '!')
	if string(d.Row.Fields[1].Value) != "two" {
		t.Fatal("values share capacity")
	}
}
