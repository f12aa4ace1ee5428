// Package plumtree is the decision core of strata's change dissemination:
// an epidemic broadcast tree in the manner of Plumtree (Leitão, Pereira,
// Rodrigues, "Epidemic Broadcast Trees", SRDS 2007), with announcements
// compressed to one head per origin.
//
// A Node keeps its peers in two sets. Eager peers get every new message at
// once (a Push); lazy peers get only announcements (IHave) of the highest
// sequence number seen contiguously from each origin. A message that
// arrives twice prunes the link it came by to lazy, so the eager links
// converge to a spanning tree and a message crosses each node about once.
// An announcement of messages this node lacks starts a timer; when the
// messages have not arrived by then, the node asks the announcer for the
// range (Graft), which also makes that link eager again. A peer that can
// no longer serve a range answers Gone, and the node falls back to digest
// anti-entropy with it.
//
// Message ids are (origin, epoch, seq): the origin numbers its messages
// 1, 2, 3, … within an epoch (one process lifetime), so a receiver can see
// a gap from an announcement alone. Seen-state per origin is a contiguous
// mark plus a bounded window of sequence numbers above it; messages kept for
// serving repairs are bounded by bytes.
//
// The Node does no I/O and reads no clock: the caller feeds it events
// (Broadcast, Step, PeerUp, PeerDown, Evicted, SendFailed) and the time
// (Tick), and carries out what Ready returns (sends, deliveries,
// anti-entropy). It is not safe for concurrent use; one goroutine owns it.
package plumtree
