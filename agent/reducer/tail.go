package reducer

import (
	"context"
	"fmt"
	"sync"
)

// tail keeps the first and the last bytes written to it: a guest's stdout
// and stderr, shown when the guest traps. The head holds the cause (Go's
// "fatal error: out of memory"), the tail the end of a long stack dump. It
// is safe for concurrent use.
//
// Writes fail once the context of the call that writes has ended: one
// fd_write may carry millions of I/O vectors, each a Write, and the guest
// stops only when the call returns to it.
type tail struct {
	mu         sync.Mutex
	max        int // of head and of last, each
	ctx        context.Context
	head, last []byte
	dropped    int // bytes between head and last that were not kept
}

func newTail(ctx context.Context, max int) *tail { return &tail{ctx: ctx, max: max} }

// Write keeps the first max bytes and the last max bytes after them.
func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.ctx.Err(); err != nil {
		return 0, fmt.Errorf("the call ended: %w", err)
	}
	n := len(p)
	if room := t.max - len(t.head); room > 0 {
		k := min(room, len(p))
		t.head = append(t.head, p[:k]...)
		p = p[k:]
	}
	if len(p) >= t.max {
		t.dropped += len(t.last) + len(p) - t.max
		p = p[len(p)-t.max:]
		t.last = t.last[:0]
	}
	if over := len(t.last) + len(p) - t.max; over > 0 {
		t.dropped += over
		t.last = append(t.last[:0], t.last[over:]...)
	}
	t.last = append(t.last, p...)
	return n, nil
}

// reset empties t for a call with ctx.
func (t *tail) reset(ctx context.Context) {
	t.mu.Lock()
	t.ctx = ctx
	t.head, t.last, t.dropped = t.head[:0], t.last[:0], 0
	t.mu.Unlock()
}

// String returns the bytes kept, with a note of how many were cut where
// some were dropped.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.head)
	if t.dropped > 0 {
		s += fmt.Sprintf("\n… (%d bytes of output cut) …\n", t.dropped)
	}
	return s + string(t.last)
}
