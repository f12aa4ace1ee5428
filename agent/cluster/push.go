package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/strata-state/strata/agent/cluster/plumtree"
	"github.com/strata-state/strata/agent/store"
)

// Defaults of the push path (Config.Push).
const (
	DefaultPushFanout     = 3
	DefaultPushBatchDelay = 2 * time.Millisecond
	DefaultPushBatchBytes = 256 << 10
	DefaultPushPeerBound  = 8 << 20
)

// PushConfig tunes the push path: eager push of committed changes over
// memberlist streams to a few peers, with lazy announcements for repair.
type PushConfig struct {
	// Fanout is the number of eager peers a node pushes to. Default 3.
	Fanout int
	// BatchDelay is the least time between two batches to one peer:
	// changes committed meanwhile join the next batch. A change for an
	// idle link goes at once. Default 2ms.
	BatchDelay time.Duration
	// BatchBytes sends a batch at once when it reaches this size.
	// Default 256 KiB.
	BatchBytes int
	// PeerBound is the most bytes queued for one peer; past it the queue
	// is dropped and the peer cut from the push set (it catches up through
	// announcements). Default 8 MiB.
	PeerBound int
	// GraftTimeout is how long a change announced by a lazy peer may take
	// to arrive by push before this node asks for it (see
	// plumtree.Config). Default 100ms.
	GraftTimeout time.Duration
}

func (c *PushConfig) setDefaults() {
	if c.Fanout <= 0 {
		c.Fanout = DefaultPushFanout
	}
	if c.BatchDelay <= 0 {
		c.BatchDelay = DefaultPushBatchDelay
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = DefaultPushBatchBytes
	}
	if c.PeerBound <= 0 {
		c.PeerBound = DefaultPushPeerBound
	}
}

// maxAnnouncePacket is the largest announcement bundle sent as one UDP
// packet (memberlist's packets carry about 1,400 bytes, less label,
// encryption and framing); larger ones go over a stream.
const maxAnnouncePacket = 1000

// pushTick is how often the push loop ticks the plumtree core (graft
// timeouts, announcements, retries). It sends nothing when idle.
const pushTick = 20 * time.Millisecond

// pusher is the effect side of the push path: it owns a plumtree.Node,
// feeds it local commits, received messages, membership and the time, and
// carries out its Ready: apply deliveries to the store, queue sends per
// peer, start anti-entropy.
type pusher struct {
	t    *Tier
	cfg  PushConfig
	node *plumtree.Node // owned by loop

	wake chan struct{} // cap 1

	mu     sync.Mutex
	local  []store.Change
	events []pushEvent

	inbox chan *plumBundle

	// Delivered changes waiting for mergeLoop, in delivery order.
	mergeMu      sync.Mutex
	mergeRoom    *sync.Cond // signalled when merges shrinks or the loop stops
	merges       []pendingMerge
	mergeBytes   int // rowSize of merges
	mergeStopped bool
	mergeWake    chan struct{} // cap 1

	// router serves inbound push streams and dials outbound ones; set by
	// routeStreams when the tier builds its transport.
	router *streamRouter

	sendersMu sync.Mutex
	senders   map[string]*peerSender

	members map[string]bool              // push peers the core knows (loop only)
	decoded map[plumtree.ID]store.Change // changes checked by step, for carryOut (loop only)

	// membership is set by the tier when a member joins, leaves or
	// changes its meta: the next tick reconciles the core's peers (and at
	// least once a second regardless).
	membership atomic.Bool
	reconciled time.Time // loop only

	// gossipNeeded is set while some alive peer does not speak the push
	// protocol (or none does): local changes then go by gossip as well.
	gossipNeeded atomic.Bool
	last         plumtree.Stats // stats already counted (loop only)
}

type pushEvent struct {
	peer string
	kind int // evFailed, evSent, evEvicted, evResync
}

const (
	evFailed = iota
	evSent
	evEvicted
	evResync
)

func newPusher(t *Tier) *pusher {
	cfg := t.cfg.Push
	cfg.setDefaults()
	p := &pusher{t: t, cfg: cfg,
		node: plumtree.New(plumtree.Config{Self: t.cfg.Node, Epoch: uint64(time.Now().UnixNano()), Fanout: cfg.Fanout,
			CacheBytes: 4 * cfg.PeerBound, GraftTimeout: cfg.GraftTimeout}),
		wake: make(chan struct{}, 1), inbox: make(chan *plumBundle, 4096),
		senders: map[string]*peerSender{}, members: map[string]bool{}, decoded: map[plumtree.ID]store.Change{}}
	p.mergeRoom = sync.NewCond(&p.mergeMu)
	p.mergeWake = make(chan struct{}, 1)
	p.gossipNeeded.Store(true) // until the first reconcile
	return p
}

func (p *pusher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// offer queues local changes for push; it never blocks (it runs on the
// store's commit loop). The queue is bounded: past maxLocalQueue changes
// waiting for the push loop, the rest are not pushed, are counted as
// dropped, and reach the peers by anti-entropy, as changes the gossip
// queue drops do.
func (p *pusher) offer(cs []store.Change) {
	if len(cs) == 0 {
		return
	}
	p.mu.Lock()
	room := max(0, maxLocalQueue-len(p.local))
	kept := cs[:min(len(cs), room)]
	p.local = append(p.local, kept...)
	p.mu.Unlock()
	if dropped := len(cs) - len(kept); dropped > 0 {
		p.t.m.dropped.WithLabelValues(p.t.cfg.Tier).Add(float64(dropped))
	}
	p.poke()
}

// maxLocalQueue bounds the local changes waiting for the push loop.
const maxLocalQueue = 1 << 16

func (p *pusher) event(peer string, kind int) {
	p.mu.Lock()
	p.events = append(p.events, pushEvent{peer, kind})
	p.mu.Unlock()
	p.poke()
}

// receive takes a msgPlum from NotifyMsg; it must not block.
func (p *pusher) receive(b []byte) {
	t := p.t
	// The tier's inbox bounds the bytes of every received message waiting
	// to be handled, pushed bundles included (the channel bounds only
	// their number); a bundle it has no room for is not decoded.
	if !t.inbox.admit(len(b)) {
		t.m.dropped.WithLabelValues(t.cfg.Tier).Inc()
		if sender := senderOf(b); sender != "?" {
			p.event(sender, evResync)
		}
		return
	}
	m, err := decodePlum(b)
	if err != nil {
		t.inbox.release(len(b))
		t.reject(senderOf(b), "malformed", err)
		return
	}
	t.m.bcast.batches.WithLabelValues(t.cfg.Tier, "received").Inc()
	t.m.bcast.bytes.WithLabelValues(t.cfg.Tier, "received").Add(float64(len(b)))
	m.size = len(b)
	select {
	case p.inbox <- m:
	default:
		t.inbox.release(m.size)
		// The loop is far behind: drop, and resync with the sender so it
		// tells this node what it has.
		t.m.dropped.WithLabelValues(t.cfg.Tier).Inc()
		p.event(m.Sender, evResync)
	}
}

// loop runs the core until the tier stops.
func (p *pusher) loop() {
	t := p.t
	defer t.done.Done()
	tick := time.NewTicker(pushTick)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			p.sendersMu.Lock()
			for _, s := range p.senders {
				s.close()
			}
			p.sendersMu.Unlock()
			return
		case <-p.wake:
		case m := <-p.inbox:
			p.step(m)
		case now := <-tick.C:
			if p.membership.Swap(false) || now.Sub(p.reconciled) > time.Second {
				p.reconciled = now
				p.reconcile()
			}
			p.node.Tick(now)
		}
		for drained := false; !drained; {
			select {
			case m := <-p.inbox:
				p.step(m)
			default:
				drained = true
			}
		}
		p.mu.Lock()
		local, events := p.local, p.events
		p.local, p.events = nil, nil
		p.mu.Unlock()
		resynced := map[string]bool{}
		for _, ev := range events {
			if ev.kind == evResync {
				if resynced[ev.peer] {
					continue
				}
				resynced[ev.peer] = true
			}
			switch ev.kind {
			case evFailed:
				p.node.SendFailed(ev.peer)
			case evSent:
				p.node.Sent(ev.peer)
			case evEvicted:
				p.node.Evicted(ev.peer)
			case evResync:
				p.node.Resync(ev.peer)
			}
		}
		if len(local) > 0 {
			payloads := make([][]byte, len(local))
			for i, c := range local {
				payloads[i] = encodePayload(c)
			}
			p.node.Broadcast(payloads...)
		}
		p.carryOut()
	}
}

// step validates a received bundle's changes (the tier's Accept: contract
// checks) and hands the rest to the core; a refused change is neither
// applied nor forwarded.
func (p *pusher) step(m *plumBundle) {
	t := p.t
	defer t.inbox.release(m.size)
	for _, msg := range m.Msgs {
		if msg.Kind == plumtree.Push {
			kept := msg.Items[:0]
			for _, it := range msg.Items {
				if p.node.Seen(it.ID) {
					// A duplicate: the core counts it (and prunes the
					// link); its payload is not needed.
					kept = append(kept, it)
					continue
				}
				c, err := decodePayload(it.Payload)
				if err != nil {
					t.reject(m.Sender, "malformed", err)
					continue
				}
				if len(t.accept(m.Sender, []store.Change{c})) == 0 {
					continue
				}
				p.decoded[it.ID] = c
				kept = append(kept, it)
			}
			msg.Items = kept
		}
		p.node.Step(m.Sender, msg)
	}
}

// carryOut queues sends, then applies deliveries, then starts anti-entropy.
func (p *pusher) carryOut() {
	t := p.t
	for p.node.HasReady() {
		rd := p.node.Ready()
		var pushed, repaired []store.Change
		for _, d := range rd.Deliveries {
			c, ok := p.decoded[d.Item.ID]
			if !ok {
				continue // every delivered item was decoded and checked by step
			}
			if d.Repair {
				repaired = append(repaired, c)
			} else {
				pushed = append(pushed, c)
			}
		}
		// Forwards go before the merge: a hop costs the next node the
		// time to read and check a batch, not a commit as well. Nothing
		// acknowledged depends on it (the writer acknowledged its own
		// commit), and a node that dies before its merge is repaired like
		// any node that missed a change.
		for _, s := range rd.Sends {
			p.sender(s.To).enqueue(s.Msg)
		}
		p.apply(pushed, pathPush)
		p.apply(repaired, pathRepair)
		for _, peer := range rd.AntiEntropy {
			// The anti-entropy loop runs it: one exchange at a time, joined
			// on close; a burst beyond its queue waits for the periodic ones.
			select {
			case t.syncNow <- syncAsk{peer: peer, repair: true}:
			default:
			}
		}
	}
	clear(p.decoded)
	st := p.node.Stats()
	b := t.m.bcast
	tier := t.cfg.Tier
	b.forwards.WithLabelValues(tier).Add(float64(st.Forwards - p.last.Forwards))
	b.dups.WithLabelValues(tier).Add(float64(st.Duplicates - p.last.Duplicates))
	b.repairs.WithLabelValues(tier, "graft").Add(float64(st.Grafts - p.last.Grafts))
	b.repairs.WithLabelValues(tier, "served").Add(float64(st.Served - p.last.Served))
	b.repairs.WithLabelValues(tier, "gone").Add(float64(st.Gone - p.last.Gone))
	b.evictions.WithLabelValues(tier).Add(float64(st.Evictions - p.last.Evictions))
	p.last = st
}

// apply queues changes that arrived by push or repair for the merge
// loop. It returns at once unless the queue is full (the store is far
// behind), and then waits for room: the push loop must not outrun its
// own merges without bound.
func (p *pusher) apply(cs []store.Change, path string) {
	if len(cs) == 0 {
		return
	}
	// Each change is copied out of the bundle it was decoded from: a
	// queued change must not keep a whole received bundle in memory.
	queued := make([]pendingMerge, len(cs))
	size := 0
	for i, c := range cs {
		queued[i] = pendingMerge{detach(c), path, rowSize(c)}
		size += queued[i].size
	}
	p.mergeMu.Lock()
	for len(p.merges) > 0 && (len(p.merges)+len(cs) > maxMergeQueue || p.mergeBytes+size > maxMergeBytes) && !p.mergeStopped {
		p.mergeRoom.Wait()
	}
	p.merges = append(p.merges, queued...)
	p.mergeBytes += size
	p.mergeMu.Unlock()
	select {
	case p.mergeWake <- struct{}{}:
	default:
	}
}

// pendingMerge is a delivered change waiting for the merge loop, and the
// path it came by (for the metrics).
type pendingMerge struct {
	c    store.Change
	path string
	size int // rowSize
}

// detach returns c with its field values copied into one buffer of its
// own, so that it no longer refers to the message it was decoded from.
func detach(c store.Change) store.Change {
	n := 0
	for _, f := range c.Row.Fields {
		n += len(f.Value)
	}
	buf := make([]byte, 0, n)
	fields := make([]store.Field, len(c.Row.Fields))
	for i, f := range c.Row.Fields {
		start := len(buf)
		buf = append(buf, f.Value...)
		f.Value = buf[start:len(buf):len(buf)]
		fields[i] = f
	}
	c.Row.Fields = fields
	return c
}

// mergeLoop merges delivered changes into the store, in delivery order,
// on a goroutine of its own: the push loop forwards a batch without
// waiting for the commit of the one before (an fsync, on a real disk),
// and changes delivered during a commit join the next one. They are
// merged quietly (store.Repair): the push path forwards them itself, so
// the store must not report them to the tier, which would gossip them
// again. Changes still
// queued when the tier stops are not merged; anti-entropy brings them
// after a restart, as for any node that stopped before a merge.
func (p *pusher) mergeLoop() {
	t := p.t
	defer t.done.Done()
	defer func() {
		p.mergeMu.Lock()
		p.mergeStopped = true
		p.merges, p.mergeBytes = nil, 0
		p.mergeMu.Unlock()
		p.mergeRoom.Broadcast()
	}()
	for {
		select {
		case <-t.stop:
			return
		case <-p.mergeWake:
		}
		for {
			// One bounded transaction at a time, of one path: a burst of
			// pushes (a peer that took a few large batches) must not become
			// one commit that holds the commit loop for minutes while
			// writes wait.
			p.mergeMu.Lock()
			n := 0
			var path string
			chunk := make([]store.Change, 0, min(len(p.merges), maxApplyChanges))
			for n < len(p.merges) && n < maxApplyChanges && (n == 0 || p.merges[n].path == path) {
				path = p.merges[n].path
				chunk = append(chunk, p.merges[n].c)
				p.mergeBytes -= p.merges[n].size
				n++
			}
			clear(p.merges[:n]) // the taken changes are not kept by the array
			p.merges = p.merges[n:]
			if len(p.merges) == 0 {
				p.merges = nil // let the backing array go
			}
			p.mergeMu.Unlock()
			if n == 0 {
				break
			}
			p.mergeRoom.Broadcast()
			applied, rejected, err := t.store.Repair(context.Background(), chunk)
			if err != nil {
				t.log.Error("merging pushed changes", "err", err)
				continue
			}
			t.m.bcast.applied.WithLabelValues(t.cfg.Tier, path).Add(float64(len(applied)))
			for _, r := range rejected {
				t.reject("?", rejectReason(r.Err), r.Err)
			}
			select {
			case <-t.stop:
				return
			default:
			}
		}
	}
}

// maxMergeQueue and maxMergeBytes bound the delivered changes waiting
// for the merge loop, in number and in (estimated) bytes.
const (
	maxMergeQueue = 4 * maxApplyChanges
	maxMergeBytes = 32 << 20
)

// maxApplyChanges bounds the changes the push path merges in one store
// transaction.
const maxApplyChanges = 4096

// reconcile tells the core which alive members speak the push protocol.
func (p *pusher) reconcile() {
	t := p.t
	now := map[string]bool{}
	others := false
	for _, n := range t.peers() {
		if t.speaksPush(n) {
			now[n.Name] = true
		} else {
			others = true
		}
	}
	p.gossipNeeded.Store(others || len(now) == 0)
	for name := range p.members {
		if !now[name] {
			p.node.PeerDown(name)
			delete(p.members, name)
			p.sendersMu.Lock()
			if s := p.senders[name]; s != nil {
				s.close()
				delete(p.senders, name)
			}
			p.sendersMu.Unlock()
		}
	}
	for name := range now {
		if !p.members[name] {
			p.members[name] = true
			p.node.PeerUp(name)
		}
	}
	e, l := p.node.Peers()
	t.m.bcast.peers.WithLabelValues(t.cfg.Tier, "eager").Set(float64(len(e)))
	t.m.bcast.peers.WithLabelValues(t.cfg.Tier, "lazy").Set(float64(len(l)))
}

// speaksPush reports whether a member and this node share the push
// protocol: the highest version both speak is protoPush or later.
func (t *Tier) speaksPush(n *memberlist.Node) bool {
	var meta Meta
	if json.Unmarshal(n.Meta, &meta) != nil {
		return false
	}
	v, ok := highestCommon(t.cfg.Meta, meta)
	return ok && v >= protoPush
}

func (p *pusher) sender(name string) *peerSender {
	p.sendersMu.Lock()
	defer p.sendersMu.Unlock()
	s := p.senders[name]
	if s == nil {
		s = &peerSender{p: p, peer: name, wake: make(chan struct{}, 1), stop: make(chan struct{})}
		p.senders[name] = s
		// Joined by Tier.Close: only the loop creates senders, while it
		// holds its own count of t.done, so the count is never zero here.
		p.t.done.Add(1)
		go s.run()
	}
	return s
}

// peerSender batches the messages for one peer and sends them in order,
// one frame per batch on a long-lived push stream (push_stream.go), or
// one memberlist stream (SendReliable) per batch to a peer that refuses
// push streams. Its queue is bounded by PushConfig.PeerBound.
type peerSender struct {
	p    *pusher
	peer string
	wake chan struct{}
	stop chan struct{}
	once sync.Once

	mu     sync.Mutex
	queue  []plumtree.Message
	queued int

	stream      *pushStream // the open push stream, or nil (run only)
	legacyUntil time.Time   // the peer refused a push stream: SendReliable until then (run only)
}

func msgSize(m plumtree.Message) int {
	n := 8
	for _, it := range m.Items {
		n += len(it.Payload) + 8
	}
	return n + 24*(len(m.Heads)+len(m.Ranges))
}

func (s *peerSender) enqueue(m plumtree.Message) {
	s.mu.Lock()
	s.queue = append(s.queue, m)
	s.queued += msgSize(m)
	over := s.queued > s.p.cfg.PeerBound
	if over {
		s.queue, s.queued = nil, 0
	}
	s.mu.Unlock()
	if over {
		s.p.event(s.peer, evEvicted)
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *peerSender) close() { s.once.Do(func() { close(s.stop) }) }

// run sends the queue in batches. A batch goes at once when the link has
// been idle for BatchDelay (an isolated change waits for nothing), and
// otherwise BatchDelay after the previous one, or as soon as BatchBytes
// are queued: a busy link carries at most one batch per BatchDelay.
func (s *peerSender) run() {
	t := s.p.t
	defer t.done.Done()
	defer s.dropStream()
	var last time.Time
	idle := time.NewTimer(pushStreamIdle)
	defer idle.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-idle.C:
			s.dropStream()
			continue
		case <-s.wake:
		}
		s.mu.Lock()
		full := s.queued >= s.p.cfg.BatchBytes
		s.mu.Unlock()
		if wait := time.Until(last.Add(s.p.cfg.BatchDelay)); !full && wait > 0 {
			select {
			case <-s.stop:
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		for {
			s.mu.Lock()
			var batch []plumtree.Message
			size := 0
			for len(s.queue) > 0 && (size < s.p.cfg.BatchBytes || len(batch) == 0) {
				size += msgSize(s.queue[0])
				batch = appendCoalesced(batch, s.queue[0])
				s.queue = s.queue[1:]
			}
			s.queued -= size
			if len(s.queue) == 0 {
				s.queue, s.queued = nil, 0
			}
			s.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			idle.Reset(pushStreamIdle)
			s.send(batch)
		}
	}
}

// send sends one batch. On an open push stream everything goes in one
// frame. Otherwise announcements and prunes go in a packet when they fit
// (a lost one costs the next announcement or a duplicate, and a lazy peer
// needs no stream for them), and changes, grafts, gone and hellos over a
// push stream, dialled if need be.
func (s *peerSender) send(batch []plumtree.Message) {
	t := s.p.t
	n := t.node(s.peer)
	if n == nil {
		s.p.event(s.peer, evFailed)
		return
	}
	if s.stream != nil && !s.stream.alive() {
		s.dropStream()
	}
	if time.Now().Before(s.legacyUntil) {
		// A peer of an older build knows prunes for the whole link only.
		for i := range batch {
			if batch[i].Kind == plumtree.Prune {
				batch[i].Heads = nil
			}
		}
	}
	stream := batch
	if s.stream == nil {
		var packet []plumtree.Message
		stream = nil
		for _, m := range batch {
			if (m.Kind == plumtree.IHave || m.Kind == plumtree.Prune) && !m.Hello {
				packet = append(packet, m)
			} else {
				stream = append(stream, m)
			}
		}
		if len(packet) > 0 {
			if b := encodePlum(t.cfg.Node, packet); len(b) <= maxAnnouncePacket {
				if err := t.ml.SendBestEffort(n, b); err == nil {
					t.m.bcast.bytes.WithLabelValues(t.cfg.Tier, "sent").Add(float64(len(b)))
				}
			} else {
				stream = append(stream, packet...)
			}
		}
	}
	if len(stream) == 0 {
		return
	}
	b := encodePlum(t.cfg.Node, stream)
	if err := s.write(n, b); err != nil {
		t.log.Debug("push failed", "peer", s.peer, "err", err)
		s.p.event(s.peer, evFailed)
		return
	}
	t.m.bcast.batches.WithLabelValues(t.cfg.Tier, "sent").Inc()
	t.m.bcast.bytes.WithLabelValues(t.cfg.Tier, "sent").Add(float64(len(b)))
	s.p.event(s.peer, evSent)
}

// write sends an encoded bundle on the peer's push stream, dialling one
// when none is open, or by SendReliable to a peer that refused one.
func (s *peerSender) write(n *memberlist.Node, b []byte) error {
	t := s.p.t
	r := s.p.router
	if r == nil || time.Now().Before(s.legacyUntil) {
		return t.ml.SendReliable(n, b)
	}
	if s.stream == nil {
		st, err := r.dialStream(n)
		if errors.Is(err, errStreamRefused) {
			t.log.Debug("push stream refused; sending by memberlist streams", "peer", s.peer, "err", err)
			s.legacyUntil = time.Now().Add(pushLegacyRetry)
			return t.ml.SendReliable(n, b)
		}
		if err != nil {
			return err
		}
		s.stream = st
	}
	if err := s.stream.write(r.seal, b); err != nil {
		s.dropStream()
		return err
	}
	return nil
}

// dropStream closes the peer's push stream, if open.
func (s *peerSender) dropStream() {
	if s.stream != nil {
		s.stream.close()
		s.stream = nil
	}
}

// appendCoalesced appends m to a batch, merging it into the last message
// when both are pushes of the same kind.
func appendCoalesced(batch []plumtree.Message, m plumtree.Message) []plumtree.Message {
	if k := len(batch); k > 0 && batch[k-1].Kind == plumtree.Push && m.Kind == plumtree.Push && batch[k-1].Repair == m.Repair {
		batch[k-1].Items = append(batch[k-1].Items, m.Items...)
		return batch
	}
	m.Items = slices.Clone(m.Items) // shared with other peers' queues; appended to above
	return append(batch, m)
}
