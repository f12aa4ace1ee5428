package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// Options configure a Publisher.
type Options struct {
	// Region is the region this node publishes for; Node is this node.
	Region, Node string
	// Contract has the tables the reducers read and the records they write.
	Contract *contracts.Contract
	// Regional is read; Global is written.
	Regional, Global *store.Store
	// Reducers run on every change of their input tables.
	Reducers []*reducer.Reducer
	// Failed are reducers that did not load, shown in Status with their
	// error.
	Failed []ReducerStatus
	// Active reports whether this node is the region's publisher now. Only
	// the active node runs reducers and writes heartbeats.
	Active func() bool
	// Debounce is how long after a regional change a run starts, so that a
	// burst of changes costs one run. Default 250ms.
	Debounce time.Duration
	// Heartbeat is the period of the region's heartbeat. Default 5s.
	Heartbeat time.Duration
	// Rate and Burst bound each record type's writes for this region
	// (records per second); zero: 1,000/s with a burst of 10,000.
	Rate  float64
	Burst int
	// Logger and Registry (metrics; nil: unregistered).
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Publisher runs a region's reducers and publishes their records.
type Publisher struct {
	opts    Options
	log     *slog.Logger
	budgets map[string]*contracts.Budget

	mu     sync.Mutex
	status map[string]*ReducerStatus

	rejected *prometheus.CounterVec
	runs     *prometheus.CounterVec
	writes   *prometheus.CounterVec
}

// ReducerStatus is what GET /v1/reducers shows of one reducer.
type ReducerStatus struct {
	Name       string    `json:"name"`
	Hash       string    `json:"hash"`
	Inputs     []string  `json:"inputs"`
	Outputs    []string  `json:"outputs"`
	LastRun    time.Time `json:"last_run,omitzero"`
	RowsIn     int       `json:"rows_in"`
	RecordsOut int       `json:"records_out"`
	Upserts    int       `json:"upserts"`
	Deletes    int       `json:"deletes"`
	Rejected   int       `json:"rejected"`
	DurationMS float64   `json:"duration_ms"`
	LastError  string    `json:"last_error,omitempty"`
	Runs       int       `json:"runs"`
	Skipped    int       `json:"skipped_unchanged"`
}

// New returns a Publisher.
func New(opts Options) *Publisher {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 250 * time.Millisecond
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 5 * time.Second
	}
	if opts.Rate <= 0 {
		opts.Rate, opts.Burst = 1000, 10_000
	}
	p := &Publisher{opts: opts, log: opts.Logger.With("region", opts.Region), budgets: map[string]*contracts.Budget{}, status: map[string]*ReducerStatus{}}
	for _, r := range opts.Reducers {
		cfg := r.Config()
		p.status[r.Name()] = &ReducerStatus{Name: r.Name(), Hash: r.Hash(), Inputs: cfg.Inputs, Outputs: cfg.Outputs}
		for _, out := range cfg.Outputs {
			p.budgets[out] = contracts.NewBudget(opts.Rate, opts.Burst)
		}
	}
	p.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_global_rejected_total",
		Help: "Global writes refused by the contract pipeline, by record and reason."}, []string{"record", "reason"})
	p.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_publish_runs_total",
		Help: "Reducer runs on the publisher, by reducer and result (published, unchanged, failed)."}, []string{"reducer", "result"})
	p.writes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_publish_writes_total",
		Help: "Global record writes by the publisher, by record and kind (upsert, delete)."}, []string{"record", "kind"})
	if opts.Registry != nil {
		opts.Registry.MustRegister(p.rejected, p.runs, p.writes)
	}
	return p
}

// Status returns each reducer's status, in configuration order.
func (p *Publisher) Status() []ReducerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ReducerStatus, 0, len(p.opts.Reducers))
	for _, r := range p.opts.Reducers {
		out = append(out, *p.status[r.Name()])
	}
	return append(out, p.opts.Failed...)
}

// Run publishes until ctx ends: after each regional change (debounced) it
// runs every reducer, and it writes the heartbeat periodically, while this
// node is the region's publisher.
func (p *Publisher) Run(ctx context.Context) {
	heartbeat := time.NewTicker(p.opts.Heartbeat)
	defer heartbeat.Stop()
	var lastSeq uint64
	wasActive, retry := false, false
	for {
		changed := p.opts.Regional.Changed()
		active := p.opts.Active()
		if active {
			if !wasActive {
				p.log.Info("this node is now the region's publisher")
				p.beat(ctx)
			}
			if seq := p.opts.Regional.Seq(); seq != lastSeq || !wasActive || retry {
				lastSeq = seq
				// A run that failed or had writes refused (a rate budget
				// says "later") is tried again on the next heartbeat tick.
				retry = !p.PublishAll(ctx)
			}
		}
		wasActive = active
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			if active {
				p.beat(ctx)
			}
		case <-changed:
			select { // debounce: let the burst finish
			case <-ctx.Done():
				return
			case <-time.After(p.opts.Debounce):
			}
		}
	}
}

// beat writes the region's heartbeat.
func (p *Publisher) beat(ctx context.Context) {
	_, err := p.opts.Global.Apply(ctx, store.Mutation{Op: store.OpPut, Table: HeartbeatTable, Key: p.opts.Region,
		Fields: []store.FieldValue{{Num: valueField, Value: []byte(p.opts.Node)}}})
	if err != nil && !errors.Is(err, store.ErrClosed) {
		p.log.Warn("writing heartbeat", "err", err)
	}
}

// PublishAll runs every reducer once. It reports whether every run
// succeeded with no write refused.
func (p *Publisher) PublishAll(ctx context.Context) bool {
	clean := true
	for _, r := range p.opts.Reducers {
		// Failures are logged (once per distinct error) and in Status.
		_, err := p.Publish(ctx, r)
		p.mu.Lock()
		rejected := p.status[r.Name()].Rejected
		p.mu.Unlock()
		if err != nil || rejected > 0 {
			clean = false
		}
	}
	return clean
}

// Publish runs one reducer on the current rows and publishes the
// difference. A failed run changes nothing published.
func (p *Publisher) Publish(ctx context.Context, r *reducer.Reducer) (Plan, error) {
	cfg := r.Config()
	st := p.statusOf(r.Name())
	leaks := contracts.NewLeakSet()
	var tables []reducer.Table
	for _, in := range cfg.Inputs {
		sch, ok := p.opts.Contract.Table(in)
		if !ok {
			return Plan{}, p.fail(r, st, fmt.Errorf("input table %q is not in the contract", in))
		}
		t := reducer.Table{Name: in}
		_, err := p.opts.Regional.Scan(in, func(kr store.KeyRow) error {
			fields := make([]contracts.FieldValue, 0, len(kr.Row.Fields))
			var row []byte
			for _, f := range kr.Row.Fields {
				if len(f.Value) > 0 && sch.Desc.Fields().ByNumber(protowire.Number(f.Num)) != nil {
					fields = append(fields, contracts.FieldValue{Num: protowire.Number(f.Num), Value: f.Value})
					row = append(row, f.Value...)
				}
			}
			m, err := sch.Join(fields)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", in, kr.Key, err)
			}
			if err := leaks.Collect(sch, m); err != nil {
				return err
			}
			t.Rows = append(t.Rows, row)
			return nil
		})
		if err != nil {
			return Plan{}, p.fail(r, st, err)
		}
		tables = append(tables, t)
	}
	res, err := r.Run(ctx, p.opts.Region, tables)
	if err != nil {
		return Plan{}, p.fail(r, st, err)
	}
	out := make([]Record, len(res.Records))
	for i, rec := range res.Records {
		out[i] = Record{Name: rec.Name, Key: rec.Key, Value: rec.Value}
	}
	published, counts, err := p.published(cfg.Outputs)
	if err != nil {
		return Plan{}, p.fail(r, st, err)
	}
	plan := Diff(published, out)
	type nameKey struct{ name, key string }
	exists := make(map[nameKey]bool, len(published))
	for _, rec := range published {
		exists[nameKey{rec.Name, rec.Key}] = true
	}
	// Deletes free their slots before upserts take new ones.
	for _, d := range plan.Deletes {
		counts[d.Name]--
	}
	now := time.Now()
	var muts []store.Mutation
	rejected := 0
	var firstReject error
	for _, u := range plan.Upserts {
		count := counts[u.Name]
		if !exists[nameKey{u.Name, u.Key}] {
			count++
		}
		err := p.opts.Contract.CheckWrite(contracts.Write{Record: u.Name, Key: u.Key, Region: p.opts.Region, Writer: p.opts.Region,
			Value: u.Value, Count: count, Budget: p.budgets[u.Name], Now: now, Leaks: leaks})
		if err != nil {
			p.reject(u.Name, err)
			rejected++
			if firstReject == nil {
				firstReject = err
			}
			continue
		}
		counts[u.Name] = count
		muts = append(muts, store.Mutation{Op: store.OpPut, Table: u.Name, Key: RecordKey(p.opts.Region, u.Key),
			Fields: []store.FieldValue{{Num: valueField, Value: u.Value}}})
		p.writes.WithLabelValues(u.Name, "upsert").Inc()
	}
	for _, d := range plan.Deletes {
		if err := p.opts.Contract.CheckWrite(contracts.Write{Record: d.Name, Key: d.Key, Region: p.opts.Region, Writer: p.opts.Region,
			Delete: true, Budget: p.budgets[d.Name], Now: now}); err != nil {
			p.reject(d.Name, err)
			rejected++
			continue
		}
		muts = append(muts, store.Mutation{Op: store.OpDelete, Table: d.Name, Key: RecordKey(p.opts.Region, d.Key)})
		p.writes.WithLabelValues(d.Name, "delete").Inc()
	}
	if len(muts) > 0 {
		if _, err := p.opts.Global.Apply(ctx, muts...); err != nil {
			return plan, p.fail(r, st, err)
		}
	}
	p.mu.Lock()
	if firstReject != nil && firstReject.Error() != st.LastError {
		p.log.Warn("global writes rejected (logged again only when the reason changes)", "reducer", r.Name(), "rejected", rejected, "first", firstReject)
	}
	st.LastRun, st.RowsIn, st.RecordsOut = now, res.RowsIn, len(res.Records)
	st.Upserts, st.Deletes, st.Rejected = len(plan.Upserts), len(plan.Deletes), rejected
	st.DurationMS = float64(res.Duration.Microseconds()) / 1000
	st.Runs++
	st.LastError = ""
	if firstReject != nil {
		st.LastError = firstReject.Error()
	}
	if plan.Empty() {
		st.Skipped++
	}
	p.mu.Unlock()
	result := "published"
	if plan.Empty() {
		result = "unchanged"
	}
	p.runs.WithLabelValues(r.Name(), result).Inc()
	return plan, nil
}

// published lists this region's live records of the given types, and their
// counts.
func (p *Publisher) published(names []string) ([]Record, map[string]int, error) {
	var out []Record
	counts := map[string]int{}
	prefix := p.opts.Region + "/"
	for _, name := range names {
		rows, err := p.opts.Global.ListPrefix(name, prefix)
		if err != nil {
			return nil, nil, err
		}
		for _, kr := range rows {
			key := strings.TrimPrefix(kr.Key, prefix)
			f, _ := kr.Row.Field(valueField)
			out = append(out, Record{Name: name, Key: key, Value: f.Value})
			counts[name]++
		}
	}
	return out, counts, nil
}

func (p *Publisher) statusOf(name string) *ReducerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status[name]
}

func (p *Publisher) fail(r *reducer.Reducer, st *ReducerStatus, err error) error {
	p.mu.Lock()
	if err.Error() != st.LastError {
		p.log.Warn("reducer run failed; the last good records stay published (logged again only when the error changes)",
			"reducer", r.Name(), "err", err)
	}
	st.LastError = err.Error()
	st.LastRun = time.Now()
	st.Runs++
	p.mu.Unlock()
	p.runs.WithLabelValues(r.Name(), "failed").Inc()
	return err
}

func (p *Publisher) reject(record string, err error) {
	reason := "invalid"
	var re *contracts.RejectError
	if errors.As(err, &re) {
		reason = re.Reason()
	}
	p.rejected.WithLabelValues(record, reason).Inc()
}
