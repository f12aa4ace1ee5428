package publish

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// Reducer is a reducer as the publisher runs it: a *reducer.Reducer, or a
// native function in tests. Its methods must be safe for concurrent use.
type Reducer interface {
	// Name is the reducer's configured name.
	Name() string
	// Config holds its inputs and outputs.
	Config() reducer.Config
	// Run computes the region's complete set of the reducer's records.
	Run(ctx context.Context, region string, tables []reducer.Table) (*reducer.Result, error)
	// Status is the reducer's own part of its status (runs, failures).
	Status() reducer.Status
}

var _ Reducer = (*reducer.Reducer)(nil)

// Job is a reducer with its schedule.
type Job struct {
	Reducer Reducer
	// Debounce is how long after the first change to an input table the
	// reducer runs, so that a burst of changes costs one run; zero runs
	// it at once.
	Debounce time.Duration
}

// Role tells the publisher whether this node is its region's publisher.
// Publishing must be safe for concurrent use and must not block.
type Role interface {
	Publishing() bool
}

// RoleFunc adapts a function to Role.
type RoleFunc func() bool

// Publishing calls f.
func (f RoleFunc) Publishing() bool { return f() }

// Options configure a Publisher.
type Options struct {
	// Region is the region this node publishes for; Node is this node.
	Region, Node string
	// Contract has the tables the reducers read.
	Contract *contracts.Contract
	// Regional is read. Global is read for what the region has published;
	// Writer writes to it.
	Regional, Global *store.Store
	Writer           *global.Writer
	// Jobs are the reducers to run.
	Jobs []Job
	// Failed are reducers that did not load, shown in Status as they are.
	Failed []reducer.Status
	// Role says whether this node publishes now. Only the publisher runs
	// reducers and writes heartbeats.
	Role Role
	// Heartbeat is the period of the region's heartbeat, and of checking
	// Role. Default 5s.
	Heartbeat time.Duration
	// RetryAfter is how long after a failed run, or one with writes
	// refused, it is tried again. Default Heartbeat.
	RetryAfter time.Duration
	// Now is the time; default time.Now.
	Now func() time.Time
	// Logger and Registry (metrics; nil: unregistered).
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Publisher runs a region's reducers and publishes their records.
type Publisher struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	status map[string]*published // by reducer name

	runs   *prometheus.CounterVec
	writes *prometheus.CounterVec
}

// published is the publisher's part of a reducer's status.
type published struct {
	upserts, deletes, rejected int
	unchanged                  uint64
	problem                    string // PublishError
	lastLogged                 string // the last problem logged, to log each once
}

// New returns a Publisher.
func New(opts Options) *Publisher {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 5 * time.Second
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = opts.Heartbeat
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Publisher{opts: opts, log: opts.Logger.With("region", opts.Region), status: map[string]*published{}}
	for _, j := range opts.Jobs {
		p.status[j.Reducer.Name()] = &published{}
	}
	p.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_publish_runs_total",
		Help: "Reducer runs on the publisher, by reducer and result (published, unchanged, rejected, failed)."}, []string{"reducer", "result"})
	p.writes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_publish_writes_total",
		Help: "Global record writes by the publisher, by record and kind (upsert, delete)."}, []string{"record", "kind"})
	if opts.Registry != nil {
		opts.Registry.MustRegister(p.runs, p.writes)
	}
	return p
}

// Status returns each reducer's status, in configuration order, then the
// reducers that did not load.
func (p *Publisher) Status() []reducer.Status {
	out := make([]reducer.Status, 0, len(p.opts.Jobs)+len(p.opts.Failed))
	for _, j := range p.opts.Jobs {
		st := j.Reducer.Status()
		p.mu.Lock()
		ps := p.status[j.Reducer.Name()]
		st.Upserts, st.Deletes, st.Rejected, st.Unchanged, st.PublishError = ps.upserts, ps.deletes, ps.rejected, ps.unchanged, ps.problem
		p.mu.Unlock()
		if st.Rejected > 0 && st.LastRun != nil {
			// A run whose records the global pipeline refused (a leak,
			// a contract violation) is not OK, though the reducer ran.
			st.LastRun.OK = false
		}
		out = append(out, st)
	}
	return append(out, p.opts.Failed...)
}

// Rejected reports whether the global pipeline refused records of the
// publisher's last run of the reducer called name (for
// strata_reducer_last_run_ok).
func (p *Publisher) Rejected(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps, ok := p.status[name]
	return ok && ps.rejected > 0
}

// Problems says, one line each, which reducers did not load, failed their
// last run or had records of it refused, for /v1/status.
func (p *Publisher) Problems() []string {
	var out []string
	for _, st := range p.Status() {
		switch {
		case st.LastRun == nil && st.LastError != nil:
			out = append(out, fmt.Sprintf("reducer %s did not load: %s", st.Name, st.LastError.Message))
		case st.Rejected > 0:
			out = append(out, fmt.Sprintf("reducer %s: %d record(s) of its last run were rejected and not published (see /v1/reducers): %s",
				st.Name, st.Rejected, st.PublishError))
		case st.PublishError != "":
			out = append(out, fmt.Sprintf("reducer %s: its last run was not published: %s", st.Name, st.PublishError))
		case st.LastRun != nil && !st.LastRun.OK && st.LastError != nil:
			out = append(out, fmt.Sprintf("reducer %s: its last run failed: %s", st.Name, st.LastError.Message))
		}
	}
	return out
}

// Run publishes until ctx ends. It feeds the Schedule its events: a
// regional commit (which tables changed, from the change feed), a timer
// for the next due run, and the heartbeat tick, on which it also checks
// whether this node is still the publisher.
func (p *Publisher) Run(ctx context.Context) {
	sched := &Schedule{RetryAfter: p.opts.RetryAfter}
	jobs := map[string]Reducer{}
	for _, j := range p.opts.Jobs {
		sched.Add(j.Reducer.Name(), j.Reducer.Config().Inputs, j.Debounce)
		jobs[j.Reducer.Name()] = j.Reducer
	}
	heartbeat := time.NewTicker(p.opts.Heartbeat)
	defer heartbeat.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	pos := p.opts.Regional.Seq()
	checkRole := true // at start, then on each heartbeat tick: it asks both tiers' membership
	for {
		changed := p.opts.Regional.Changed()
		now := p.opts.Now()
		if sched.Active() {
			pos = p.readChanges(sched, pos, now)
		} else {
			// Not the publisher: nothing to run, so no need to decode the
			// feed; becoming the publisher marks every job due anyway.
			pos = p.opts.Regional.Seq()
		}
		if checkRole {
			checkRole = false
			wasActive := sched.Active()
			sched.SetActive(p.opts.Role.Publishing(), now)
			if sched.Active() && !wasActive {
				p.log.Info("this node is now the region's publisher")
				p.beat(ctx)
			}
		}
		for _, name := range sched.Due(now) {
			clean := p.Publish(ctx, jobs[name])
			sched.Done(name, clean, p.opts.Now())
		}
		if next, ok := sched.Next(); ok {
			timer.Reset(max(next.Sub(p.opts.Now()), 0))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			checkRole = true
			if sched.Active() {
				p.beat(ctx)
			}
		case <-changed:
		case <-timer.C:
		}
	}
}

// readChanges tells sched which tables changed after feed position pos, and
// returns the new position.
func (p *Publisher) readChanges(sched *Schedule, pos uint64, now time.Time) uint64 {
	for {
		evs, next, err := p.opts.Regional.FeedSince(pos, "", 4096)
		if err != nil {
			if !errors.Is(err, store.ErrFeedTrimmed) && !errors.Is(err, store.ErrClosed) {
				p.log.Warn("reading the regional change feed", "err", err)
			}
			sched.ChangedAll(now)
			return p.opts.Regional.Seq()
		}
		seen := map[string]bool{}
		for _, ev := range evs {
			if !seen[ev.Table] {
				seen[ev.Table] = true
				sched.Changed(ev.Table, now)
			}
		}
		if len(evs) < 4096 || next == pos {
			return next
		}
		pos = next
	}
}

// beat writes the region's heartbeat.
func (p *Publisher) beat(ctx context.Context) {
	if err := p.opts.Writer.Beat(ctx); err != nil && !errors.Is(err, store.ErrClosed) && ctx.Err() == nil {
		p.log.Warn("writing heartbeat", "err", err)
	}
}

// Publish runs one reducer on the current rows and writes what differs
// from the region's published records. It reports whether the run was
// clean: it succeeded and no write was refused. A failed run changes
// nothing published.
func (p *Publisher) Publish(ctx context.Context, r Reducer) bool {
	cfg := r.Config()
	leaks := contracts.NewLeakSet()
	tables, err := p.inputs(cfg.Inputs, leaks)
	if err != nil {
		return p.fail(r, err, false)
	}
	res, err := r.Run(ctx, p.opts.Region, tables)
	if err != nil {
		return p.fail(r, err, true)
	}
	var published []global.Stored
	for _, name := range cfg.Outputs {
		recs, err := global.List(p.opts.Global, name, p.opts.Region)
		if err != nil {
			return p.fail(r, err, false)
		}
		published = append(published, recs...)
	}
	out := make([]global.Record, len(res.Records))
	for i, rec := range res.Records {
		out[i] = global.Record{Name: rec.Name, Region: p.opts.Region, Key: rec.Key, Value: rec.Value}
	}
	writes := Decide(published, out, p.opts.Writer.NeedsSigning)
	done, err := p.opts.Writer.Write(ctx, writes, leaks)
	if err != nil {
		return p.fail(r, err, false)
	}
	var upserts, deletes, rejected int
	var firstReject error
	for i, w := range writes {
		kind := "upsert"
		if w.Deleted() {
			kind = "delete"
		}
		switch {
		case done[i].Err != nil:
			rejected++
			firstReject = cmp.Or(firstReject, done[i].Err)
		case w.Deleted():
			deletes++
		default:
			upserts++
		}
		if done[i].Err == nil {
			p.writes.WithLabelValues(w.Name, kind).Inc()
		}
	}
	p.mu.Lock()
	st := p.status[r.Name()]
	st.upserts, st.deletes, st.rejected = upserts, deletes, rejected
	if len(writes) == 0 {
		st.unchanged++
	}
	problem := ""
	if firstReject != nil {
		problem = firstReject.Error()
	}
	logIt := problem != "" && problem != st.lastLogged
	st.problem, st.lastLogged = problem, problem
	p.mu.Unlock()
	if logIt {
		p.log.Warn("global writes rejected (logged again only when the reason changes)", "reducer", r.Name(), "rejected", rejected, "first", firstReject)
	}
	result := "published"
	switch {
	case rejected > 0:
		result = "rejected"
	case len(writes) == 0:
		result = "unchanged"
	}
	p.runs.WithLabelValues(r.Name(), result).Inc()
	return rejected == 0
}

// inputs reads the reducer's input tables and collects their regional_only
// values.
func (p *Publisher) inputs(names []string, leaks *contracts.LeakSet) ([]reducer.Table, error) {
	var tables []reducer.Table
	for _, in := range names {
		sch, ok := p.opts.Contract.Table(in)
		if !ok {
			return nil, fmt.Errorf("input table %q is not in the contract", in)
		}
		t := reducer.Table{Name: in}
		// One read transaction gives the reducer one consistent state;
		// it only collects the rows (Scan hands out copies), and the
		// decoding and the leak values come after it has ended, as
		// Scan's contract asks.
		var rows []store.KeyRow
		if _, err := p.opts.Regional.Scan(in, func(kr store.KeyRow) error {
			rows = append(rows, kr)
			return nil
		}); err != nil {
			return nil, err
		}
		for _, kr := range rows {
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
				return nil, fmt.Errorf("%s/%s: %w", in, kr.Key, err)
			}
			if err := leaks.Collect(sch, m); err != nil {
				return nil, err
			}
			t.Rows = append(t.Rows, row)
		}
		tables = append(tables, t)
	}
	return tables, nil
}

// fail records a failed run: of the reducer itself (run), whose own
// status holds the error and which logs it, or of the publisher around it,
// logged here when its error differs from the last one.
func (p *Publisher) fail(r Reducer, err error, run bool) bool {
	p.mu.Lock()
	st := p.status[r.Name()]
	logIt := !run && err.Error() != st.lastLogged
	st.problem = ""
	st.upserts, st.deletes, st.rejected = 0, 0, 0 // a failed run writes nothing
	if !run {
		st.problem, st.lastLogged = err.Error(), err.Error()
	}
	p.mu.Unlock()
	if logIt {
		p.log.Warn("reducer run failed; the last good records stay published (logged again only when the error changes)",
			"reducer", r.Name(), "err", err)
	}
	p.runs.WithLabelValues(r.Name(), "failed").Inc()
	return false
}
