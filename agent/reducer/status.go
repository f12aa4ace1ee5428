package reducer

import (
	"errors"
	"time"
)

// stats are a reducer's counters, guarded by Reducer.mu.
type stats struct {
	runs, failures uint64
	byKind         map[string]uint64 // failures by Kind name
	lastRun        *RunStatus
	lastError      *ErrorStatus
}

// Status is what GET /v1/reducers reports about one reducer.
type Status struct {
	// Name is the reducer's name.
	Name string `json:"name"`
	// Hash is the SHA-256 of the module, in hex.
	Hash string `json:"hash"`
	// Source is the module's file or the Go source directory it was built
	// from; empty for a module given as bytes.
	Source string `json:"source,omitempty"`
	// Interrupt is how runs are stopped at their timeout: "inline" (the
	// module is instrumented to check for it) or "wazero" (wazero's
	// check, when the host was told to use it; about 3x slower).
	Interrupt string `json:"interrupt,omitempty"`
	// Inputs and Outputs are the configured tables and records.
	Inputs  []string `json:"inputs"`
	Outputs []string `json:"outputs"`
	// Runs and Failures count the runs since the reducer was loaded.
	Runs     uint64 `json:"runs"`
	Failures uint64 `json:"failures"`
	// LastRun is the latest run, successful or not; nil before the first.
	LastRun *RunStatus `json:"last_run"`
	// LastError is the latest failure; nil if none.
	LastError *ErrorStatus `json:"last_error"`

	// The publisher's part, zero on a node that does not publish:
	// Upserts, Deletes and Rejected count the global writes of its last
	// run of the reducer, Unchanged the runs that wrote nothing.
	Upserts   int    `json:"upserts"`
	Deletes   int    `json:"deletes"`
	Rejected  int    `json:"rejected"`
	Unchanged uint64 `json:"skipped_unchanged"`
	// PublishError says why the publisher's last run did not publish
	// cleanly, when the run itself succeeded: the first write the global
	// pipeline refused, or an error reading the inputs or writing the
	// records. Empty after a clean run.
	PublishError string `json:"publish_error,omitempty"`
}

// RunStatus describes one run.
type RunStatus struct {
	// At is when the run started.
	At time.Time `json:"at"`
	// OK is false when the run failed, or (in the publisher's status) when
	// records of it were rejected: see Status.Rejected.
	OK bool `json:"ok"`
	// DurationMS is how long it took, in milliseconds.
	DurationMS float64 `json:"duration_ms"`
	// RowsIn counts the input rows; RecordsOut the records produced (0
	// when the run failed).
	RowsIn     int `json:"rows_in"`
	RecordsOut int `json:"records_out"`
}

// ErrorStatus describes a failed run.
type ErrorStatus struct {
	// At is when the failed run started.
	At time.Time `json:"at"`
	// Kind is the Kind's name, e.g. "timeout".
	Kind string `json:"kind"`
	// Message is the error's text.
	Message string `json:"message"`
}

// record updates the stats after a run.
func (r *Reducer) record(start time.Time, d time.Duration, res *Result, err error) {
	run := &RunStatus{At: start.UTC(), OK: err == nil, DurationMS: float64(d.Microseconds()) / 1000}
	if res != nil {
		run.RowsIn, run.RecordsOut = res.RowsIn, len(res.Records)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.runs++
	r.stats.lastRun = run
	if err != nil {
		r.stats.failures++
		kind := "unknown"
		var e *Error
		if errors.As(err, &e) {
			kind = e.Kind.String()
		}
		if r.stats.lastError == nil || r.stats.lastError.Message != err.Error() {
			r.log.Warn("reducer run failed (logged again only when the error changes)", "err", err)
		}
		r.stats.lastError = &ErrorStatus{At: run.At, Kind: kind, Message: err.Error()}
		if r.stats.byKind == nil {
			r.stats.byKind = map[string]uint64{}
		}
		r.stats.byKind[kind]++
	}
}

// Status returns the reducer's status, ready to encode as JSON. It is safe
// to call concurrently with Run.
func (r *Reducer) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Status{
		Name:      r.cfg.Name,
		Hash:      r.hash,
		Source:    r.source,
		Interrupt: r.interrupt,
		Inputs:    append([]string{}, r.cfg.Inputs...),
		Outputs:   append([]string{}, r.cfg.Outputs...),
		Runs:      r.stats.runs,
		Failures:  r.stats.failures,
	}
	if r.stats.lastRun != nil {
		run := *r.stats.lastRun
		s.LastRun = &run
	}
	if r.stats.lastError != nil {
		e := *r.stats.lastError
		s.LastError = &e
	}
	return s
}

// StatusBody is the JSON body of GET /v1/reducers.
type StatusBody struct {
	Reducers []Status `json:"reducers"`
}

// Statuses returns the status of each reducer, in the order given.
func Statuses(rs []*Reducer) StatusBody {
	body := StatusBody{Reducers: make([]Status, 0, len(rs))}
	for _, r := range rs {
		body.Reducers = append(body.Reducers, r.Status())
	}
	return body
}
