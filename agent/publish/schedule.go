package publish

import (
	"slices"
	"time"
)

// Schedule decides when each reducer runs. It is pure: events and the
// time come in as calls, decisions go out as return values, so every
// scenario (debounce, failover, failure and retry) is a plain test.
//
// The rules: a reducer runs Debounce after the first change to one of its
// input tables since its last run (at once for a zero debounce); only a
// change to its inputs makes it run; a run that fails, or has writes
// refused, is retried RetryAfter later; nothing runs while this node is
// not the region's publisher, and on becoming it every reducer runs at
// once (another gateway published meanwhile).
//
// A Schedule is used by one goroutine.
type Schedule struct {
	// RetryAfter is how long after an unclean run it is retried.
	RetryAfter time.Duration

	active bool
	jobs   []job
}

type job struct {
	name     string
	inputs   []string
	debounce time.Duration
	due      time.Time // zero: nothing to do
}

// Add schedules a reducer with its input tables and debounce.
func (s *Schedule) Add(name string, inputs []string, debounce time.Duration) {
	s.jobs = append(s.jobs, job{name: name, inputs: inputs, debounce: max(debounce, 0)})
}

// SetActive records whether this node is the region's publisher at now.
// On becoming it, every reducer is due at once.
func (s *Schedule) SetActive(active bool, now time.Time) {
	if active && !s.active {
		for i := range s.jobs {
			s.jobs[i].due = now
		}
	}
	s.active = active
}

// Active reports whether this node is the region's publisher.
func (s *Schedule) Active() bool { return s.active }

// Changed records a change to table at now: each reducer reading it is due
// its debounce after the first such change since its last run.
func (s *Schedule) Changed(table string, now time.Time) {
	for i := range s.jobs {
		j := &s.jobs[i]
		if slices.Contains(j.inputs, table) {
			due := now.Add(j.debounce)
			if j.due.IsZero() || due.Before(j.due) {
				j.due = due
			}
		}
	}
}

// ChangedAll records a change to every table (the change feed was trimmed
// before this node read it, so it cannot tell which).
func (s *Schedule) ChangedAll(now time.Time) {
	for i := range s.jobs {
		for _, in := range s.jobs[i].inputs {
			s.Changed(in, now)
		}
	}
}

// Due returns the reducers to run at now, in the order they were added,
// and marks them as running: Done must follow each.
func (s *Schedule) Due(now time.Time) []string {
	if !s.active {
		return nil
	}
	var out []string
	for i := range s.jobs {
		if j := &s.jobs[i]; !j.due.IsZero() && !j.due.After(now) {
			out = append(out, j.name)
			j.due = time.Time{}
		}
	}
	return out
}

// Done records the end of a run started by Due: a clean run needs nothing
// more; an unclean one is due again RetryAfter after now (or sooner, if an
// input changed meanwhile).
func (s *Schedule) Done(name string, clean bool, now time.Time) {
	if clean {
		return
	}
	for i := range s.jobs {
		if j := &s.jobs[i]; j.name == name {
			due := now.Add(s.RetryAfter)
			if j.due.IsZero() || due.Before(j.due) {
				j.due = due
			}
		}
	}
}

// Next returns when the next reducer is due, if one is and this node
// publishes.
func (s *Schedule) Next() (time.Time, bool) {
	var next time.Time
	if !s.active {
		return next, false
	}
	for _, j := range s.jobs {
		if !j.due.IsZero() && (next.IsZero() || j.due.Before(next)) {
			next = j.due
		}
	}
	return next, !next.IsZero()
}
