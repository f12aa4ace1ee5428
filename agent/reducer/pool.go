package reducer

import (
	"context"
	"sync"
)

// pool holds a reducer's instances: at most max exist at once, and each
// serves one call at a time. It is safe for concurrent use.
type pool struct {
	idle  chan *instance // instances ready for a call
	slots chan struct{}  // one token per live instance

	mu     sync.Mutex
	closed bool
}

func newPool(max int) *pool {
	return &pool{idle: make(chan *instance, max), slots: make(chan struct{}, max)}
}

// get returns an idle instance, or nil when the caller holds a new slot
// and must start an instance (then put it, or release the slot with drop).
// It waits while every slot is taken, until ctx ends.
func (p *pool) get(ctx context.Context) (*instance, error) {
	select {
	case inst := <-p.idle:
		return inst, nil
	default:
	}
	select {
	case inst := <-p.idle:
		return inst, nil
	case p.slots <- struct{}{}:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put returns inst to the pool after a successful call. After close, inst
// is closed instead.
func (p *pool) put(inst *instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		inst.close()
		return
	}
	p.idle <- inst
}

// drop discards inst (nil when it failed to start) and frees its slot.
func (p *pool) drop(inst *instance) {
	if inst != nil {
		inst.close()
	}
	<-p.slots
}

// close closes the idle instances; instances in use are closed when put.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for {
		select {
		case inst := <-p.idle:
			inst.close()
		default:
			return
		}
	}
}
