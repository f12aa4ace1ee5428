package cluster

import (
	"sync"
	"sync/atomic"
	"time"
)

// defaultInboxBytes bounds the bytes of received messages waiting for a
// tier's loops: four of the largest messages a peer may send.
const defaultInboxBytes = 4 * maxMessageSize

// inbox counts the bytes of received messages queued for the gossip and
// sync loops, so that the queues are bounded in bytes as well as in
// messages: a message that would take the total over the limit is
// dropped (and counted); anti-entropy repairs what it carried.
type inbox struct {
	bytes atomic.Int64
	limit int64
}

// admit reserves n bytes, or reports false when they do not fit.
func (in *inbox) admit(n int) bool {
	if in.bytes.Add(int64(n)) > in.limit {
		in.bytes.Add(-int64(n))
		return false
	}
	return true
}

// release returns n bytes once their message has been handled.
func (in *inbox) release(n int) { in.bytes.Add(-int64(n)) }

// inboundSync is a decoded sync message and the bytes it holds in the
// inbox.
type inboundSync struct {
	msg  any
	size int
}

// logOnce is a bounded set of (peer, reason) pairs already logged. Peers
// choose their names, so the set holds at most max entries: once full it
// logs nothing new until it is cleared, at most once per resetEvery, so
// a peer that varies its name cannot grow memory or flood the log.
type logOnce struct {
	mu         sync.Mutex
	seen       map[string]struct{}
	max        int
	resetEvery time.Duration
	resetAt    time.Time
}

func newLogOnce(max int, resetEvery time.Duration) *logOnce {
	return &logOnce{seen: map[string]struct{}{}, max: max, resetEvery: resetEvery}
}

// first reports whether key has not been logged yet, and records it.
func (l *logOnce) first(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[key]; ok {
		return false
	}
	if len(l.seen) >= l.max {
		if now.Before(l.resetAt) {
			return false
		}
		clear(l.seen)
	}
	if len(l.seen) == 0 {
		l.resetAt = now.Add(l.resetEvery)
	}
	l.seen[key] = struct{}{}
	return true
}

// size is the number of keys held.
func (l *logOnce) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}
