package global

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	index    *liveIndex
	held     *pendingHoldings // changes received, accepted, not yet merged
	// local is this node's writes between their check and their commit:
	// its mu is held while a write is checked, so that each write's count
	// budget sees the records of the writes checked before it, committed
	// or not. The commit itself runs without it.
	local  *pendingHoldings
	claims keyClaims // the records writes are writing, until their commit

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
	index := newLiveIndex(opts.Store)
	w := &Writer{opts: opts, node: store.NodeIDOf(opts.Node),
		budgets: NewBudgets(opts.Rate, opts.Burst), received: NewBudgets(opts.Rate, opts.Burst),
		index: index, held: newPendingHoldings(index, opts.Now), local: newPendingHoldings(index, opts.Now)}
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

// Live returns how many live records of type name the global store
// holds, of every region: the store's row count without the signed
// deletes it keeps until tombstone_ttl. It reads the store's change feed
// since the last call, not every record.
func (w *Writer) Live(name string) (int, error) { return w.index.count(name) }

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
// nothing was written, or, with store.ErrUnconfirmed, the outcome is not
// known).
//
// Writes of the same record run one after the other: a write first waits
// until no other write holds any of its records (giving up when ctx
// ends), so that its check and the causal length it reads are not raced.
// Writes of other records are checked meanwhile and commit alongside it;
// they count the records it adds against max_per_region from its check
// on, so concurrent writes never exceed the budget together.
//
// It reads each record's row once, for the causal length of its write;
// the count budget comes from an index of the region's live records kept
// up to date from the store's change feed, not from a scan per write.
func (w *Writer) Write(ctx context.Context, recs []Record, leaks *contracts.LeakSet) ([]Result, error) {
	ids := make([][3]string, len(recs))
	for i, r := range recs {
		ids[i] = [3]string{r.Name, w.opts.Region, r.Key}
	}
	release, err := w.claims.claim(ctx, ids)
	if err != nil {
		return nil, err
	}
	defer release()
	res, accepted, added, err := w.check(recs, leaks)
	if err != nil {
		return nil, err
	}
	err = w.applyNew(ctx, res, accepted)
	// A write whose outcome is unknown keeps its place in the count until
	// the store holds it or pendingTTL passes.
	if !errors.Is(err, store.ErrUnconfirmed) && len(added) > 0 {
		w.local.mu.Lock()
		for _, r := range added {
			w.local.drop(r.Name, r.Region, r.Key)
		}
		w.local.mu.Unlock()
	}
	return res, err
}

// check runs recs through the pipeline, against the store's holdings and
// the writes checked before and not yet committed, and adds the new
// records it accepts to those. It returns each write's outcome so far,
// the accepted records, and those it added.
func (w *Writer) check(recs []Record, leaks *contracts.LeakSet) (res []Result, accepted, added []Record, err error) {
	w.local.mu.Lock()
	defer w.local.mu.Unlock()
	now := w.opts.Now()
	b := &Batch{Contract: w.opts.Contract, Holdings: w.local, Budgets: w.budgets, Leaks: leaks, Now: now}
	res = make([]Result, len(recs))
	for i, r := range recs {
		r.Region = w.opts.Region
		if r.Deleted() {
			if exists, _, err := b.Holdings.Holds(r.Name, r.Region, r.Key); err != nil {
				return nil, nil, nil, err
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
		accepted = append(accepted, r)
	}
	// Only now, so that the batch does not count its own records twice
	// (Batch counts them as it goes).
	for _, r := range accepted {
		if r.Deleted() {
			continue
		}
		ok, err := w.local.add(r.Name, r.Region, r.Key, now)
		if err != nil {
			for _, a := range added {
				w.local.drop(a.Name, a.Region, a.Key)
			}
			return nil, nil, nil, err
		}
		if ok {
			added = append(added, r)
		}
	}
	return res, accepted, added, nil
}

// applyNew stamps the accepted records, in the order of recs, sets their
// stamps in res and applies them. The caller holds their claims.
func (w *Writer) applyNew(ctx context.Context, res []Result, accepted []Record) error {
	out := make([]Stored, 0, len(accepted))
	for i := range res {
		if res[i].Err != nil {
			continue
		}
		s, err := w.stamped(accepted[len(out)])
		if err != nil {
			return err
		}
		res[i].Stamp = s.Stamp
		out = append(out, s)
	}
	return w.apply(ctx, out)
}

// Beat writes this region's heartbeat.
func (w *Writer) Beat(ctx context.Context) error {
	r := Record{Name: HeartbeatTable, Region: w.opts.Region, Key: w.opts.Region, Value: []byte(w.opts.Node)}
	release, err := w.claims.claim(ctx, [][3]string{{r.Name, r.Region, r.Key}})
	if err != nil {
		return err
	}
	defer release()
	s, err := w.stamped(r)
	if err != nil {
		return err
	}
	return w.apply(ctx, []Stored{s})
}

// stamped gives r the causal length and stamp of its write. The caller
// holds r's claim.
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
// changes from a peer, so they are gossiped. The caller holds their
// claims.
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
		_, err := w.held.add(s.Name, s.Region, s.Key, now)
		return err
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
