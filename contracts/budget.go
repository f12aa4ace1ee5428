package contracts

import (
	"sync"
	"time"
)

// Budget bounds a write rate: a token bucket that holds up to Burst tokens
// and gains Rate tokens per second; each write takes one. It is the "rate"
// step of CheckWrite: one Budget per (region, record), owned by the caller.
//
// A Budget reads no clock: every call is given the current time, so tests
// and simulations drive it without sleeping. Time that goes backwards adds
// no tokens. A Budget is safe for concurrent use.
type Budget struct {
	rate  float64 // tokens per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time // when tokens was last brought up to date; zero: never
}

// NewBudget returns a full budget that allows burst writes at once and rate
// writes per second on average. A rate of 0 allows burst writes in all; a
// burst below 1 is raised to 1.
func NewBudget(rate float64, burst int) *Budget {
	b := float64(max(burst, 1))
	return &Budget{rate: max(rate, 0), burst: b, tokens: b}
}

// Allow takes one token at time now and reports whether there was one.
func (b *Budget) Allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Tokens returns the number of writes the budget would allow at time now,
// without taking any.
func (b *Budget) Tokens(now time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	return b.tokens
}

// refill brings tokens up to date at now. b.mu is held.
func (b *Budget) refill(now time.Time) {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
}
