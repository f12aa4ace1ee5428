package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// Tier names.
const (
	Regional = "regional"
	Global   = "global"
)

// Label returns the memberlist label of a tier: strata/<cluster>/regional/<region>
// or strata/<cluster>/global. Packets and streams with another label are
// refused, so tiers, regions and clusters cannot mix.
func Label(cluster, tier, region string) string {
	if tier == Global {
		return "strata/" + cluster + "/global"
	}
	return "strata/" + cluster + "/regional/" + region
}

// Meta is what a node tells its tier about itself, in memberlist node meta.
type Meta struct {
	Region string   `json:"region"`
	Roles  []string `json:"roles,omitempty"`
	API    string   `json:"api,omitempty"`
	// Keys are the short fingerprints (MetaFingerprint) of the keys the
	// node holds for this tier, the primary first; the tier fills them in.
	Keys []string `json:"keys,omitempty"`
	// Proto is the range [min, max] of strata protocol versions the node
	// speaks on this tier; absent on nodes older than versioning (they
	// speak version 1). New sets it to [ProtocolMin, ProtocolMax] when empty.
	Proto []int `json:"proto,omitempty"`
	// Build is the node's build (see Build). New sets it when empty.
	Build string `json:"build,omitempty"`
}

// Config configures one tier of one node.
type Config struct {
	// Node is the node's unique name.
	Node string
	// Tier is Regional or Global.
	Tier string
	// Cluster and Region make up the label.
	Cluster, Region string
	// Bind is the host:port for gossip (UDP) and streams (TCP); port 0
	// picks a free port.
	Bind string
	// Advertise is the host:port peers reach this node at; default Bind.
	Advertise string
	// Join lists peers (host:port; DNS names allowed) to join at start.
	Join []string
	// Keys are the AES keys (16, 24 or 32 bytes); the first is primary.
	// Empty disables encryption.
	Keys [][]byte
	// KeyringFile, when set, is rewritten on key changes (AddKey, UseKey,
	// RemoveKey) so that a restart keeps them.
	KeyringFile string
	// GossipInterval, GossipNodes, ProbeInterval and ProbeTimeout tune
	// memberlist; zero keeps the LAN (regional) or WAN (global) preset.
	GossipInterval time.Duration
	GossipNodes    int
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	// SyncInterval is the period of anti-entropy exchanges. Default 10s.
	SyncInterval time.Duration
	// freshHold, in tests, replaces how long a periodic exchange leaves
	// fresh rows to the push path (see Tier.freshWindow).
	freshHold time.Duration
	// QueueLimit bounds the broadcast queue; older broadcasts beyond it
	// are dropped (anti-entropy repairs what they carried). Default 4096.
	// A queued broadcast is at most maxGossipBytes (1,100 bytes; larger
	// changes go by stream), so the queue is bounded in bytes too: about
	// 4.5 MB at the default.
	QueueLimit int
	// TombstoneTTL is how long peers keep tombstones: a node whose last
	// completed exchange is older takes a full state transfer from a peer
	// instead of a digest exchange. Zero disables state transfer.
	TombstoneTTL time.Duration
	// InboxBytes bounds the bytes of received messages waiting to be
	// merged; a message beyond it is dropped and counted (anti-entropy
	// repairs it). Default 64 MiB, four of the largest messages.
	InboxBytes int64
	// Meta is published to the other members.
	Meta Meta
	// PeersFile, when set, persists known peers so that a restarted node
	// rejoins without its join list.
	PeersFile string
	// Transport replaces memberlist's UDP/TCP transport (tests).
	Transport memberlist.NodeAwareTransport
	// Accept checks a change received from a peer before it is merged
	// (contract validation); from is the sending node. Nil accepts all.
	// It must be safe for concurrent use.
	Accept func(c store.Change, from string) error
	// Logger receives the tier's logs. Default slog.Default().
	Logger *slog.Logger
	// Metrics receives the tier's counters. Nil disables them.
	Metrics *Metrics
	// Push tunes the push path (zero values take the defaults).
	Push PushConfig
}

// maxGossipBytes is the largest change message sent by gossip. memberlist
// packets carry about 1.4 KB, less labels, encryption and compound
// headers; larger changes go over streams.
const maxGossipBytes = 1100

// pushFanout is how many peers a change too large for gossip is streamed to.
const pushFanout = 3

// Tier is one node's membership in one tier, replicating one store.
// Its methods are safe for concurrent use.
type Tier struct {
	commits *store.Subscription // the store's commits, for commitLoop
	cfg     Config
	store   *store.Store
	log     *slog.Logger
	m       *Metrics
	ml      *memberlist.Memberlist
	queue   *memberlist.TransmitLimitedQueue
	addr    string              // advertised host:port
	keyring *memberlist.Keyring // nil: no encryption
	keysMu  sync.Mutex          // serialises key changes and keyring file writes

	meta    atomic.Pointer[[]byte] // NodeMeta; replaced when the keyring changes
	decrypt decryptCounts          // decrypt failures per peer
	leaving sync.Map               // name → time.Time: peers that announced their leave

	gossipIn chan []byte      // change messages to merge
	syncIn   chan inboundSync // decoded sync messages
	inbox    inbox            // bytes queued in gossipIn and syncIn

	membersMu sync.RWMutex
	members   map[string]*memberlist.Node // copies taken in event callbacks
	regions   map[store.NodeID]string     // stamp identity → region, from meta

	logged      *logOnce    // "peer/reason": reject logs, once each
	savePending atomic.Bool // a peers save is scheduled

	streamPushes chan []byte // changes too large for gossip, for the stream push workers

	stop          chan struct{} // closed by Close: loops end
	transportDone chan struct{} // closed once memberlist is shut down
	done          sync.WaitGroup
	closeMu       sync.Mutex
	closed        bool
	syncDone      chan syncResult // completed exchanges, for tests (buffered, lossy)

	syncNow   chan syncAsk              // exchanges to start now: members that joined, ranges the push path gave up
	ready     chan struct{}             // closed once caught up (see Ready)
	readyOnce sync.Once                 // closes ready
	startedAt atomic.Pointer[time.Time] // set when Start has joined
	xfer      transferState             // full state transfer (statetransfer.go)
	sync      syncState                 // exchanges of several pages, sync error logs (sync.go)
	plum      *pusher                   // the push path (push.go)
}

// New starts the tier's memberlist (binding its port) and attaches it to
// the store, but does not join peers: call Start.
func New(cfg Config, st *store.Store) (*Tier, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 10 * time.Second
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = 4096
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.InboxBytes <= 0 {
		cfg.InboxBytes = defaultInboxBytes
	}
	t := &Tier{
		cfg:           cfg,
		store:         st,
		log:           cfg.Logger.With("tier", cfg.Tier),
		m:             cfg.Metrics,
		gossipIn:      make(chan []byte, 4096),
		syncIn:        make(chan inboundSync, 256),
		logged:        newLogOnce(maxLogged, 10*time.Minute),
		stop:          make(chan struct{}),
		transportDone: make(chan struct{}),
		syncDone:      make(chan syncResult, 64),
		syncNow:       make(chan syncAsk, 16),
		ready:         make(chan struct{}),
		members:       map[string]*memberlist.Node{},
		regions:       map[store.NodeID]string{},
	}
	if len(cfg.Keys) == 0 && !loopback(cfg.Bind) {
		t.log.Warn("gossip is not encrypted and binds a non-loopback address: any host that reaches it can join the tier and write its rows; set "+
			"["+cfg.Tier+"].keyring to a file of base64 AES keys", "bind", cfg.Bind)
	}
	if len(t.cfg.Meta.Proto) == 0 {
		t.cfg.Meta.Proto = []int{ProtocolMin, ProtocolMax}
	}
	if t.cfg.Meta.Build == "" {
		t.cfg.Meta.Build = Build()
	}
	meta, err := t.encodeMeta(cfg.Keys)
	if err != nil {
		return nil, err
	}
	t.meta.Store(&meta)
	t.inbox.limit = cfg.InboxBytes

	t.plum = newPusher(t) // before the transport: it serves push streams
	mc, err := t.memberlistConfig()
	if err != nil {
		return nil, err
	}
	t.queue = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return t.ml.NumMembers() }, RetransmitMult: mc.RetransmitMult}
	if t.ml, err = memberlist.Create(mc); err != nil {
		close(t.stop)
		mc.Transport.Shutdown()
		close(t.transportDone)
		return nil, fmt.Errorf("cluster: %s tier on %s: %w", cfg.Tier, cfg.Bind, err)
	}
	local := t.ml.LocalNode() // safe here: no peer has been contacted yet
	t.addr = net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
	t.track(local, memberlist.StateAlive)
	t.startStreamPush()
	t.commits = st.Subscribe(commitBuffer)
	t.done.Add(6)
	go t.commitLoop()
	go t.plum.loop()
	go t.plum.mergeLoop()
	go t.gossipLoop()
	go t.syncLoop()
	go t.antiEntropyLoop()
	return t, nil
}

// memberlistConfig derives memberlist's configuration from ours.
func (t *Tier) memberlistConfig() (*memberlist.Config, error) {
	cfg := t.cfg
	var mc *memberlist.Config
	if cfg.Tier == Global {
		mc = memberlist.DefaultWANConfig()
	} else {
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = cfg.Node
	mc.Label = Label(cfg.Cluster, cfg.Tier, cfg.Region)
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: bind %q: %w", cfg.Bind, err)
	}
	mc.BindAddr, mc.BindPort = host, port
	if cfg.Advertise != "" {
		ah, ap, err := splitHostPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise %q: %w", cfg.Advertise, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	if cfg.GossipInterval > 0 {
		mc.GossipInterval = cfg.GossipInterval
	}
	if cfg.GossipNodes > 0 {
		mc.GossipNodes = cfg.GossipNodes
	}
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
	}
	if cfg.ProbeTimeout > 0 {
		mc.ProbeTimeout = cfg.ProbeTimeout
	}
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("cluster: keyring: %w", err)
		}
		mc.Keyring = kr
		t.keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Delegate = (*delegate)(t)
	mc.Alive, mc.Merge = (*versionCheck)(t), (*versionCheck)(t)
	mc.Events = (*events)(t)
	mc.Logger = log.New(&slogWriter{log: t.log, onLine: t.noteLogLine}, "", 0)
	// memberlist's own push/pull carries membership only (LocalState is
	// empty: rows are reconciled by anti-entropy), so it stays cheap; it is
	// what repairs membership gossip lost to dropped packets.
	mc.PushPullInterval = 15 * time.Second
	if cfg.Transport != nil {
		mc.Transport = newCountingTransport(cfg.Transport, t.cfg.Metrics, cfg.Tier, t.stop, t.transportDone)
	} else {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{host}, BindPort: port, Logger: mc.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("cluster: %s tier: bind %s: %w", cfg.Tier, cfg.Bind, err)
		}
		mc.Transport = newCountingTransport(nt, t.cfg.Metrics, cfg.Tier, t.stop, t.transportDone)
		if port == 0 && cfg.Advertise == "" {
			mc.BindPort = nt.GetAutoBindPort()
		}
	}
	mc.Transport = t.plum.routeStreams(mc.Transport.(memberlist.NodeAwareTransport), mc.Label, t.keyring)
	return mc, nil
}

// loopback reports whether a bind address is reachable from this host
// only: a loopback IP or "localhost". An empty host or 0.0.0.0 binds every
// interface.
func loopback(bind string) bool {
	host, _, err := net.SplitHostPort(bind)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number", p)
	}
	return host, port, nil
}

// Start joins the configured and persisted peers, then catches up with
// one of them (see Ready). A node that reaches no peer runs alone, ready,
// and keeps trying in the background.
func (t *Tier) Start() {
	targets := t.joinTargets()
	if len(targets) > 0 {
		if n, err := t.ml.Join(targets); err != nil && n == 0 {
			t.log.Warn("no peer reachable yet; retrying in the background", "join", targets, "err", err)
		} else {
			t.log.Info("joined", "contacted", n)
		}
	}
	t.startCatchUp()
	t.done.Add(1)
	go t.rejoinLoop(targets)
}

// reconnectEvery is how often a node tries to reach members it considers
// dead, and reconnectSample how many of them a round tries.
const (
	reconnectEvery  = 2 * time.Second
	reconnectSample = 3
)

// rejoinLoop keeps the tier whole. While this node is alone it retries its
// join targets (with backoff). And it keeps trying a few members it
// considers dead: memberlist never probes dead nodes again, so after a
// partition longer than failure detection each side would otherwise stay
// dead to the other for good (Serf's reconnect does the same).
func (t *Tier) rejoinLoop(targets []string) {
	defer t.done.Done()
	backoff := time.Second
	next := time.Now().Add(backoff)
	for {
		select {
		case <-t.stop:
			return
		case <-time.After(reconnectEvery):
		}
		if t.ml.NumMembers() <= 1 && len(targets) > 0 && time.Now().After(next) {
			if n, err := t.ml.Join(targets); err == nil && n > 0 {
				t.log.Info("joined", "contacted", n)
			}
			backoff = min(2*backoff, 30*time.Second)
			next = time.Now().Add(backoff)
		}
		var dead []string
		t.membersMu.RLock()
		for _, n := range t.members {
			if n.State == memberlist.StateDead {
				dead = append(dead, n.Address())
			}
		}
		t.membersMu.RUnlock()
		rand.Shuffle(len(dead), func(i, j int) { dead[i], dead[j] = dead[j], dead[i] })
		if len(dead) > 0 {
			if n, err := t.ml.Join(dead[:min(reconnectSample, len(dead))]); err == nil && n > 0 {
				t.log.Info("reconnected to members considered dead", "contacted", n)
			}
		}
	}
}

// Name is this node's name in the tier.
func (t *Tier) Name() string { return t.cfg.Node }

// Addr is the address this node gossips on.
func (t *Tier) Addr() string { return t.addr }

// Member is one node of a tier as this node sees it.
type Member struct {
	Name   string   `json:"name"`
	Addr   string   `json:"addr"`
	State  string   `json:"state"` // alive, suspect, dead, left
	Region string   `json:"region,omitempty"`
	Roles  []string `json:"roles,omitempty"`
	API    string   `json:"api,omitempty"`
	// Keys are the short fingerprints of the keys the member holds, the
	// primary first, as it advertises them.
	Keys []string `json:"keys,omitempty"`
	// DecryptFailures counts the packets and streams from the member
	// this node could not decrypt (a key it does not hold).
	DecryptFailures uint64 `json:"decrypt_failures,omitempty"`
	// Protocol is the range of strata protocol versions the member speaks
	// on this tier, "min-max" ("1-1" for members older than versioning).
	Protocol string `json:"protocol"`
	// Build is the member's build (module version and VCS revision), if
	// it advertises one.
	Build string `json:"build,omitempty"`
}

// Members lists the tier's members, this node included, sorted by name.
func (t *Tier) Members() []Member {
	t.membersMu.RLock()
	defer t.membersMu.RUnlock()
	out := make([]Member, 0, len(t.members))
	for _, n := range t.members {
		m := Member{Name: n.Name, Addr: n.Address(), State: stateName(n.State)}
		var meta Meta
		if json.Unmarshal(n.Meta, &meta) == nil {
			m.Region, m.Roles, m.API, m.Keys = meta.Region, meta.Roles, meta.API, meta.Keys
			m.Build = meta.Build
		}
		m.Protocol = rangeString(meta)
		out = append(out, m)
	}
	for i := range out {
		out[i].DecryptFailures = t.decryptFailures(out[i].Name)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}

// NumAlive is the number of alive members, this node included.
func (t *Tier) NumAlive() int { return t.ml.NumMembers() }

// Close leaves the tier (telling peers), stops its loops and detaches from
// the store.
func (t *Tier) Close() error {
	t.closeMu.Lock()
	if t.closed {
		t.closeMu.Unlock()
		return nil
	}
	t.closed = true
	t.closeMu.Unlock()
	t.commits.Close()
	t.savePeers()
	t.announceLeave()
	err := t.ml.Leave(time.Second)
	close(t.stop)
	if serr := t.ml.Shutdown(); err == nil {
		err = serr
	}
	close(t.transportDone)
	t.done.Wait()
	return err
}

// commitBuffer is how many commits the tier's subscription to its store
// holds for the commit loop; past it the store drops commits (counted in
// strata_gossip_dropped_total) and anti-entropy repairs what they held.
const commitBuffer = 1024

// commitLoop takes the store's commits from the tier's subscription and
// hands them on (onCommit), off the store's commit loop: the store never
// waits for the tier.
func (t *Tier) commitLoop() {
	defer t.done.Done()
	var dropped uint64
	for {
		select {
		case <-t.stop:
			return
		case c, ok := <-t.commits.C:
			if !ok {
				return
			}
			if d := t.commits.Dropped(); d > dropped {
				t.m.dropped.WithLabelValues(t.cfg.Tier).Add(float64(d - dropped))
				dropped = d
			}
			t.onCommit(c.Local, c.Remote)
		}
	}
}

// onCommit hands this node's own writes to the push path, and queues for
// gossip its own writes when some peer does not push, and remote changes
// seen here first (they came by gossip: pushed changes are merged
// quietly). Own writes are the local ones and the merged ones stamped by
// this node: the global tier's writer signs its records and merges them,
// so the store reports them as a peer's.
func (t *Tier) onCommit(local, remote []store.Change) {
	own, seen := local, remote
	if me := t.store.Node(); slices.ContainsFunc(remote, func(c store.Change) bool { return c.Row.Stamp.Node == me }) {
		own, seen = slices.Clone(local), nil
		for _, c := range remote {
			if c.Row.Stamp.Node == me {
				own = append(own, c)
			} else {
				seen = append(seen, c)
			}
		}
	}
	t.plum.offer(own)
	if !t.plum.gossipNeeded.Load() {
		own = nil
	}
	for _, set := range [][]store.Change{own, seen} {
		for _, c := range set {
			t.broadcast(c)
		}
	}
}

// broadcast sends one change by gossip, or by stream to a few peers when
// it is too large for a packet (streampush.go).
func (t *Tier) broadcast(c store.Change) {
	msg := encodeMessage(&changesMsg{header: header{Type: msgChanges, Sender: t.cfg.Node}, Changes: []store.Change{c}})
	if len(msg) > maxGossipBytes {
		t.queueStreamPush(msg)
		return
	}
	t.queue.QueueBroadcast(broadcastMsg(msg))
	if n := t.queue.NumQueued(); n > t.cfg.QueueLimit {
		t.queue.Prune(t.cfg.QueueLimit)
		t.m.dropped.WithLabelValues(t.cfg.Tier).Add(float64(n - t.cfg.QueueLimit))
	}
}

// push streams a message to a few random alive peers.
func (t *Tier) push(msg []byte) {
	peers := t.peers()
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	for _, p := range peers[:min(pushFanout, len(peers))] {
		if err := t.ml.SendReliable(p, msg); err != nil {
			t.log.Debug("stream push failed", "peer", p.Name, "err", err)
		}
	}
}

// peers returns the alive members other than this node.
func (t *Tier) peers() []*memberlist.Node {
	t.membersMu.RLock()
	defer t.membersMu.RUnlock()
	var out []*memberlist.Node
	for _, n := range t.members {
		if n.Name != t.cfg.Node && n.State == memberlist.StateAlive {
			out = append(out, n)
		}
	}
	return out
}

// node finds an alive member by name.
func (t *Tier) node(name string) *memberlist.Node {
	t.membersMu.RLock()
	defer t.membersMu.RUnlock()
	if n := t.members[name]; n != nil && n.State == memberlist.StateAlive {
		return n
	}
	return nil
}

// track records a copy of a member's state. memberlist calls the event
// delegate under its own lock, so this is the one safe place to read a
// *memberlist.Node; elsewhere memberlist may be writing it.
//
// The event says the state: memberlist's nodeState shadows Node.State, so
// the Node handed to events keeps the state it had when first seen.
func (t *Tier) track(n *memberlist.Node, state memberlist.NodeStateType) {
	c := *n
	c.State = state
	c.Meta = bytes.Clone(n.Meta)
	c.Addr = slices.Clone(n.Addr)
	var meta Meta
	json.Unmarshal(c.Meta, &meta)
	t.membersMu.Lock()
	t.members[c.Name] = &c
	t.regions[store.NodeIDOf(c.Name)] = meta.Region
	t.membersMu.Unlock()
	if t.plum != nil {
		t.plum.membership.Store(true)
	}
}

// RegionOf returns the region of the member whose stamps carry id (alive
// or not, as long as this node has seen it).
func (t *Tier) RegionOf(id store.NodeID) (string, bool) {
	t.membersMu.RLock()
	defer t.membersMu.RUnlock()
	r, ok := t.regions[id]
	return r, ok
}

// LowestAlive returns the lowest-named alive member with the given role in
// its meta (this node included), or "" if none: the rule that elects a
// region's publisher among its gateways. Every member applies it to the
// same membership, so they agree once membership has converged.
func (t *Tier) LowestAlive(role string) string {
	t.membersMu.RLock()
	defer t.membersMu.RUnlock()
	best := ""
	for name, n := range t.members {
		if n.State != memberlist.StateAlive || (best != "" && name >= best) {
			continue
		}
		var meta Meta
		if json.Unmarshal(n.Meta, &meta) == nil && slices.Contains(meta.Roles, role) {
			best = name
		}
	}
	return best
}

// reject counts a refused message or change and logs it once per peer and
// reason.
func (t *Tier) reject(peer, reason string, err error) {
	t.m.rejected.WithLabelValues(t.cfg.Tier, reason).Inc()
	t.logRejection(peer, reason, err)
}

// maxLogged bounds the (peer, reason) pairs whose first rejection is
// logged: peers choose their names.
const maxLogged = 1024

// logRejection logs a rejection once per peer and reason.
func (t *Tier) logRejection(peer, reason string, err error) {
	if t.logged.first(peer+"/"+reason, time.Now()) {
		t.log.Warn("rejected from peer (logged once per peer and reason)", "peer", peer, "reason", reason, "err", err)
	}
}

// refuseItems counts the items of a message refused on decoding, and logs
// the first of each reason once; the rest of the message was applied.
func (t *Tier) refuseItems(peer string, r refusals) {
	for _, c := range [...]struct {
		reason string
		n      int
	}{{reasonTooLong, r.TooLong}, {reasonInvalidRow, r.Invalid}, {reasonMalformed, r.Malforms}} {
		if c.n > 0 {
			t.m.rejected.WithLabelValues(t.cfg.Tier, c.reason).Add(float64(c.n))
		}
	}
	for _, it := range r.Items {
		t.logRejection(peer, it.Reason, it)
	}
}

// rejectReason classifies an error for strata_gossip_rejected_total.
func rejectReason(err error) string {
	var re interface{ Reason() string }
	switch {
	case errors.As(err, &re):
		return re.Reason()
	case errors.Is(err, errMalformed):
		return "malformed"
	case errors.Is(err, hlc.ErrDrift):
		return "clock_drift"
	case errors.Is(err, store.ErrInvalid):
		return "invalid_row"
	case errors.Is(err, store.ErrStale):
		return "stale" // a peer that has not reaped yet, or was away too long
	}
	return "contract"
}

// gossipLoop merges received change messages, many at a time, so that a
// burst of gossip costs one store commit.
func (t *Tier) gossipLoop() {
	defer t.done.Done()
	for {
		var batch [][]byte
		select {
		case <-t.stop:
			return
		case b := <-t.gossipIn:
			batch = append(batch, b)
		}
	drain:
		for len(batch) < 1024 {
			select {
			case b := <-t.gossipIn:
				batch = append(batch, b)
			default:
				break drain
			}
		}
		var changes []store.Change
		held := 0
		for _, b := range batch {
			held += len(b)
			msg, err := decodeMessage(b)
			if err != nil {
				t.reject(senderOf(b), "malformed", err)
				continue
			}
			cm := msg.(*changesMsg)
			t.m.received.WithLabelValues(t.cfg.Tier, "changes").Inc()
			t.refuseItems(cm.Sender, cm.Refused)
			changes = append(changes, t.accept(cm.Sender, cm.Changes)...)
		}
		if len(changes) == 0 {
			t.inbox.release(held)
			continue
		}
		applied, rejected, err := t.store.Merge(context.Background(), changes)
		t.inbox.release(held)
		if err != nil {
			t.log.Error("merging received changes", "err", err)
			continue
		}
		t.m.bcast.applied.WithLabelValues(t.cfg.Tier, pathGossip).Add(float64(len(applied)))
		for _, r := range rejected {
			t.reject("?", rejectReason(r.Err), r.Err)
		}
	}
}

// accept filters changes through the configured contract check.
func (t *Tier) accept(from string, changes []store.Change) []store.Change {
	if t.cfg.Accept == nil {
		return changes
	}
	out := changes[:0:0]
	for _, c := range changes {
		if err := t.cfg.Accept(c, from); err != nil {
			t.reject(from, rejectReason(err), fmt.Errorf("%s/%s: %w", c.Table, c.Key, err))
			continue
		}
		out = append(out, c)
	}
	return out
}

// senderOf reads the sender of a message that failed to decode, if it can.
func senderOf(b []byte) string {
	d := &decoder{b: b}
	if len(b) > 0 {
		d.b = b[1:]
	}
	if s := d.str(maxNameLen, "sender"); d.err == nil && s != "" {
		return s
	}
	return "?"
}

// delegate is the memberlist.Delegate of a Tier.
type delegate Tier

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte { return *d.meta.Load() }

// NotifyMsg hands a message to the tier's loops. memberlist reuses buf,
// and the call must not block: a message that finds its queue full is
// dropped and counted; anti-entropy repairs what it carried.
func (d *delegate) NotifyMsg(buf []byte) {
	t := (*Tier)(d)
	if len(buf) == 0 {
		t.reject("?", "malformed", errMalformed)
		return
	}
	t.m.bytesIn.WithLabelValues(t.cfg.Tier, "message").Add(float64(len(buf)))
	switch msgType(buf[0]) {
	case msgLeaving:
		t.noteLeaving(bytes.Clone(buf))
		return
	case msgPlum: // the push path admits it to the inbox once decoded
		t.plum.receive(bytes.Clone(buf))
		return
	}
	if !t.inbox.admit(len(buf)) {
		t.m.dropped.WithLabelValues(t.cfg.Tier).Inc()
		return
	}
	b := bytes.Clone(buf)
	if msgType(b[0]) == msgChanges {
		select {
		case t.gossipIn <- b: // released by gossipLoop
		default:
			t.inbox.release(len(b))
			t.m.dropped.WithLabelValues(t.cfg.Tier).Inc()
		}
		return
	}
	msg, err := decodeMessage(b)
	if err != nil {
		t.inbox.release(len(b))
		t.reject(senderOf(b), "malformed", err)
		return
	}
	select {
	case t.syncIn <- inboundSync{msg, len(b)}: // released by syncLoop
	default:
		t.inbox.release(len(b))
		t.m.dropped.WithLabelValues(t.cfg.Tier).Inc()
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

// LocalState and MergeRemoteState keep memberlist's push/pull to
// membership only: row state is reconciled by anti-entropy.
func (d *delegate) LocalState(join bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// events is the memberlist.EventDelegate of a Tier.
type events Tier

var _ memberlist.EventDelegate = (*events)(nil)

func (e *events) NotifyJoin(n *memberlist.Node) {
	t := (*Tier)(e)
	t.leaving.Delete(n.Name)
	t.track(n, memberlist.StateAlive)
	t.log.Debug("member joined", "node", n.Name, "addr", n.Address())
	t.savePeersSoon()
	t.syncSoon(n.Name)
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	t := (*Tier)(e)
	t.track(n, t.goneState(n.Name)) // left if it announced it, else dead
	t.log.Debug("member left", "node", n.Name)
	t.savePeersSoon()
}

func (e *events) NotifyUpdate(n *memberlist.Node) { (*Tier)(e).track(n, memberlist.StateAlive) }

// broadcastMsg is a gossip broadcast that never invalidates another:
// changes to one row are deltas, not replacements.
type broadcastMsg []byte

func (b broadcastMsg) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcastMsg) Message() []byte                       { return b }
func (b broadcastMsg) Finished()                             {}

// UniqueBroadcast tells memberlist not to scan its queue for broadcasts
// this one invalidates (there are none), which it would otherwise do on
// every queued change, on the store's commit goroutine.
func (b broadcastMsg) UniqueBroadcast() {}

var _ memberlist.UniqueBroadcast = broadcastMsg(nil)

// slogWriter turns memberlist's log lines into slog records.
type slogWriter struct {
	log    *slog.Logger
	onLine func(string) // sees every line first (decrypt failures); may be nil
}

func (w *slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if w.onLine != nil {
		w.onLine(line)
	}
	level := slog.LevelDebug
	switch {
	case strings.Contains(line, "[ERR]"):
		level = slog.LevelWarn // peers failing is routine for a gossip layer
	case strings.Contains(line, "[WARN]"):
		level = slog.LevelInfo
	}
	w.log.Log(context.Background(), level, "memberlist: "+line)
	return len(p), nil
}

var _ io.Writer = (*slogWriter)(nil)
