package global

import (
	"errors"
	"sync"
	"time"

	"github.com/strata-state/strata/contracts"
)

// Default write budget of a region for one record type, on writers and
// receivers alike: records per second, and burst. The burst covers a full
// state transfer of a record type at the largest max_per_region in the
// example contract.
const (
	DefaultRate  = 1000
	DefaultBurst = 10_000
)

// Budgets holds the rate budget of each (record type, region). It is safe
// for concurrent use.
type Budgets struct {
	rate  float64
	burst int
	mu    sync.RWMutex
	m     map[[2]string]*contracts.Budget // record, region
}

// NewBudgets returns budgets of rate writes per second and burst writes;
// zero rate: DefaultRate and DefaultBurst.
func NewBudgets(rate float64, burst int) *Budgets {
	if rate <= 0 {
		rate, burst = DefaultRate, DefaultBurst
	}
	return &Budgets{rate: rate, burst: burst, m: map[[2]string]*contracts.Budget{}}
}

// For returns the budget of region for record.
func (b *Budgets) For(record, region string) *contracts.Budget {
	if b == nil {
		return nil
	}
	// Read on every write and every change received, added to once per
	// (record, region): a read lock and a plain map cost about half what
	// sync.Map's boxed key does.
	k := [2]string{record, region}
	b.mu.RLock()
	v, ok := b.m[k]
	b.mu.RUnlock()
	if ok {
		return v
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok = b.m[k]; !ok {
		v = contracts.NewBudget(b.rate, b.burst)
		b.m[k] = v
	}
	return v
}

// Holdings is what the count budget needs to know of the records a region
// holds now. Implementations read a store or a map; they must be safe for
// use by the goroutine that runs the Batch.
type Holdings interface {
	// Holds reports whether region holds a live record name/key, and how
	// many live records of type name it holds.
	Holds(name, region, key string) (exists bool, count int, err error)
}

// NoHoldings is the holdings of a region that holds nothing yet: a
// reducer's complete output, checked from scratch.
type NoHoldings struct{}

// Holds reports nothing held.
func (NoHoldings) Holds(string, string, string) (bool, int, error) { return false, 0, nil }

// Write is one write as the pipeline sees it: the record, and the region of
// whoever writes it.
type Write struct {
	Record
	// Writer is the writer's region: this node's for its own writes, the
	// region whose key signed a received change. It must be Record.Region.
	Writer string
}

// Batch checks a sequence of writes against one view of the holdings,
// counting what earlier writes of the batch add and remove, with the
// pipeline every global write passes. It is pure: no clock (Now is given)
// and no I/O beyond Holdings. A Batch is used by one goroutine.
type Batch struct {
	// Contract checks the writes.
	Contract *contracts.Contract
	// Holdings is what the regions hold before the batch.
	Holdings Holdings
	// Budgets are the rate budgets; nil: no rate limit.
	Budgets *Budgets
	// Leaks are the regional_only values of a reducer's inputs; nil for
	// writes with no input rows.
	Leaks *contracts.LeakSet
	// Now is the time of the writes, for the rate budget.
	Now time.Time

	live  map[[3]string]bool // name, region, key → live after earlier writes
	delta map[[2]string]int  // name, region → records added by earlier writes
}

// Check runs w through the pipeline: leak values (Batch.Leaks) →
// ownership → count budget → rate budget → contracts.CheckWrite (which
// applies the three with the contract's rules), and returns nil or a
// *contracts.RejectError. An accepted write counts for the next ones.
//
// A delete of a record the region does not hold is accepted (it writes a
// signed empty value, which changes nothing a reader sees).
func (b *Batch) Check(w Write) error { return b.check(w, true) }

// check is Check; with count false, an accepted write is not counted for
// the next ones (a batch of one write, as Writer.Accept runs).
func (b *Batch) check(w Write, count bool) error {
	id := [3]string{w.Name, w.Region, w.Key}
	nr := [2]string{w.Name, w.Region}
	exists, n, err := b.Holdings.Holds(w.Name, w.Region, w.Key)
	if err != nil {
		return err
	}
	if live, ok := b.live[id]; ok {
		exists = live
	}
	n += b.delta[nr]
	if !w.Deleted() && !exists {
		n++
	}
	cw := contracts.Write{Record: w.Name, Key: w.Key, Region: w.Region, Writer: w.Writer,
		Value: w.Value, Delete: w.Deleted(), Count: n, Budget: b.Budgets.For(w.Name, w.Region), Now: b.Now, Leaks: b.Leaks}
	if err := b.Contract.CheckWrite(cw); err != nil {
		return err
	}
	if !count {
		return nil
	}
	if b.live == nil {
		b.live, b.delta = map[[3]string]bool{}, map[[2]string]int{}
	}
	switch {
	case w.Deleted() && exists:
		b.delta[nr]--
	case !w.Deleted() && !exists:
		b.delta[nr]++
	}
	b.live[id] = !w.Deleted()
	return nil
}

// Reason is the label of a refused write in the rejection metrics: the
// rule without its detail, with both budgets ("too_many" and "rate")
// under "budget", and proof failures under their own reasons.
func Reason(err error) string {
	var pe *ProofError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	if errors.Is(err, ErrLayout) {
		return "layout"
	}
	var re *contracts.RejectError
	if errors.As(err, &re) {
		switch re.Reason() {
		case contracts.RuleTooMany, contracts.RuleRate:
			return "budget"
		}
		return re.Reason()
	}
	return "invalid"
}
