package store

import (
	"sync"
	"sync/atomic"
)

// Commit is what one committed transaction changed: the deltas of local
// writes, and the remote changes that were new (merged quietly, by
// Repair, are left out).
type Commit struct {
	Local, Remote []Change
}

// Subscription delivers the store's commits in order on C, through a
// buffer of fixed size. The commit loop never waits for a subscriber: a
// commit that finds the buffer full is not delivered and is counted in
// Dropped, so a subscriber that falls behind loses commits rather than
// holding writes back (a replication layer then repairs by anti-entropy
// what it did not send).
type Subscription struct {
	// C delivers the commits. It is closed by Close.
	C <-chan Commit

	c       chan Commit
	s       *Store
	dropped atomic.Uint64
	once    sync.Once
}

// Subscribe returns a subscription to the commits made from now on, with
// room for buffer undelivered commits (at least 1).
func (s *Store) Subscribe(buffer int) *Subscription {
	c := make(chan Commit, max(1, buffer))
	sub := &Subscription{C: c, c: c, s: s}
	s.subsMu.Lock()
	s.subs = append(s.subs, sub)
	s.subsMu.Unlock()
	return sub
}

// Dropped is the number of changes (local and remote) in commits that
// found the buffer full.
func (sub *Subscription) Dropped() uint64 { return sub.dropped.Load() }

// Close ends the subscription and closes C.
func (sub *Subscription) Close() {
	sub.once.Do(func() {
		s := sub.s
		s.subsMu.Lock()
		for i, x := range s.subs {
			if x == sub {
				s.subs = append(s.subs[:i:i], s.subs[i+1:]...)
				break
			}
		}
		// Under subsMu: publish holds it while it sends, so no send can
		// race the close.
		close(sub.c)
		s.subsMu.Unlock()
	})
}

// publish hands a commit to every subscriber, without waiting.
func (s *Store) publish(local, remote []Change) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for _, sub := range s.subs {
		select {
		case sub.c <- Commit{Local: local, Remote: remote}:
		default:
			sub.dropped.Add(uint64(len(local) + len(remote)))
		}
	}
}
