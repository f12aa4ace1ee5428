package plumtree

import (
	"fmt"
	"strings"
)

// ID names one message: its origin node, the origin's epoch (one process
// lifetime) and its sequence number within the epoch, from 1.
type ID struct {
	Origin string
	Epoch  uint64
	Seq    uint64
}

func (id ID) String() string { return fmt.Sprintf("%s/%d/%d", id.Origin, id.Epoch, id.Seq) }

// Item is one message: its id and opaque payload.
type Item struct {
	ID      ID
	Payload []byte
}

// Head announces that a node has seen every message of an origin's epoch
// up to Seq.
type Head struct {
	Origin string
	Epoch  uint64
	Seq    uint64
}

// Range is the messages From..To (inclusive) of an origin's epoch.
type Range struct {
	Origin   string
	Epoch    uint64
	From, To uint64
}

// Kind is the kind of a Message.
type Kind uint8

// Message kinds.
const (
	// Push carries messages. Repair is set when it answers a Graft.
	Push Kind = iota + 1
	// IHave announces heads.
	IHave
	// Graft asks for ranges and makes the link eager.
	Graft
	// Prune makes the link lazy for the origins it names (in Heads, by
	// Origin only), or for all when it names none: the receiver stops
	// pushing their messages to the sender.
	Prune
	// Gone says the sender no longer holds these ranges.
	Gone
)

func (k Kind) String() string {
	switch k {
	case Push:
		return "push"
	case IHave:
		return "ihave"
	case Graft:
		return "graft"
	case Prune:
		return "prune"
	case Gone:
		return "gone"
	}
	return fmt.Sprintf("kind-%d", uint8(k))
}

// Message is what nodes exchange.
type Message struct {
	Kind   Kind
	Repair bool    // Push: an answer to a Graft
	Hello  bool    // IHave: the sender has just met this node; answer with all heads
	Items  []Item  // Push
	Heads  []Head  // IHave; Prune: the origins pruned (Origin only; none: all)
	Ranges []Range // Graft, Gone
}

// Send is a message for one peer.
type Send struct {
	To  string
	Msg Message
}

// Delivery is a message new to this node, to apply.
type Delivery struct {
	From   string
	Repair bool // arrived as the answer to a Graft
	Item   Item
}

// Ready is what the caller must carry out, in order: apply Deliveries,
// then send Sends (each peer's in order), then start anti-entropy with
// each of AntiEntropy.
type Ready struct {
	Deliveries  []Delivery
	Sends       []Send
	AntiEntropy []string
}

// String renders a message compactly, for tests and logs.
func (m Message) String() string {
	var b strings.Builder
	b.WriteString(m.Kind.String())
	if m.Repair {
		b.WriteString(" repair")
	}
	if m.Hello {
		b.WriteString(" hello")
	}
	for _, it := range m.Items {
		fmt.Fprintf(&b, " %s=%s", it.ID, it.Payload)
	}
	for _, h := range m.Heads {
		if m.Kind == Prune {
			fmt.Fprintf(&b, " %s", h.Origin)
			continue
		}
		fmt.Fprintf(&b, " %s/%d/%d", h.Origin, h.Epoch, h.Seq)
	}
	for _, r := range m.Ranges {
		fmt.Fprintf(&b, " %s/%d/%d-%d", r.Origin, r.Epoch, r.From, r.To)
	}
	return b.String()
}
