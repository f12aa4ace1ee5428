package cluster

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// msgLeaving announces that the sender is leaving the tier on purpose, so
// that peers record it as left rather than dead (memberlist reports both
// through NotifyLeave alike). Body: the sender's name. Its value is far
// from the other message types so that new types do not collide with it.
const msgLeaving msgType = 0x7f

// leavingFor is how long an announced leave is remembered: memberlist's
// own leave (a dead message from the node itself) follows within a second.
const leavingFor = time.Minute

// announceLeave tells the tier this node is leaving: a packet to every
// alive peer, and a gossip broadcast that peers relay once, so that most
// of them hear it before memberlist's leave message (Serf's leave intent
// does the same).
func (t *Tier) announceLeave() {
	msg := append([]byte{byte(msgLeaving)}, t.cfg.Node...)
	t.queue.QueueBroadcast(broadcastMsg(msg))
	for _, p := range t.peers() {
		t.ml.SendBestEffort(p, msg)
	}
}

// noteLeaving records a peer's announced leave. A peer already seen as
// dead is marked left at once (the announcement came late); otherwise it
// is marked left when memberlist reports it gone. The first receipt is
// relayed once.
//
// This node's own announcement comes back when it restarts within a
// minute of stopping: peers still hold their relays of it in their
// broadcast queues. It is ignored without a word. It carries no
// incarnation, so a running node cannot tell it from its last one's, and
// there is nothing to refute: peers use an announcement only to call a
// node that memberlist reports gone "left" rather than "dead", and
// memberlist refutes any claim that this node is gone itself.
func (t *Tier) noteLeaving(b []byte) {
	t.m.received.WithLabelValues(t.cfg.Tier, "leaving").Inc()
	name := string(b[1:])
	if name == t.cfg.Node {
		return
	}
	if name == "" || len(name) > maxNameLen {
		t.reject("?", "malformed", errMalformed)
		return
	}
	if _, seen := t.leaving.Swap(name, time.Now()); seen {
		return
	}
	t.queue.QueueBroadcast(broadcastMsg(b))
	t.membersMu.Lock()
	if n := t.members[name]; n != nil && n.State == memberlist.StateDead {
		n.State = memberlist.StateLeft
	}
	t.membersMu.Unlock()
}

// goneState is the state to record for a member memberlist reports gone:
// left if it announced its leave recently, else dead.
func (t *Tier) goneState(name string) memberlist.NodeStateType {
	if at, ok := t.leaving.Load(name); ok && time.Since(at.(time.Time)) < leavingFor {
		return memberlist.StateLeft
	}
	return memberlist.StateDead
}
