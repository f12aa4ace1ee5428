package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/waitfor"
)

var t0 = time.Unix(1_000_000, 0)

func TestScheduleDebounce(t *testing.T) {
	s := &Schedule{RetryAfter: 5 * time.Second}
	s.Add("now", []string{"machines"}, 0)
	s.Add("slow", []string{"machines", "volumes"}, time.Second)
	s.Add("other", []string{"volumes"}, 0)
	s.SetActive(true, t0)
	if got := s.Due(t0); !slices.Equal(got, []string{"now", "slow", "other"}) {
		t.Fatalf("on becoming the publisher: %v, want every reducer at once", got)
	}
	for _, n := range []string{"now", "slow", "other"} {
		s.Done(n, true, t0)
	}
	if _, ok := s.Next(); ok {
		t.Fatal("something is due with no change")
	}
	// A change to machines: debounce 0 runs at once, 1s after a second;
	// "other" does not read machines and does not run.
	s.Changed("machines", t0.Add(10*time.Millisecond))
	if got := s.Due(t0.Add(10 * time.Millisecond)); !slices.Equal(got, []string{"now"}) {
		t.Fatalf("at the change: %v, want [now]", got)
	}
	s.Done("now", true, t0.Add(10*time.Millisecond))
	// A burst: later changes do not push the first one's deadline.
	s.Changed("machines", t0.Add(500*time.Millisecond))
	if got := s.Due(t0.Add(600 * time.Millisecond)); !slices.Equal(got, []string{"now"}) {
		t.Fatalf("during the burst: %v", got)
	}
	s.Done("now", true, t0.Add(600*time.Millisecond))
	if next, _ := s.Next(); !next.Equal(t0.Add(1010 * time.Millisecond)) {
		t.Fatalf("next %v, want 1s after the first change", next.Sub(t0))
	}
	if got := s.Due(t0.Add(1010 * time.Millisecond)); !slices.Equal(got, []string{"slow"}) {
		t.Fatalf("after the debounce: %v", got)
	}
}

func TestScheduleRetriesAndRole(t *testing.T) {
	s := &Schedule{RetryAfter: 5 * time.Second}
	s.Add("r", []string{"machines"}, 0)
	s.Changed("machines", t0)
	if got := s.Due(t0); got != nil {
		t.Fatalf("not the publisher, yet %v runs", got)
	}
	s.SetActive(true, t0)
	s.Due(t0)
	s.Done("r", false, t0) // failed, or writes refused
	if got := s.Due(t0.Add(4 * time.Second)); got != nil {
		t.Fatalf("retried too early: %v", got)
	}
	if got := s.Due(t0.Add(5 * time.Second)); !slices.Equal(got, []string{"r"}) {
		t.Fatalf("no retry: %v", got)
	}
	s.Done("r", true, t0.Add(5*time.Second))
	// Losing the role stops runs; regaining it runs everything (another
	// gateway published meanwhile).
	s.SetActive(false, t0.Add(6*time.Second))
	s.Changed("machines", t0.Add(6*time.Second))
	if got := s.Due(t0.Add(7 * time.Second)); got != nil {
		t.Fatalf("ran while not the publisher: %v", got)
	}
	s.SetActive(true, t0.Add(8*time.Second))
	if got := s.Due(t0.Add(8 * time.Second)); !slices.Equal(got, []string{"r"}) {
		t.Fatalf("on regaining the role: %v", got)
	}
}

func TestDecide(t *testing.T) {
	pub := func(key string, v byte, proof string) global.Stored {
		return global.Stored{Record: global.Record{Name: "a", Region: "ord", Key: key, Value: []byte{v}}, Proof: []byte(proof)}
	}
	out := func(key string, v byte) global.Record {
		return global.Record{Name: "a", Region: "ord", Key: key, Value: []byte{v}}
	}
	published := []global.Stored{pub("web", 1, "k1"), pub("api", 2, "k1"), pub("old", 3, "k1"), pub("same", 5, "k0")}
	writes := Decide(published, []global.Record{out("api", 2), out("web", 9), out("new", 4), out("same", 5)},
		func(s global.Stored) bool { return string(s.Proof) == "k0" })
	var got []string
	for _, w := range writes {
		got = append(got, fmt.Sprintf("%s:%v", w.Key, w.Deleted()))
	}
	// Deletes first (they free max_per_region slots), then upserts; an
	// unchanged record signed by an old key is written again.
	if want := []string{"old:true", "new:false", "same:false", "web:false"}; !slices.Equal(got, want) {
		t.Fatalf("writes %v, want %v", got, want)
	}
	if w := Decide(published, []global.Record{out("web", 1), out("api", 2), out("old", 3), out("same", 5)}, nil); len(w) != 0 {
		t.Fatalf("an unchanged projection wrote %v", w)
	}
}

// appReducer is a native reducer: one app_placements record per app of
// the machines. fail makes its runs fail.
type appReducer struct {
	name string
	mu   sync.Mutex
	fail error
	runs int
}

func (r *appReducer) Name() string { return r.name }
func (r *appReducer) Config() reducer.Config {
	return reducer.Config{Name: r.name, Inputs: []string{"machines"}, Outputs: []string{"app_placements"}}
}
func (r *appReducer) Status() reducer.Status { return reducer.Status{Name: r.name} }
func (r *appReducer) Run(_ context.Context, _ string, tables []reducer.Table) (*reducer.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs++
	if r.fail != nil {
		return nil, r.fail
	}
	apps := map[string]bool{}
	for _, row := range tables[0].Rows {
		for b := row; len(b) > 0; {
			num, typ, n := protowire.ConsumeTag(b)
			b = b[n:]
			if num == 2 && typ == protowire.BytesType {
				v, n := protowire.ConsumeBytes(b)
				apps[string(v)] = true
				b = b[n:]
				continue
			}
			b = b[protowire.ConsumeFieldValue(num, typ, b):]
		}
	}
	res := &reducer.Result{RowsIn: len(tables[0].Rows)}
	for app := range apps {
		v := append(append([]byte{0x0a, byte(len(app))}, app...), 0x10, 1)
		res.Records = append(res.Records, reducer.Record{Name: "app_placements", Key: app, Value: v})
	}
	return res, nil
}

// node is one gateway of a region: its regional and global stores and a
// publisher, with a native reducer.
type node struct {
	regional, global *store.Store
	writer           *global.Writer
	pub              *Publisher
	red              *appReducer
	active           bool
}

func newNode(t *testing.T, c *contracts.Contract, name, region string, signer *global.Signer, trust *global.Trust, regional *store.Store) *node {
	t.Helper()
	clock := hlc.NewClock(nil, time.Minute)
	open := func(file string) *store.Store {
		st, err := store.Open(filepath.Join(t.TempDir(), file), store.Options{Node: name, Clock: clock, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	n := &node{regional: regional, global: open("global.db"), red: &appReducer{name: "apps"}}
	if n.regional == nil {
		n.regional = open("regional.db")
	}
	n.writer = global.NewWriter(global.Options{Contract: c, Store: n.global, Clock: clock, Node: name, Region: region, Signer: signer, Trust: trust})
	n.pub = New(Options{Region: region, Node: name, Contract: c, Regional: n.regional, Global: n.global, Writer: n.writer,
		Jobs: []Job{{Reducer: n.red}}, Role: RoleFunc(func() bool { return n.active })})
	return n
}

func machine(t *testing.T, st *store.Store, id, app string) {
	t.Helper()
	f := func(num protowire.Number, s string) store.FieldValue {
		return store.FieldValue{Num: uint32(num), Value: protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)}
	}
	state := store.FieldValue{Num: 3, Value: protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 1)}
	if _, err := st.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "machines", Key: id, Fields: []store.FieldValue{f(1, id), f(2, app), state}}); err != nil {
		t.Fatal(err)
	}
}

func apps(t *testing.T, st *store.Store, region string) []string {
	t.Helper()
	recs, err := global.List(st, "app_placements", region)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Key)
	}
	return out
}

// exchange gives each node what the other holds, through Accept, as the
// global tier would.
func exchange(t *testing.T, nodes ...*node) {
	t.Helper()
	for _, from := range nodes {
		for _, to := range nodes {
			if from == to {
				continue
			}
			for _, table := range []string{"app_placements", global.HeartbeatTable} {
				rows, _, err := from.global.List(table, "", 0)
				if err != nil {
					t.Fatal(err)
				}
				var in []store.Change
				for _, kr := range rows {
					ch := store.Change{Table: table, Key: kr.Key, Row: kr.Row}
					if err := to.writer.Accept(ch, "peer"); err != nil {
						t.Fatalf("%s refused: %v", kr.Key, err)
					}
					in = append(in, ch)
				}
				if _, rej, err := to.global.Merge(context.Background(), in); err != nil || len(rej) > 0 {
					t.Fatal(err, rej)
				}
			}
		}
	}
}

func example(t *testing.T) *contracts.Contract {
	t.Helper()
	c, err := contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFailoverAndTwoPublishers: two gateways of ord share the regional
// rows. The first publishes; the second takes over and, holding the same
// published records, writes nothing new. During a partition both publish
// at once; once they exchange their changes, both hold the same records,
// each once.
func TestFailoverAndTwoPublishers(t *testing.T) {
	ctx := context.Background()
	c := example(t)
	signer, _ := global.NewSigner("ord")
	trust := global.NewTrust()
	trust.Add("ord", signer.Public())
	a := newNode(t, c, "ord-1", "ord", signer, trust, nil)
	b := newNode(t, c, "ord-2", "ord", signer, trust, a.regional)
	machine(t, a.regional, "m-1", "web")
	machine(t, a.regional, "m-2", "api")
	if !a.pub.Publish(ctx, a.red) {
		t.Fatal("first run not clean")
	}
	exchange(t, a, b)
	seq := b.global.Seq()
	if !b.pub.Publish(ctx, b.red) || b.global.Seq() != seq {
		t.Fatal("the next publisher rewrote records it already held")
	}
	// Partition: both publish different changes.
	machine(t, a.regional, "m-3", "db")
	a.pub.Publish(ctx, a.red)
	machine(t, a.regional, "m-4", "cache")
	b.pub.Publish(ctx, b.red)
	exchange(t, a, b)
	want := []string{"api", "cache", "db", "web"}
	for name, n := range map[string]*node{"a": a, "b": b} {
		if got := apps(t, n.global, "ord"); !slices.Equal(got, want) {
			t.Errorf("%s holds %v, want %v", name, got, want)
		}
	}
	if st := b.pub.Status()[0]; st.Upserts == 0 {
		t.Errorf("status after publishing: %+v", st)
	}
}

// TestFailedRunKeepsRecordsAndRetries: a failing reducer changes nothing
// published, is reported, and the next clean run publishes.
func TestFailedRunKeepsRecordsAndRetries(t *testing.T) {
	ctx := context.Background()
	c := example(t)
	n := newNode(t, c, "ord-1", "ord", nil, nil, nil)
	machine(t, n.regional, "m-1", "web")
	n.pub.Publish(ctx, n.red)
	n.red.fail = errors.New("boom")
	machine(t, n.regional, "m-2", "api")
	if n.pub.Publish(ctx, n.red) {
		t.Fatal("a failed run reported clean")
	}
	if got := apps(t, n.global, "ord"); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("after a failed run: %v", got)
	}
	n.red.fail = nil
	if !n.pub.Publish(ctx, n.red) {
		t.Fatal("retry not clean")
	}
	if got := apps(t, n.global, "ord"); !slices.Equal(got, []string{"api", "web"}) {
		t.Fatalf("after the retry: %v", got)
	}
}

// TestRunPublishesAtOnceWithZeroDebounce drives the loop with real
// events: a zero debounce publishes at once (it used to become 250ms),
// and a change to a table the reducer does not read runs nothing.
func TestRunPublishesAtOnceWithZeroDebounce(t *testing.T) {
	c := example(t)
	n := newNode(t, c, "ord-1", "ord", nil, nil, nil)
	n.active = true
	n.pub.opts.Jobs[0].Debounce = 0
	n.pub.opts.Heartbeat = time.Hour // no tick helps
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.pub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	machine(t, n.regional, "m-1", "web")
	waitfor.Until(t, 2*time.Second, "web published", func() error {
		if got := apps(t, n.global, "ord"); !slices.Equal(got, []string{"web"}) {
			return fmt.Errorf("published %v", got)
		}
		return nil
	})
	n.red.mu.Lock()
	runs := n.red.runs
	n.red.mu.Unlock()
	if _, err := n.regional.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "volumes", Key: "v-1",
		Fields: []store.FieldValue{{Num: 1, Value: protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "v-1")}}}); err != nil {
		t.Fatal(err)
	}
	machine(t, n.regional, "m-2", "api") // a marker: once api is out, the volumes change was seen too
	waitfor.Until(t, 2*time.Second, "api published", func() error {
		if got := apps(t, n.global, "ord"); !slices.Equal(got, []string{"api", "web"}) {
			return fmt.Errorf("published %v", got)
		}
		return nil
	})
	n.red.mu.Lock()
	defer n.red.mu.Unlock()
	if n.red.runs > runs+1 {
		t.Errorf("%d runs for one machines change and one volumes change; volumes is not an input", n.red.runs-runs)
	}
}

// badInputs reads a table the contract lacks: each run fails before the
// reducer runs.
type badInputs struct{ appReducer }

func (r *badInputs) Config() reducer.Config {
	return reducer.Config{Name: r.name, Inputs: []string{"nope"}, Outputs: []string{"app_placements"}}
}

// TestFailuresAreLoggedOnce: a run that keeps failing the same way is
// logged once (it was logged on every run), and again when the error
// changes; its status keeps the error.
func TestFailuresAreLoggedOnce(t *testing.T) {
	ctx := context.Background()
	c := example(t)
	n := newNode(t, c, "ord-1", "ord", nil, nil, nil)
	var logs syncBuffer
	bad := &badInputs{appReducer{name: "bad"}}
	n.pub = New(Options{Region: "ord", Node: "ord-1", Contract: c, Regional: n.regional, Global: n.global, Writer: n.writer,
		Jobs: []Job{{Reducer: bad}}, Role: RoleFunc(func() bool { return true }), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 5 {
		if n.pub.Publish(ctx, bad) {
			t.Fatal("a failing run reported clean")
		}
	}
	if got := strings.Count(logs.String(), "level=WARN"); got != 1 {
		t.Fatalf("%d warnings for 5 identical failures:\n%s", got, logs.String())
	}
	if st := n.pub.Status()[0]; !strings.Contains(st.PublishError, `"nope"`) {
		t.Fatalf("status: %+v", st)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// leakReducer publishes each machine's id, a regional_only value, as an
// app: the global pipeline refuses every record.
type leakReducer struct{ appReducer }

func (r *leakReducer) Status() reducer.Status {
	return reducer.Status{Name: r.name, LastRun: &reducer.RunStatus{OK: true}}
}

func (r *leakReducer) Run(_ context.Context, _ string, tables []reducer.Table) (*reducer.Result, error) {
	res := &reducer.Result{RowsIn: len(tables[0].Rows)}
	for _, row := range tables[0].Rows {
		num, _, n := protowire.ConsumeTag(row)
		if num != 1 {
			return nil, fmt.Errorf("row does not start with id: %x", row)
		}
		id, _ := protowire.ConsumeBytes(row[n:])
		v := append(append([]byte{0x0a, byte(len(id))}, id...), 0x10, 1)
		res.Records = append(res.Records, reducer.Record{Name: "app_placements", Key: string(id), Value: v})
	}
	return res, nil
}

// TestRejectedRunIsNotOK: a run whose records the contract refuses (a
// leak) is counted as "rejected", not "published"; its status says the
// run is not OK, and Problems names it. A clean run afterwards clears it.
func TestRejectedRunIsNotOK(t *testing.T) {
	ctx := context.Background()
	c := example(t)
	n := newNode(t, c, "ord-1", "ord", nil, nil, nil)
	reg := prometheus.NewRegistry()
	leak := &leakReducer{appReducer{name: "leak"}}
	n.pub = New(Options{Region: "ord", Node: "ord-1", Contract: c, Regional: n.regional, Global: n.global, Writer: n.writer,
		Jobs: []Job{{Reducer: leak}}, Role: RoleFunc(func() bool { return true }), Registry: reg})
	machine(t, n.regional, "m-1", "web")
	if n.pub.Publish(ctx, leak) {
		t.Fatal("a run with rejected records reported clean")
	}
	if got := apps(t, n.global, "ord"); len(got) != 0 {
		t.Fatalf("leaked records published: %v", got)
	}
	runs := func(result string) float64 { return testutil.ToFloat64(n.pub.runs.WithLabelValues("leak", result)) }
	if runs("rejected") != 1 || runs("published") != 0 {
		t.Errorf("runs: rejected %v, published %v; want 1, 0", runs("rejected"), runs("published"))
	}
	st := n.pub.Status()[0]
	if st.Rejected != 1 || st.LastRun == nil || st.LastRun.OK || !strings.Contains(st.PublishError, "leak") {
		t.Errorf("status %+v (last run %+v), want rejected 1 and last_run.ok false", st, st.LastRun)
	}
	if !n.pub.Rejected("leak") {
		t.Error("Rejected(leak) is false")
	}
	if p := n.pub.Problems(); len(p) != 1 || !strings.Contains(p[0], "reducer leak: 1 record(s) of its last run were rejected") {
		t.Errorf("problems %q", p)
	}
	// The same reducer, now clean: one app record, no leak.
	n.pub.opts.Jobs[0].Reducer = n.red
	n.pub.status["apps"] = &published{}
	if !n.pub.Publish(ctx, n.red) || n.pub.Rejected("apps") || len(n.pub.Problems()) != 0 {
		t.Errorf("a clean run: rejected %v, problems %q", n.pub.Rejected("apps"), n.pub.Problems())
	}
}
