package plumtree

import (
	"math/rand/v2"
	"slices"
	"time"
)

// Stats are counters of what the node did, since it was created.
type Stats struct {
	Forwards   uint64 // messages forwarded to eager peers on first receipt
	Duplicates uint64 // pushed messages already seen
	Prunes     uint64 // links pruned to lazy (sent Prune)
	Grafts     uint64 // ranges asked for
	Served     uint64 // ranges answered with messages
	Gone       uint64 // fallbacks to anti-entropy (a range no peer asked still held)
	Evictions  uint64 // eager peers cut for a backlog past the bound
	Lost       uint64 // messages given up on, left to anti-entropy
}

// Config configures a Node.
type Config struct {
	// Self is this node's name; Epoch its current epoch (it must grow
	// across restarts, e.g. the start time in nanoseconds).
	Self  string
	Epoch uint64
	// Fanout is the number of eager peers a node starts with. Default 3.
	Fanout int
	// GraftTimeout is how long an announced, missing message may take to
	// arrive before this node asks for it; each further ask waits twice as
	// long as the one before. Default 100ms.
	GraftTimeout time.Duration
	// GraftTries is how many asks (to the announcers in turn) a range gets
	// before the node falls back to anti-entropy. Default 5 (with the
	// default timeout, 3.1 s in all).
	GraftTries int
	// AnnounceInterval is the least time between announcements to lazy
	// peers; announcements go out only when heads moved. Default 50ms.
	AnnounceInterval time.Duration
	// RetryInterval is how often a peer whose sends failed is sent all
	// heads again, until a send succeeds. Default 250ms.
	RetryInterval time.Duration
	// CacheBytes bounds the payload bytes kept to serve repairs.
	// Default 16 MiB.
	CacheBytes int
	// Window bounds, per origin, the sequence numbers remembered above the
	// contiguous mark; past it the oldest gap is given up. Default 65536.
	Window int
	// MaxOrigins bounds the origins tracked. Default 4096.
	MaxOrigins int
	// MaxGraft bounds the messages of one origin a graft asks for: a node
	// further behind gives the older ones up to anti-entropy. Default 8192.
	MaxGraft int
	// Rand picks eager peers; nil seeds one from Self (deterministic).
	Rand *rand.Rand
}

func (c *Config) setDefaults() {
	if c.Fanout <= 0 {
		c.Fanout = 3
	}
	if c.GraftTimeout <= 0 {
		c.GraftTimeout = 100 * time.Millisecond
	}
	if c.GraftTries <= 0 {
		c.GraftTries = 5
	}
	if c.AnnounceInterval <= 0 {
		c.AnnounceInterval = 50 * time.Millisecond
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = 250 * time.Millisecond
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = 16 << 20
	}
	if c.Window <= 0 {
		c.Window = 65536
	}
	if c.MaxGraft <= 0 {
		c.MaxGraft = 8192
	}
	if c.MaxOrigins <= 0 {
		c.MaxOrigins = 4096
	}
	if c.Rand == nil {
		var seed uint64
		for _, b := range []byte(c.Self) {
			seed = seed*131 + uint64(b)
		}
		c.Rand = rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	}
}

// want is an announced range this node lacks.
type want struct {
	to         uint64
	announcers []string
	deadline   time.Time
	tries      int
}

type mode uint8

const (
	eager mode = iota + 1
	lazy
)

// peer is a link's state. Its mode is the link's for every origin
// without an entry in origins: a node keeps one broadcast tree per origin
// (as riak_core's Plumtree does), because pruning one shared tree on the
// duplicates of any origin cuts links other origins need, their messages
// then come by graft, each graft makes a link eager again, and the
// overlay never settles (in a simulated 16-node region with every node
// writing, 2-3 duplicates per delivery and 1,600 grafts a second for as
// long as it ran; with a tree per origin, none after the first second).
type peer struct {
	mode      mode
	origins   map[string]mode // per origin, where it differs from mode
	retry     bool            // sends failed: announce all heads again at retryDue, until a send succeeds
	retryDue  time.Time       //
	resync    bool            // sends were lost since the heads were last exchanged
	announced map[string]Head
}

// eagerFor reports whether messages of origin are pushed over the link.
func (p *peer) eagerFor(origin string) bool {
	if m, ok := p.origins[origin]; ok {
		return m == eager
	}
	return p.mode == eager
}

// setMode sets the link's mode for every origin.
func (p *peer) setMode(m mode) {
	p.mode = m
	p.origins = nil
}

// setModeFor sets the link's mode for one origin.
func (p *peer) setModeFor(origin string, m mode) {
	if p.origins == nil {
		p.origins = map[string]mode{}
	}
	p.origins[origin] = m
}

// Node is one node's Plumtree state. It is not safe for concurrent use.
type Node struct {
	cfg   Config
	now   time.Time
	seq   uint64
	peers map[string]*peer

	tracks  map[string]*track // origin → its current epoch
	wants   map[string]*want  // origin → announced range missing
	moved   map[string]bool   // origins whose head moved since the last announcement
	nextAnn time.Time

	cache      map[ID][]byte
	cacheOrder []ID
	cacheBytes int

	ready Ready
	stats Stats
}

// New returns a node with no peers.
func New(cfg Config) *Node {
	cfg.setDefaults()
	return &Node{cfg: cfg, peers: map[string]*peer{}, tracks: map[string]*track{},
		wants: map[string]*want{}, moved: map[string]bool{}, cache: map[ID][]byte{}}
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats { return n.stats }

// Ready returns and clears what the caller must do.
func (n *Node) Ready() Ready {
	r := n.ready
	n.ready = Ready{}
	return r
}

// HasReady reports whether Ready has anything.
func (n *Node) HasReady() bool {
	return len(n.ready.Deliveries) > 0 || len(n.ready.Sends) > 0 || len(n.ready.AntiEntropy) > 0
}

// Seen reports whether the node has already seen a message (or one of a
// later epoch of its origin): Step would count it as a duplicate. The
// caller may skip decoding and checking the payloads of such items.
func (n *Node) Seen(id ID) bool {
	if id.Origin == n.cfg.Self {
		return true
	}
	t := n.tracks[id.Origin]
	switch {
	case t == nil || t.epoch < id.Epoch:
		return false
	case t.epoch > id.Epoch:
		return true
	}
	return t.seen(id.Seq)
}

// Peers returns the eager and the lazy peers, sorted.
func (n *Node) Peers() (eagerPeers, lazyPeers []string) {
	for name, p := range n.peers {
		if p.mode == eager {
			eagerPeers = append(eagerPeers, name)
		} else {
			lazyPeers = append(lazyPeers, name)
		}
	}
	slices.Sort(eagerPeers)
	slices.Sort(lazyPeers)
	return eagerPeers, lazyPeers
}

func (n *Node) send(to string, m Message) {
	n.sendItems(to, m, false)
}

// sendItems queues a send; owned says m.Items is a slice no one else
// holds, so it need not be copied before coalescing appends to it.
func (n *Node) sendItems(to string, m Message, owned bool) {
	// Coalesce with the last send to the same peer when both are pushes of
	// the same kind, so a burst becomes one message.
	if k := len(n.ready.Sends); k > 0 {
		last := &n.ready.Sends[k-1]
		if last.To == to && last.Msg.Kind == Push && m.Kind == Push && last.Msg.Repair == m.Repair {
			last.Msg.Items = append(last.Msg.Items, m.Items...)
			return
		}
	}
	if !owned {
		m.Items = slices.Clone(m.Items) // one slice per send: coalescing appends to it
	}
	n.ready.Sends = append(n.ready.Sends, Send{To: to, Msg: m})
}

func (n *Node) eagerCount() int {
	c := 0
	for _, p := range n.peers {
		if p.mode == eager {
			c++
		}
	}
	return c
}

// PeerUp adds a peer that speaks this protocol: eager while the node has
// fewer than Fanout eager peers, lazy otherwise. The peer is sent every
// head, so that it can ask for what it lacks.
func (n *Node) PeerUp(name string) {
	if name == n.cfg.Self {
		return
	}
	if _, ok := n.peers[name]; ok {
		return
	}
	p := &peer{mode: lazy, announced: map[string]Head{}}
	if n.eagerCount() < n.cfg.Fanout {
		p.mode = eager
	}
	n.peers[name] = p
	n.announceAll(name, p, true)
}

// PeerDown removes a peer; a lazy peer is promoted (at random) when the
// eager set falls below Fanout.
func (n *Node) PeerDown(name string) {
	p, ok := n.peers[name]
	if !ok {
		return
	}
	delete(n.peers, name)
	for _, q := range n.peers {
		delete(q.origins, name) // its tree goes with it
	}
	for _, w := range n.wants {
		w.announcers = slices.DeleteFunc(w.announcers, func(a string) bool { return a == name })
	}
	if p.mode == eager {
		n.promote()
	}
}

// promote makes random lazy peers eager until there are Fanout eager ones.
func (n *Node) promote() {
	var cands []string
	for name, p := range n.peers {
		if p.mode == lazy && !p.retry {
			cands = append(cands, name)
		}
	}
	slices.Sort(cands)
	n.cfg.Rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	for _, c := range cands {
		if n.eagerCount() >= n.cfg.Fanout {
			return
		}
		n.makeEager(c, n.peers[c])
	}
}

// Evicted tells the node that the sends queued for a peer were dropped
// because its backlog passed the per-peer bound: the peer is cut from the
// push set (made lazy) and catches up through announcements.
func (n *Node) Evicted(name string) {
	p, ok := n.peers[name]
	if !ok {
		return
	}
	n.stats.Evictions++
	p.setMode(lazy)
	p.announced = map[string]Head{}
	p.retry, p.retryDue, p.resync = true, n.now, true // announce all heads at the next tick
	n.promote()
}

// SendFailed tells the node that a send to a peer failed (the peer is
// unreachable, or the connection broke): what it carried is lost for that
// peer. The peer is made lazy and sent every head again every
// RetryInterval until a send succeeds (Sent).
func (n *Node) SendFailed(name string) {
	p, ok := n.peers[name]
	if !ok {
		return
	}
	wasEager := p.mode == eager
	p.setMode(lazy) // for every origin
	if wasEager {
		n.promote()
	}
	p.announced = map[string]Head{}
	p.resync = true
	if !p.retry {
		p.retry, p.retryDue = true, n.now.Add(n.cfg.RetryInterval)
	}
}

// Resync tells the node that something a peer sent it was lost on
// arrival (dropped before it could be read): the node greets the peer
// again, and the peer answers with all its heads, so the node can ask
// for what it lacks.
func (n *Node) Resync(name string) {
	if p, ok := n.peers[name]; ok {
		n.announceAll(name, p, true)
	}
}

// Sent tells the node a send to a peer succeeded, ending its retries.
func (n *Node) Sent(name string) {
	if p, ok := n.peers[name]; ok && p.retry {
		// The link works again: exchange every head now (unless a retry
		// just did), so that either side can ask for what the failed
		// sends carried.
		p.retry = false
		if p.resync {
			n.announceAll(name, p, true)
		}
	}
}

// Broadcast numbers local messages and pushes them to the eager peers.
func (n *Node) Broadcast(payloads ...[]byte) {
	if len(payloads) == 0 {
		return
	}
	items := make([]Item, len(payloads))
	for i, p := range payloads {
		n.seq++
		items[i] = Item{ID: ID{Origin: n.cfg.Self, Epoch: n.cfg.Epoch, Seq: n.seq}, Payload: p}
		n.remember(items[i])
	}
	t := n.trackOf(n.cfg.Self, n.cfg.Epoch)
	t.mark = n.seq
	t.active = n.now
	n.moved[n.cfg.Self] = true
	for _, name := range sortedKeys(n.peers) {
		if n.peers[name].eagerFor(n.cfg.Self) {
			n.send(name, Message{Kind: Push, Items: items})
		}
	}
}

// trackOf returns the origin's track for epoch, starting a fresh one for a
// newer epoch; nil for an older epoch.
func (n *Node) trackOf(origin string, epoch uint64) *track {
	t := n.tracks[origin]
	switch {
	case t != nil && t.epoch == epoch:
		return t
	case t != nil && t.epoch > epoch:
		return nil
	}
	if t == nil && len(n.tracks) >= n.cfg.MaxOrigins {
		var oldest string
		for o, ot := range n.tracks {
			if o != n.cfg.Self && (oldest == "" || ot.active.Before(n.tracks[oldest].active)) {
				oldest = o
			}
		}
		delete(n.tracks, oldest)
		delete(n.wants, oldest)
		for _, q := range n.peers {
			delete(q.origins, oldest)
		}
	}
	t = &track{epoch: epoch, above: map[uint64]struct{}{}, active: n.now}
	n.tracks[origin] = t
	delete(n.wants, origin)
	return t
}

// remember keeps a message to serve repairs, evicting the oldest past
// CacheBytes.
func (n *Node) remember(it Item) {
	if _, ok := n.cache[it.ID]; ok {
		return
	}
	n.cache[it.ID] = it.Payload
	n.cacheOrder = append(n.cacheOrder, it.ID)
	n.cacheBytes += len(it.Payload) + len(it.ID.Origin) + 16
	for n.cacheBytes > n.cfg.CacheBytes && len(n.cacheOrder) > 1 {
		old := n.cacheOrder[0]
		n.cacheOrder = n.cacheOrder[1:]
		n.cacheBytes -= len(n.cache[old]) + len(old.Origin) + 16
		delete(n.cache, old)
	}
}

// Step handles a message from a peer.
func (n *Node) Step(from string, m Message) {
	if from == n.cfg.Self {
		return
	}
	p := n.peers[from]
	switch m.Kind {
	case Push:
		n.onPush(from, p, m)
	case IHave:
		n.onIHave(from, m.Heads)
		if m.Hello && p != nil {
			n.announceAll(from, p, false)
		}
	case Graft:
		if p != nil {
			for _, r := range m.Ranges {
				n.makeEagerFor(from, p, r.Origin)
			}
		}
		n.onGraft(from, m.Ranges)
	case Prune:
		// A prune names the origins whose messages the peer already gets
		// another way; one naming none (from an older node) prunes the
		// link for all.
		switch {
		case p == nil:
		case len(m.Heads) == 0:
			p.setMode(lazy)
		default:
			for _, h := range m.Heads {
				p.setModeFor(h.Origin, lazy)
			}
		}
	case Gone:
		n.onGone(from, m.Ranges)
	}
}

// onGone: the peer asked no longer holds these ranges. Another announcer
// is asked next, if there is one; otherwise the node gives the ranges up
// and falls back to anti-entropy with the peer.
func (n *Node) onGone(from string, ranges []Range) {
	fallback := false
	for _, r := range ranges {
		t := n.trackOf(r.Origin, r.Epoch)
		if t == nil {
			continue
		}
		if w := n.wants[r.Origin]; w != nil {
			w.announcers = slices.DeleteFunc(w.announcers, func(a string) bool { return a == from })
			if len(w.announcers) > 0 {
				w.deadline = n.now // ask the next one at the next tick
				continue
			}
		}
		n.giveUp(t, r)
		if w := n.wants[r.Origin]; w != nil && t.mark >= w.to {
			delete(n.wants, r.Origin)
		}
		fallback = true
	}
	if fallback {
		n.stats.Gone++
		n.antiEntropy(from)
	}
}

// giveUp marks a range seen without its messages: anti-entropy brings
// their rows.
func (n *Node) giveUp(t *track, r Range) {
	if r.To <= t.mark {
		return
	}
	if r.From <= t.mark+1 {
		n.stats.Lost += r.To - t.mark
		for s := range t.above {
			if s <= r.To {
				delete(t.above, s)
				n.stats.Lost--
			}
		}
		t.mark = r.To
		t.absorb()
		return
	}
	for s := r.From; s <= r.To && len(t.above) <= n.cfg.Window; s++ {
		if !t.seen(s) {
			n.stats.Lost++
			n.stats.Lost += t.add(s, n.cfg.Window)
		}
	}
}

func (n *Node) antiEntropy(peer string) {
	if !slices.Contains(n.ready.AntiEntropy, peer) {
		n.ready.AntiEntropy = append(n.ready.AntiEntropy, peer)
	}
}

func (n *Node) onPush(from string, p *peer, m Message) {
	var fresh []Item
	var dups []Head // origins of the duplicates, once each
	for _, it := range m.Items {
		if it.ID.Origin == n.cfg.Self {
			continue
		}
		t := n.trackOf(it.ID.Origin, it.ID.Epoch)
		if t == nil || t.seen(it.ID.Seq) {
			n.stats.Duplicates++
			if !slices.ContainsFunc(dups, func(h Head) bool { return h.Origin == it.ID.Origin }) {
				dups = append(dups, Head{Origin: it.ID.Origin})
			}
			continue
		}
		if it.ID.Seq > t.mark+1 {
			// A gap below this message: its messages may still be on their
			// way; if not, ask for them (the origin first, then the sender).
			n.want(it.ID.Origin, it.ID.Seq-1, from)
		}
		n.stats.Lost += t.add(it.ID.Seq, n.cfg.Window)
		t.active = n.now
		n.moved[it.ID.Origin] = true
		if w := n.wants[it.ID.Origin]; w != nil && t.mark >= w.to {
			delete(n.wants, it.ID.Origin)
		}
		n.remember(it)
		n.ready.Deliveries = append(n.ready.Deliveries, Delivery{From: from, Repair: m.Repair, Item: it})
		fresh = append(fresh, it)
	}
	// A duplicate that came by an eager link means the origin's tree has
	// a cycle there: prune the link for that origin. Repairs answer a
	// graft and say nothing of the tree.
	if len(dups) > 0 && !m.Repair && p != nil {
		n.stats.Prunes++
		n.send(from, Message{Kind: Prune, Heads: dups})
	}
	if len(fresh) == 0 {
		return
	}
	for _, name := range sortedKeys(n.peers) {
		if name == from {
			continue
		}
		p := n.peers[name]
		var out []Item
		for _, it := range fresh {
			if it.ID.Origin != name && p.eagerFor(it.ID.Origin) {
				if out == nil {
					out = make([]Item, 0, len(fresh))
				}
				out = append(out, it)
			}
		}
		if len(out) > 0 {
			n.stats.Forwards += uint64(len(out))
			n.sendItems(name, Message{Kind: Push, Items: out}, true)
		}
	}
}

func (n *Node) onIHave(from string, heads []Head) {
	for _, h := range heads {
		if h.Origin == n.cfg.Self || h.Seq == 0 {
			continue
		}
		t := n.trackOf(h.Origin, h.Epoch)
		if t == nil || h.Seq <= t.mark {
			continue
		}
		if len(t.missing(h.Origin, min(h.Seq, t.mark+uint64(n.cfg.Window)))) == 0 {
			continue
		}
		n.want(h.Origin, h.Seq, from)
	}
}

// want records that this node lacks messages of origin up to seq, which
// announcer holds. The origin, when it is a peer, is asked first: it holds
// its own messages longest.
func (n *Node) want(origin string, seq uint64, announcer string) {
	w := n.wants[origin]
	if w == nil {
		w = &want{deadline: n.now.Add(n.cfg.GraftTimeout)}
		n.wants[origin] = w
		if _, ok := n.peers[origin]; ok && origin != announcer {
			w.announcers = append(w.announcers, origin)
		}
	}
	w.to = max(w.to, seq)
	if !slices.Contains(w.announcers, announcer) {
		w.announcers = append(w.announcers, announcer)
		if announcer == origin {
			w.announcers = append([]string{announcer}, w.announcers[:len(w.announcers)-1]...)
		}
	}
}

func (n *Node) onGraft(from string, ranges []Range) {
	var items []Item
	var gone []Range
	for _, r := range ranges {
		if r.To < r.From {
			continue
		}
		var have []uint64
		if r.To-r.From < uint64(len(n.cacheOrder)) {
			for s := r.From; s <= r.To; s++ {
				if _, ok := n.cache[ID{r.Origin, r.Epoch, s}]; ok {
					have = append(have, s)
				}
			}
		} else {
			for _, id := range n.cacheOrder {
				if id.Origin == r.Origin && id.Epoch == r.Epoch && id.Seq >= r.From && id.Seq <= r.To {
					have = append(have, id.Seq)
				}
			}
			slices.Sort(have)
		}
		next := r.From
		for _, s := range have {
			if s > next {
				gone = append(gone, Range{Origin: r.Origin, Epoch: r.Epoch, From: next, To: s - 1})
			}
			id := ID{r.Origin, r.Epoch, s}
			items = append(items, Item{ID: id, Payload: n.cache[id]})
			next = s + 1
		}
		if next <= r.To {
			gone = append(gone, Range{Origin: r.Origin, Epoch: r.Epoch, From: next, To: r.To})
		}
	}
	if len(items) > 0 {
		n.stats.Served++
		n.send(from, Message{Kind: Push, Repair: true, Items: items})
	}
	if len(gone) > 0 {
		n.send(from, Message{Kind: Gone, Ranges: gone})
	}
}

// Tick advances the node's time to now: it asks for announced messages
// that have not arrived, announces moved heads to lazy peers, and retries
// peers whose sends failed.
func (n *Node) Tick(now time.Time) {
	if now.Before(n.now) {
		return
	}
	n.now = now
	for _, origin := range sortedKeys(n.wants) {
		w := n.wants[origin]
		if now.Before(w.deadline) {
			continue
		}
		t := n.tracks[origin]
		if t == nil {
			delete(n.wants, origin)
			continue
		}
		missing := t.missing(origin, min(w.to, t.mark+uint64(n.cfg.Window)))
		if len(missing) == 0 {
			delete(n.wants, origin)
			continue
		}
		if w.tries >= n.cfg.GraftTries || len(w.announcers) == 0 {
			// Give up the range: anti-entropy with an announcer repairs it.
			for _, r := range missing {
				n.giveUp(t, r)
			}
			if len(w.announcers) > 0 {
				n.antiEntropy(w.announcers[0])
			}
			delete(n.wants, origin)
			continue
		}
		// Ask for the newest MaxGraft messages at most; older ones are left
		// to anti-entropy (a node that was away long, or is new).
		if r0 := missing[0]; w.to-r0.From >= uint64(n.cfg.MaxGraft) {
			cut := w.to - uint64(n.cfg.MaxGraft)
			n.giveUp(t, Range{Origin: origin, Epoch: t.epoch, From: r0.From, To: cut})
			n.antiEntropy(w.announcers[0])
			n.stats.Gone++
			if missing = t.missing(origin, min(w.to, t.mark+uint64(n.cfg.Window))); len(missing) == 0 {
				delete(n.wants, origin)
				continue
			}
		}
		to := w.announcers[w.tries%len(w.announcers)]
		w.tries++
		// Back off: a busy peer answers late rather than never.
		w.deadline = now.Add(n.cfg.GraftTimeout << (w.tries - 1))
		n.stats.Grafts++
		if p := n.peers[to]; p != nil {
			n.makeEagerFor(to, p, origin)
		}
		n.send(to, Message{Kind: Graft, Ranges: missing})
	}
	if !now.Before(n.nextAnn) && len(n.moved) > 0 {
		n.nextAnn = now.Add(n.cfg.AnnounceInterval)
		for _, name := range sortedKeys(n.peers) {
			p := n.peers[name]
			if p.retry {
				continue
			}
			var heads []Head
			for _, o := range sortedKeys(n.moved) {
				if p.eagerFor(o) {
					continue // its messages are pushed over the link
				}
				if h, ok := n.head(o); ok && p.announced[o] != h {
					heads = append(heads, h)
					p.announced[o] = h
				}
			}
			if len(heads) > 0 {
				n.send(name, Message{Kind: IHave, Heads: heads})
			}
		}
		clear(n.moved)
	}
	for _, name := range sortedKeys(n.peers) {
		p := n.peers[name]
		if p.retry && !now.Before(p.retryDue) {
			p.retryDue = now.Add(n.cfg.RetryInterval)
			n.announceAll(name, p, true)
		}
	}
}

func (n *Node) head(origin string) (Head, bool) {
	t := n.tracks[origin]
	if t == nil || t.mark == 0 {
		return Head{}, false
	}
	return Head{Origin: origin, Epoch: t.epoch, Seq: t.mark}, true
}

// makeEager moves a lazy peer to the eager set. Announcements go to lazy
// peers only, and pushes to eager ones, so a change committed while the
// peer was lazy and not yet announced would reach it by neither: it is
// sent the heads it has not been told first.
func (n *Node) makeEager(name string, p *peer) {
	if p.mode == eager && len(p.origins) == 0 {
		return
	}
	p.setMode(eager)
	var heads []Head
	for _, o := range sortedKeys(n.tracks) {
		if h, ok := n.head(o); ok && p.announced[o] != h {
			heads = append(heads, h)
			p.announced[o] = h
		}
	}
	if len(heads) > 0 {
		n.send(name, Message{Kind: IHave, Heads: heads})
	}
}

// makeEagerFor makes a link eager for one origin, telling the peer that
// origin's head first if it has not been told (as makeEager does for all).
func (n *Node) makeEagerFor(name string, p *peer, origin string) {
	if p.eagerFor(origin) {
		return
	}
	p.setModeFor(origin, eager)
	if h, ok := n.head(origin); ok && p.announced[origin] != h {
		p.announced[origin] = h
		n.send(name, Message{Kind: IHave, Heads: []Head{h}})
	}
}

// announceAll sends a peer every head. A hello (sent when meeting a peer,
// possibly with no heads) asks the peer for all of its heads in return, so
// that a restarted node learns at once what it has missed.
func (n *Node) announceAll(name string, p *peer, hello bool) {
	if hello {
		p.resync = false
	}
	var heads []Head
	for _, o := range sortedKeys(n.tracks) {
		if h, ok := n.head(o); ok {
			heads = append(heads, h)
			p.announced[o] = h
		}
	}
	if len(heads) > 0 || hello {
		n.send(name, Message{Kind: IHave, Heads: heads, Hello: hello})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
