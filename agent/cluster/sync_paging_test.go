package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// lowerMessageLimit sets messageLimit for one test, so that a divergence
// of thousands of rows exceeds it as one of millions exceeds the real one.
func lowerMessageLimit(t *testing.T, limit int) {
	old := messageLimit
	messageLimit = limit
	t.Cleanup(func() { messageLimit = old })
}

// repairRows merges count rows machines/<prefix><i> into a node's store
// as anti-entropy would: neither pushed nor gossiped to its peers, so
// that only an anti-entropy exchange can carry them (the rows of a node's
// peers it missed while away).
func repairRows(t *testing.T, dst *store.Store, prefix string, count int) {
	t.Helper()
	src, err := store.Open(filepath.Join(t.TempDir(), "src.db"), store.Options{Node: "src", Clock: hlc.NewClock(nil, time.Minute), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for i := 0; i < count; i++ {
		m := store.Mutation{Op: store.OpPut, Table: "machines", Key: fmt.Sprintf("%s%06d", prefix, i),
			Fields: []store.FieldValue{{Num: 1, Value: []byte("v")}}}
		if _, err := src.Apply(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	rows, _, err := src.List("machines", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	changes := make([]store.Change, 0, len(rows))
	for _, r := range rows {
		changes = append(changes, store.Change{Table: "machines", Key: r.Key, Row: r.Row})
	}
	if _, _, err := dst.Repair(context.Background(), changes); err != nil {
		t.Fatal(err)
	}
}

// syncKeysBytes is the size of the sync-keys message that would list
// every row of a store in one message, as the exchange did before paging.
func syncKeysBytes(t *testing.T, n *testNode) int {
	t.Helper()
	leaves := make([]int, store.Leaves)
	for i := range leaves {
		leaves[i] = i
	}
	keys, err := n.store.LeafKeys(leaves)
	if err != nil {
		t.Fatal(err)
	}
	return len(encodeMessage(keysMsg(header{Type: msgSyncKeys, Sender: n.name}, 1, leaves, keys)))
}

// A node that comes back having missed thousands of random writes differs
// from its peer in nearly every leaf: the keys of those leaves exceed the
// message limit, and must travel in pages for the exchange to complete.
// Here each node holds thousands of rows the other lacks, that neither
// push nor gossip will carry (they were not written there).
func TestSyncPagesKeysOfLargeDivergence(t *testing.T) {
	// 256 KiB: above the largest leaves message (4,096 hashes, 128 KiB),
	// below the keys of the rows merged here.
	lowerMessageLimit(t, 256<<10)
	const rows = 8000
	c := newCluster(t)
	a := c.add("a", nil)
	repairRows(t, a.store, "a-", rows)
	// b's keys (and a's) take more than the limit in one message: the
	// test exercises paging whichever node starts an exchange.
	if size := syncKeysBytes(t, a); size <= messageLimit {
		t.Fatalf("a's keys take %d bytes in one message, not over the limit of %d: the test proves nothing", size, messageLimit)
	}
	// b starts with rows a lacks, as a node back from an absence.
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "regional.db"), store.Options{Node: "b", Clock: hlc.NewClock(nil, time.Minute), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	repairRows(t, st, "b-", rows)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	b := c.start("b", dir, nil)
	waitFor(t, 60*time.Second, func() (bool, string) {
		ok, why := converged(a, b)
		return ok && b.tier.Ready() == nil, fmt.Sprintf("%s; b ready: %v", why, b.tier.Ready())
	})
	if got := b.store.Stats().Rows["machines"]; got != 2*rows {
		t.Fatalf("b holds %d rows, want %d", got, 2*rows)
	}
	for _, n := range []*testNode{a, b} {
		if tl := testutil.ToFloat64(n.tier.m.syncs.WithLabelValues(Regional, "too_large")); tl != 0 {
			t.Errorf("%s: %v messages too large to send", n.name, tl)
		}
		if mal := testutil.ToFloat64(n.tier.m.rejected.WithLabelValues(Regional, reasonMalformed)); mal != 0 {
			t.Errorf("%s: %v messages rejected as malformed", n.name, mal)
		}
	}
}

// lockedBuffer is a log sink safe for the tier's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// A message over the limit is not sent: the sender counts it and logs it
// once, however often the exchange is retried. Here a node joins a peer
// whose rows are in every branch: the responder's leaves message (every
// leaf of every branch) exceeds a limit lowered below it, and the
// joining node retries its catch-up exchange every second.
func TestSyncMessageTooLargeIsCountedAndLoggedOnce(t *testing.T) {
	lowerMessageLimit(t, 16<<10)
	var logs lockedBuffer
	c := newCluster(t)
	a := c.add("a", func(cfg *Config) { cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	repairRows(t, a.store, "k", 2000)
	b := c.add("b", nil)
	tooLarge := func() float64 { return testutil.ToFloat64(a.tier.m.syncs.WithLabelValues(Regional, "too_large")) }
	waitFor(t, 20*time.Second, func() (bool, string) {
		return tooLarge() >= 3, fmt.Sprintf("a counted %v messages too large to send, want at least 3", tooLarge())
	})
	if n := logs.count("message too large to send"); n != 1 {
		t.Fatalf("a logged the oversized message %d times, want once:\n%s", n, logs.b.String())
	}
	if mal := testutil.ToFloat64(b.tier.m.rejected.WithLabelValues(Regional, reasonMalformed)); mal != 0 {
		t.Fatalf("b rejected %v malformed messages: an oversized one was sent", mal)
	}
}

// A store that refuses every write (a full disk, here a data file the
// file system refuses to open for writing) fails the merge of every
// exchange alike: that is logged at ERROR once, the repeats at DEBUG.
func TestSyncMergeErrorLoggedOncePerKind(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "regional.db")
	st, err := store.Open(path, store.Options{Node: "b", Clock: hlc.NewClock(nil, time.Minute), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	repairRows(t, st, "b-", 1)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// chattr +i: even root cannot open the file for writing.
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Skipf("cannot make the data file immutable (chattr +i: %v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })

	c := newCluster(t)
	a := c.add("a", nil)
	repairRows(t, a.store, "a-", 50)
	var logs lockedBuffer
	b := c.start("b", dir, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	if err := b.store.Unwritable(); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("b's store takes writes (%v): the test proves nothing", err)
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		n := logs.count(`msg="sync: merging rows`)
		return n >= 5, fmt.Sprintf("b failed to merge rows %d times, want at least 5", n)
	})
	if n := logs.count(`level=ERROR msg="sync: merging rows`); n != 1 {
		t.Fatalf("b logged %d failed merges at ERROR, want 1:\n%s", n, logs.b.String())
	}
}

// pageLeaves puts every differing leaf in exactly one page, in order,
// empty leaves included, and keeps each page's keys within the limit
// unless one leaf alone exceeds it.
func TestPageLeaves(t *testing.T) {
	var keys []store.KeyHash
	for i := 0; i < 3000; i++ {
		keys = append(keys, store.KeyHash{Table: "machines", Key: fmt.Sprintf("k%05d", i)})
	}
	big := keys[0] // one leaf made far larger than the limit
	for i := 0; i < 200; i++ {
		k := ""
		for j := 0; k == "" || store.LeafOf("machines", k) != store.LeafOf(big.Table, big.Key); j++ {
			k = fmt.Sprintf("big%06d-%d", i, j)
		}
		keys = append(keys, store.KeyHash{Table: "machines", Key: k})
	}
	bytes := map[int]int{}
	for _, k := range keys {
		bytes[store.LeafOf(k.Table, k.Key)] += keySize(k)
	}
	leaves := make([]int, store.Leaves)
	for i := range leaves {
		leaves[i] = i
	}
	const limit = 4 << 10
	if bytes[store.LeafOf(big.Table, big.Key)] <= limit {
		t.Fatal("the big leaf fits the limit: the test proves nothing")
	}
	pages := pageLeaves(leaves, keys, limit)
	if len(pages) < 2 {
		t.Fatalf("%d pages for %d keys over a %d-byte limit", len(pages), len(keys), limit)
	}
	next := 0
	for i, p := range pages {
		size := 0
		for _, l := range p {
			if l != next {
				t.Fatalf("page %d has leaf %d, want %d", i, l, next)
			}
			next++
			size += bytes[l]
		}
		if size > limit && len(p) > 1 {
			t.Fatalf("page %d holds %d leaves, %d bytes of keys, over the limit of %d", i, len(p), size, limit)
		}
	}
	if next != store.Leaves {
		t.Fatalf("pages cover %d leaves, want %d", next, store.Leaves)
	}
	if one := pageLeaves([]int{3, 9}, nil, limit); len(one) != 1 || len(one[0]) != 2 {
		t.Fatalf("no keys: pages %v, want one page of both leaves", one)
	}
}

// A paged exchange holds off new exchanges while its responder answers,
// and no longer once it has stalled; at most maxExchanges are remembered.
func TestPagedExchangeStallAndBound(t *testing.T) {
	var s syncState
	t0 := time.Unix(1000, 0)
	s.start(1, &pagedExchange{peer: "b", last: t0})
	if !s.busy(t0.Add(exchangeStall - time.Millisecond)) {
		t.Fatal("not busy while the exchange is under way")
	}
	if s.progress(1, "c", t0.Add(time.Second)) != nil {
		t.Fatal("another peer moved the exchange on")
	}
	if s.progress(1, "b", t0.Add(5*time.Second)) == nil || !s.busy(t0.Add(5*time.Second+exchangeStall-time.Millisecond)) {
		t.Fatal("an answer did not keep the exchange under way")
	}
	if s.busy(t0.Add(5*time.Second + exchangeStall)) {
		t.Fatal("busy after the exchange stalled")
	}
	for i := uint64(2); i < 2+2*maxExchanges; i++ {
		s.start(i, &pagedExchange{peer: "b", last: t0.Add(6 * time.Second).Add(time.Duration(i) * time.Millisecond)})
	}
	if n := len(s.exchanges); n != maxExchanges {
		t.Fatalf("%d exchanges remembered, want %d", n, maxExchanges)
	}
	if s.exchanges[2] != nil || s.exchanges[1+2*maxExchanges] == nil {
		t.Fatal("the bound evicted other than the oldest")
	}
	s.end(1 + 2*maxExchanges)
	if s.exchanges[1+2*maxExchanges] != nil {
		t.Fatal("end kept the exchange")
	}
}
