// Package hlc implements a hybrid logical clock: physical milliseconds plus a
// logical counter, packed in one uint64 so that stamps compare as integers.
//
// Every write in strata carries a stamp (hlc, node). The clock keeps stamps
// close to wall time, strictly increasing on one node, and ahead of every
// remote stamp the node has seen, so that causally later writes win
// last-writer-wins merges. A remote stamp too far in the future is refused:
// one host with a bad clock must not win every write.
package hlc

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// logicalBits is the width of the logical counter in a Timestamp.
const logicalBits = 16

const logicalMask = 1<<logicalBits - 1

// ErrDrift is returned by Update when a remote timestamp is further ahead of
// the local physical clock than the allowed drift.
var ErrDrift = errors.New("hlc: remote timestamp too far in the future")

// Timestamp is a hybrid logical time: the top 48 bits are Unix milliseconds,
// the low 16 bits a logical counter. Timestamps order as plain integers.
type Timestamp uint64

// New packs physical milliseconds and a logical counter.
func New(ms int64, logical uint16) Timestamp {
	return Timestamp(uint64(ms)<<logicalBits | uint64(logical))
}

// Millis is the physical part in Unix milliseconds.
func (t Timestamp) Millis() int64 { return int64(uint64(t) >> logicalBits) }

// Logical is the logical counter.
func (t Timestamp) Logical() uint16 { return uint16(uint64(t) & logicalMask) }

// Time is the physical part as a time.Time in UTC.
func (t Timestamp) Time() time.Time { return time.UnixMilli(t.Millis()).UTC() }

// String formats the timestamp as "<unix ms>.<logical>".
func (t Timestamp) String() string { return fmt.Sprintf("%d.%d", t.Millis(), t.Logical()) }

// Clock is a hybrid logical clock. It is safe for concurrent use.
//
// The physical source is injected so that tests and the pure core can drive
// time explicitly.
type Clock struct {
	now      func() time.Time
	maxDrift time.Duration

	mu   sync.Mutex
	last Timestamp
}

// NewClock returns a clock reading physical time from now (time.Now when nil)
// that refuses remote timestamps more than maxDrift ahead of it. A maxDrift
// of zero or less disables the guard.
func NewClock(now func() time.Time, maxDrift time.Duration) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now, maxDrift: maxDrift}
}

// Now returns a timestamp strictly greater than every timestamp this clock
// returned or accepted before.
func (c *Clock) Now() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tick(New(c.now().UnixMilli(), 0))
}

// tick advances last to max(last+1, phys) and returns it. Caller holds mu.
func (c *Clock) tick(phys Timestamp) Timestamp {
	next := c.last + 1 // a logical overflow carries into the milliseconds
	if phys > next {
		next = phys
	}
	c.last = next
	return next
}

// Update merges a timestamp received from a peer, so that later local
// stamps order after it. It returns ErrDrift, and leaves the clock as it
// was, when remote is more than the allowed drift ahead of physical time.
func (c *Clock) Update(remote Timestamp) error {
	if err := c.Check(remote); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote > c.last {
		c.last = remote
	}
	return nil
}

// Check reports whether remote is within the allowed drift of physical time,
// without moving the clock.
func (c *Clock) Check(remote Timestamp) error {
	if c.maxDrift <= 0 {
		return nil
	}
	now := c.now().UnixMilli()
	if ahead := remote.Millis() - now; ahead > c.maxDrift.Milliseconds() {
		return fmt.Errorf("%w: %s is %s ahead (limit %s)", ErrDrift, remote,
			time.Duration(ahead)*time.Millisecond, c.maxDrift)
	}
	return nil
}

// Last returns the greatest timestamp issued or accepted so far.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}
