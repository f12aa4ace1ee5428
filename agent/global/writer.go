package global

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// Options configure a Writer.
type Options struct {
	// Contract holds the record types.
	Contract *contracts.Contract
	// Store is the global store. Required.
	Store *store.Store
	// Clock stamps this node's writes; it must be the store's clock.
	Clock *hlc.Clock
	// Node and Region are this node and its region.
	Node, Region string
	// Signer is this region's key; nil writes unsigned records, which
	// receivers that enforce region identity refuse.
	Signer *Signer
	// Trust is the regions' public keys; nil accepts any region's changes
	// unsigned (region identity not enforced).
	Trust *Trust
	// Rate and Burst are each (record type, region)'s write budget, for
	// this node's writes and, separately, for the changes it receives.
	// Zero: DefaultRate and DefaultBurst.
	Rate  float64
	Burst int
	// Now is the time; default time.Now. Tests drive it.
	Now func() time.Time
	// Logger and Registry (metrics; nil: unregistered).
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Writer is the one write path of the global tier on one node: it checks,
// signs and applies this node's writes (Write, Beat) and checks the
// changes peers send (Accept). It is safe for concurrent use.
type Writer struct {
	opts     Options
	node     store.NodeID
	verifier *Verifier
	budgets  *Budgets // this node's writes
	received *Budgets // changes from peers
	held     *receivedHoldings

	mu sync.Mutex // serialises local writes: read causal length, then merge

	rejected         *prometheus.CounterVec
	receivedRejected *prometheus.CounterVec
}

// NewWriter returns a Writer.
func NewWriter(opts Options) *Writer {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &Writer{opts: opts, node: store.NodeIDOf(opts.Node),
		budgets: NewBudgets(opts.Rate, opts.Burst), received: NewBudgets(opts.Rate, opts.Burst),
		held: &receivedHoldings{st: opts.Store, counts: map[[2]string]heldCount{}, pending: map[[2]string]map[string]time.Time{}, now: opts.Now}}
	if opts.Trust != nil {
		w.verifier = NewVerifier(opts.Trust)
	}
	w.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_global_rejected_total",
		Help: "Global writes of this node refused by the contract pipeline, by record and reason."}, []string{"record", "reason"})
	w.receivedRejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_global_received_rejected_total",
		Help: "Global changes received from peers and refused (bad region proof, layout, contract, budget), by record and reason."}, []string{"record", "reason"})
	if opts.Registry != nil {
		opts.Registry.MustRegister(w.rejected, w.receivedRejected)
	}
	return w
}

// Enforced reports whether this node checks region identity.
func (w *Writer) Enforced() bool { return w.verifier != nil }

// Region is the region this node writes for.
func (w *Writer) Region() string { return w.opts.Region }

// Result is the outcome of one write of Writer.Write.
type Result struct {
	// Stamp is the write's stamp, when it was accepted.
	Stamp store.Stamp
	// Err is why the write was refused: a *contracts.RejectError, or a
	// *store.NotFoundError for a delete of a record the region does not
	// hold. Nil when accepted.
	Err error
}

// Write checks writes of this node's region through the pipeline (see
// Batch.Check), signs those accepted and applies them in one transaction.
// It returns the outcome of each write, and the error of applying (then
// nothing was written).
func (w *Writer) Write(ctx context.Context, recs []Record, leaks *contracts.LeakSet) ([]Result, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.opts.Now()
	b := &Batch{Contract: w.opts.Contract, Holdings: &storeHoldings{st: w.opts.Store, counts: map[[2]string]int{}},
		Budgets: w.budgets, Leaks: leaks, Now: now}
	res := make([]Result, len(recs))
	var accepted []Stored
	for i, r := range recs {
		r.Region = w.opts.Region
		if r.Deleted() {
			if exists, _, err := b.Holdings.Holds(r.Name, r.Region, r.Key); err != nil {
				return nil, err
			} else if live, seen := b.live[[3]string{r.Name, r.Region, r.Key}]; !exists && !(seen && live) {
				res[i].Err = &store.NotFoundError{Table: r.Name, Key: r.StoreKey()}
				continue
			}
		}
		if err := b.Check(Write{Record: r, Writer: w.opts.Region}); err != nil {
			res[i].Err = err
			reason := "invalid"
			var re *contracts.RejectError
			if errors.As(err, &re) {
				reason = re.Reason()
			}
			w.rejected.WithLabelValues(r.Name, reason).Inc()
			continue
		}
		s, err := w.stamped(r)
		if err != nil {
			return nil, err
		}
		res[i].Stamp = s.Stamp
		accepted = append(accepted, s)
	}
	return res, w.apply(ctx, accepted)
}

// Beat writes this region's heartbeat.
func (w *Writer) Beat(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, err := w.stamped(Record{Name: HeartbeatTable, Region: w.opts.Region, Key: w.opts.Region, Value: []byte(w.opts.Node)})
	if err != nil {
		return err
	}
	return w.apply(ctx, []Stored{s})
}

// stamped gives r the causal length and stamp of its write. w.mu is held.
func (w *Writer) stamped(r Record) (Stored, error) {
	cur, err := w.opts.Store.GetAny(r.Name, r.StoreKey())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Stored{}, err
	}
	cl := max(cur.CL, 1)
	if cl%2 == 0 { // a store tombstone: write the next life of the row
		cl++
	}
	return Stored{Record: r, CL: cl, Stamp: store.Stamp{HLC: w.opts.Clock.Now(), Node: w.node}}, nil
}

// apply signs and merges recs. The store reports them to the tier like
// changes from a peer, so they are gossiped. w.mu is held.
func (w *Writer) apply(ctx context.Context, recs []Stored) error {
	if len(recs) == 0 {
		return nil
	}
	if w.opts.Signer != nil {
		for i := 0; i < len(recs); i += MaxBatch {
			if err := w.opts.Signer.Sign(recs[i:min(i+MaxBatch, len(recs))]); err != nil {
				return err
			}
		}
	}
	changes := make([]store.Change, len(recs))
	for i, s := range recs {
		changes[i] = s.Change()
	}
	_, rejected, err := w.opts.Store.Merge(ctx, changes)
	if err != nil {
		return err
	}
	if len(rejected) > 0 {
		return fmt.Errorf("global: the store refused %s: %w", rejected[0].Change.Key, rejected[0].Err)
	}
	return nil
}

// NeedsSigning reports whether s, a record of this region, should be
// written again to carry this node's current key: it is unsigned, or
// signed by another key (the region's key was rotated).
func (w *Writer) NeedsSigning(s Stored) bool {
	if w.opts.Signer == nil {
		return false
	}
	return len(s.Proof) < 33 || !bytes.Equal(s.Proof[1:33], w.opts.Signer.Public())
}

// Accept checks a change received from a peer before the store merges it:
// the row's layout, then the proof that the owning region wrote it (when
// region identity is enforced), then, if the change brings anything new,
// the pipeline of Batch.Check with the receiver's own count and rate
// budgets. A refusal is counted in strata_global_received_rejected_total.
// It is the global tier's cluster.Config.Accept.
func (w *Writer) Accept(ch store.Change, from string) error {
	err := w.accept(ch)
	if err != nil {
		w.receivedRejected.WithLabelValues(w.recordLabel(ch.Table), Reason(err)).Inc()
	}
	return err
}

// recordLabel is the metric label of a table name chosen by a peer: the
// name when the contract or the layout knows it, else "unknown", so that
// peers cannot grow the metric's label set.
func (w *Writer) recordLabel(table string) string {
	if _, ok := w.opts.Contract.Record(table); ok || table == HeartbeatTable {
		return table
	}
	return "unknown"
}

func (w *Writer) accept(ch store.Change) error {
	s, err := FromRow(ch.Table, ch.Key, ch.Row)
	if err != nil {
		return err
	}
	if err := w.Verify(&s); err != nil {
		return err
	}
	// Only what is new to this node spends the region's budget: gossip
	// and anti-entropy deliver the same change many times.
	cur, err := w.opts.Store.GetAny(ch.Table, ch.Key)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err == nil && store.Merge(cur, ch.Row).Equal(cur) {
		return nil
	}
	now := w.opts.Now()
	if s.Name == HeartbeatTable {
		if len(s.Value) == 0 || len(s.Value) > store.MaxKeyLen {
			return fmt.Errorf("%w: heartbeat of %s names no node", ErrLayout, s.Region)
		}
		if !w.received.For(HeartbeatTable, s.Region).Allow(now) {
			return &contracts.RejectError{Record: HeartbeatTable, Region: s.Region, Rule: contracts.RuleRate,
				Detail: fmt.Sprintf("region %s has spent its heartbeat budget", s.Region)}
		}
		return nil
	}
	w.held.mu.Lock()
	defer w.held.mu.Unlock()
	b := &Batch{Contract: w.opts.Contract, Holdings: w.held, Budgets: w.received, Now: now}
	if err := b.check(Write{Record: s.Record, Writer: s.Region}, false); err != nil {
		return err
	}
	if !s.Deleted() {
		w.held.add(s.Name, s.Region, s.Key, now)
	}
	return nil
}

// Verify checks s's proof when region identity is enforced.
func (w *Writer) Verify(s *Stored) error {
	if w.verifier == nil {
		return nil
	}
	return w.verifier.Verify(s)
}

// storeHoldings reads holdings from the store, counting each (record,
// region) once: for one local Batch.
type storeHoldings struct {
	st     *store.Store
	counts map[[2]string]int
}

func (h *storeHoldings) Holds(name, region, key string) (bool, int, error) {
	exists, err := liveIn(h.st, name, StoreKey(region, key))
	if err != nil {
		return false, 0, err
	}
	n, ok := h.counts[[2]string{name, region}]
	if !ok {
		if n, err = countLive(h.st, name, region, nil); err != nil {
			return false, 0, err
		}
		h.counts[[2]string{name, region}] = n
	}
	return exists, n, nil
}

// receivedHoldings are a receiver's holdings: the store's, plus the new
// records accepted but not yet merged (the tier checks a whole message,
// then merges it). Counts are cached until the store commits again.
// pending entries are dropped once the store holds them, or after
// pendingTTL (a change accepted, then refused by the store).
type receivedHoldings struct {
	st      *store.Store
	now     func() time.Time
	mu      sync.Mutex
	counts  map[[2]string]heldCount
	pending map[[2]string]map[string]time.Time // (name, region) → key → accepted at
}

type heldCount struct {
	seq  uint64
	keys map[string]bool
}

const pendingTTL = time.Minute

// add records an accepted change to a record the store does not hold yet.
// It follows a Holds of the same record.
func (h *receivedHoldings) add(name, region, key string, at time.Time) {
	nr := [2]string{name, region}
	if h.counts[nr].keys[key] {
		return
	}
	if h.pending[nr] == nil {
		h.pending[nr] = map[string]time.Time{}
	}
	h.pending[nr][key] = at
}

func (h *receivedHoldings) Holds(name, region, key string) (bool, int, error) {
	nr := [2]string{name, region}
	seq := h.st.Seq()
	c, ok := h.counts[nr]
	pending := h.pending[nr]
	if !ok || c.seq != seq {
		c = heldCount{seq: seq, keys: map[string]bool{}}
		if _, err := countLive(h.st, name, region, c.keys); err != nil {
			return false, 0, err
		}
		h.counts[nr] = c
		now := h.now()
		for k, at := range pending {
			if c.keys[k] || now.Sub(at) > pendingTTL {
				delete(pending, k)
			}
		}
	}
	// After the pruning above, pending keys are not in the store.
	_, isPending := pending[key]
	return c.keys[key] || isPending, len(c.keys) + len(pending), nil
}

// liveIn reports whether the store holds a live (not deleted) record.
func liveIn(st *store.Store, table, key string) (bool, error) {
	row, err := st.Get(table, key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	f, _ := row.Field(ValueField)
	return len(f.Value) > 0, nil
}

// countLive counts region's live records of type name, adding their keys
// to keys if not nil.
func countLive(st *store.Store, name, region string, keys map[string]bool) (int, error) {
	rows, err := st.ListPrefix(name, region+"/")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kr := range rows {
		if f, _ := kr.Row.Field(ValueField); len(f.Value) > 0 {
			n++
			if keys != nil {
				keys[kr.Key[len(region)+1:]] = true
			}
		}
	}
	return n, nil
}

// List returns the live records of type name in the store, of every
// region, in store key order; with region set, of that region only.
func List(st *store.Store, name, region string) ([]Stored, error) {
	var rows []store.KeyRow
	var err error
	if region != "" {
		rows, err = st.ListPrefix(name, region+"/")
	} else {
		rows, _, err = st.List(name, "", 0)
	}
	if err != nil {
		return nil, err
	}
	out := make([]Stored, 0, len(rows))
	for _, kr := range rows {
		s, err := FromRow(name, kr.Key, kr.Row)
		if err != nil || s.Deleted() {
			continue // refused on receipt; only an old data file holds such rows
		}
		out = append(out, s)
	}
	return out, nil
}

// Get returns region's record name/key, or a *store.NotFoundError.
func Get(st *store.Store, name, region, key string) (Stored, error) {
	k := StoreKey(region, key)
	if name == HeartbeatTable {
		k = region
	}
	row, err := st.Get(name, k)
	if err != nil {
		return Stored{}, err
	}
	s, err := FromRow(name, k, row)
	if err == nil && s.Deleted() {
		err = &store.NotFoundError{Table: name, Key: k}
	}
	return s, err
}
