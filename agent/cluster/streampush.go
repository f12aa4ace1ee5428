package cluster

// Changes too large for a gossip packet go over streams to a few random
// peers (memberlist's SendReliable), for peers that take only gossip. A
// fixed set of workers sends them from a bounded queue: a burst of large
// changes neither starts a goroutine per change nor holds them all in
// memory, and no send outlives the tier (Close joins the workers; a send
// under way ends within memberlist's TCP timeout). A change that finds the
// queue full is dropped and counted like a broadcast pruned from the
// gossip queue (strata_gossip_dropped_total); anti-entropy repairs it.

const (
	// streamPushWorkers is how many stream pushes run at once.
	streamPushWorkers = 4
	// streamPushQueue is how many stream pushes may wait.
	streamPushQueue = 256
)

// startStreamPush starts the workers; they end when the tier stops.
func (t *Tier) startStreamPush() {
	t.streamPushes = make(chan []byte, streamPushQueue)
	t.done.Add(streamPushWorkers)
	for range streamPushWorkers {
		go func() {
			defer t.done.Done()
			for {
				select {
				case msg := <-t.streamPushes:
					t.push(msg)
				case <-t.stop:
					return
				}
			}
		}()
	}
}

// queueStreamPush queues msg for a stream push, or drops it (counted)
// when the queue is full.
func (t *Tier) queueStreamPush(msg []byte) {
	select {
	case t.streamPushes <- msg:
	default:
		t.m.dropped.WithLabelValues(t.cfg.Tier).Inc()
	}
}
