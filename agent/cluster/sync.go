package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// Anti-entropy exchange between an initiator A and a responder B, all over
// memberlist streams (SendReliable: labelled, encrypted with the tier key):
//
//	A → B  sync-digest: A's root and branch hashes (about 1 KB)
//	B → A  sync-leaves: B's leaf hashes for each branch that differs
//	         (none: in sync, the exchange ends)
//	A → B  sync-keys:   A's (table, key, row hash) in some of the leaves
//	         that differ: one page
//	B → A  sync-rows:   B's rows that A lacks or holds differently in
//	         those leaves, and the keys B wants from A; the last message
//	         carries the wanted keys, or Final when B wants none
//	A → B  sync-rows:   the rows B wanted
//
// The keys of every differing leaf can be far more than one message may
// hold (a node that missed tens of thousands of random writes differs in
// nearly every leaf), so A sends them in pages of whole leaves, one page
// at a time: the next when B's answer to the previous has arrived. Each
// page is an exchange of its own for B, which answers it from its current
// state and the message alone, as it always has, so a responder of an
// older build answers pages unchanged. Only A, for an exchange of more
// than one page, remembers the pages still to send (pagedExchange); it marks
// Final only the rows it sends after the last page (an empty sync-rows
// when B wanted nothing then but wanted rows before), so that B finishes
// the exchange once. A lost message stalls that exchange; after
// exchangeStall a new one starts afresh. Rows are merged (a join), so
// shipping a row the peer already has is harmless, only wasteful.
//
// Every message is built bounded: the digest and leaves by the digest's
// shape (at most 4,096 leaf hashes, 128 KiB), keys by pages, rows by
// batches, wanted keys by the page they answer. A message still over
// messageLimit (a single leaf or row beyond any honest size) is not sent:
// the exchange is counted as strata_sync_exchanges_total{result="too_large"}
// and logged once per message type.

// maxRowsBytes bounds the rows of one sync-rows message (memberlist
// refuses user messages over 20 MiB, peers decode at most messageLimit).
const maxRowsBytes = 1 << 20

// rowsPageBytes and keysPageBytes bound the rows of one sync-rows message
// and the keys of one sync-keys page. They follow messageLimit, so that a
// test may lower it and exercise paging with a small store: the last
// sync-rows message of a page answer holds a batch of rows and the wanted
// keys of the page (fewer than its keys, without hashes), together well
// under messageLimit.
func rowsPageBytes() int { return min(maxRowsBytes, messageLimit/8) }
func keysPageBytes() int { return messageLimit / 4 }

// rowsReadChunk is how many rows sendRows reads from the store at once.
const rowsReadChunk = 4096

// exchangeStall is how long an exchange of several pages may go without a
// message from the responder before a new exchange is started instead.
const exchangeStall = 10 * time.Second

// maxExchanges bounds the exchanges of several pages remembered at once.
const maxExchanges = 8

// syncErrorEvery is how often one kind of store error in the sync path is
// logged at ERROR; repeats within it are logged at DEBUG.
const syncErrorEvery = time.Minute

// pagedExchange is an exchange of several pages initiated here.
type pagedExchange struct {
	peer     string
	pages    [][]int // leaves of the pages not yet sent
	sent     int     // rows sent to the peer
	received int     // rows received from it
	last     time.Time
}

// syncState is the tier's anti-entropy state: the exchanges of several
// pages in progress, by session, and when each kind of sync error was
// last logged. The zero value is ready to use.
type syncState struct {
	mu        sync.Mutex
	exchanges map[uint64]*pagedExchange
	errLogged map[string]time.Time
	holding   map[uint64]time.Time // sessions started here that leave fresh rows to the push path, and when
}

// startHolding records that session, started here, leaves fresh rows to
// the push path (a periodic round, or one for ranges the push path gave
// up; not one at a join or a restart), forgetting sessions older than
// exchangeStall.
func (s *syncState) startHolding(session uint64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holding == nil {
		s.holding = map[uint64]time.Time{}
	}
	for id, at := range s.holding {
		if now.Sub(at) >= exchangeStall {
			delete(s.holding, id)
		}
	}
	if len(s.holding) < 4*maxExchanges {
		s.holding[session] = now
	}
}

// holdsFresh reports whether session is one started here that leaves
// fresh rows to the push path.
func (s *syncState) holdsFresh(session uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.holding[session]
	return ok
}

// start records a new exchange, forgetting stalled ones and, at the
// bound, the oldest.
func (s *syncState) start(session uint64, ex *pagedExchange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exchanges == nil {
		s.exchanges = map[uint64]*pagedExchange{}
	}
	for id, e := range s.exchanges {
		if ex.last.Sub(e.last) >= exchangeStall {
			delete(s.exchanges, id)
		}
	}
	for len(s.exchanges) >= maxExchanges {
		var oldest uint64
		var at time.Time
		for id, e := range s.exchanges {
			if at.IsZero() || e.last.Before(at) {
				oldest, at = id, e.last
			}
		}
		delete(s.exchanges, oldest)
	}
	s.exchanges[session] = ex
}

// progress returns the exchange of session with peer, noting that a
// message of it arrived now; nil when there is none.
func (s *syncState) progress(session uint64, peer string, now time.Time) *pagedExchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	ex := s.exchanges[session]
	if ex == nil || ex.peer != peer {
		return nil
	}
	ex.last = now
	return ex
}

// end forgets an exchange.
func (s *syncState) end(session uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.exchanges, session)
}

// busy reports whether an exchange of several pages is under way (a
// message of it arrived within exchangeStall).
func (s *syncState) busy(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.exchanges {
		if now.Sub(e.last) < exchangeStall {
			return true
		}
	}
	return false
}

// firstError reports whether an error of kind was not logged within
// syncErrorEvery, and records it.
func (s *syncState) firstError(kind string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.errLogged[kind]; ok && now.Sub(at) < syncErrorEvery {
		return false
	}
	if s.errLogged == nil {
		s.errLogged = map[string]time.Time{}
	}
	s.errLogged[kind] = now
	return true
}

// errorKind names the kind of a store error, for logging repeats once:
// the store's sentinels, else the system error, else "other".
func errorKind(err error) string {
	for _, k := range []error{store.ErrUnwritable, store.ErrReadOnly, store.ErrCorrupt} {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return "other"
}

// syncError logs a store error of the sync path: at ERROR the first time
// in syncErrorEvery for its step and kind (a full disk fails every
// exchange alike), at DEBUG otherwise.
func (t *Tier) syncError(step string, err error) {
	if t.sync.firstError(step+"/"+errorKind(err), time.Now()) {
		t.log.Error("sync: "+step+" (repeats of this kind are logged at debug for "+syncErrorEvery.String()+")", "err", err)
		return
	}
	t.log.Debug("sync: "+step, "err", err)
}

// syncAsk asks the anti-entropy loop for an exchange with peer now:
// repair when the push path gave ranges up, otherwise a member joined.
type syncAsk struct {
	peer   string
	repair bool
}

// syncResult reports the end of an exchange initiated here.
type syncResult struct {
	Peer     string
	InSync   bool
	Sent     int
	Received int
}

// antiEntropyLoop starts an exchange with a random peer every interval,
// jittered so that nodes do not synchronise in lockstep.
func (t *Tier) antiEntropyLoop() {
	defer t.done.Done()
	for {
		d := t.cfg.SyncInterval/2 + rand.N(t.cfg.SyncInterval)
		select {
		case <-t.stop:
			return
		case ask := <-t.syncNow:
			// An exchange for ranges the push path gave up on (after its
			// grafts, seconds after the changes were made) leaves fresh
			// rows to it as a periodic round does: it is after the lost
			// ones, not the ones still on their way.
			t.syncWith(ask.peer, ask.repair)
			continue
		case <-time.After(d):
		}
		if peers := t.peers(); len(peers) > 0 {
			t.syncWith(peers[rand.N(len(peers))].Name, true)
		}
	}
}

// SyncOnce starts one anti-entropy exchange with a random alive peer. It
// returns the peer's name, or "" when this node is alone. The exchange
// completes asynchronously.
func (t *Tier) SyncOnce() string {
	peers := t.peers()
	if len(peers) == 0 {
		return ""
	}
	p := peers[rand.N(len(peers))]
	t.SyncWith(p.Name)
	return p.Name
}

// SyncWith starts an exchange with the named peer, or asks it for a full
// state transfer when this node has been away longer than the tombstone
// TTL.
func (t *Tier) SyncWith(peer string) { t.syncWith(peer, false) }

// syncWith starts an exchange with peer. With holdFresh (a periodic
// round, or one for ranges the push path gave up) it leaves to the push
// path the rows it is still carrying (see freshWindow).
func (t *Tier) syncWith(peer string, holdFresh bool) {
	if t.needsTransfer() {
		t.requestTransfer(peer)
		return
	}
	if t.sync.busy(time.Now()) {
		// An exchange of several pages is under way: another now would
		// page through the same differences again.
		return
	}
	n := t.node(peer)
	if n == nil {
		return
	}
	d := t.store.Digest()
	msg := &syncDigestMsg{header: t.hdr(msgSyncDigest), Session: rand.Uint64(), Root: d.Root()}
	if holdFresh {
		t.sync.startHolding(msg.Session, time.Now())
	}
	msg.Branches = make([]store.Hash, store.Branches)
	for i := range msg.Branches {
		msg.Branches[i] = d.Branch(i)
	}
	t.send(n, msg)
}

func (t *Tier) hdr(typ msgType) header { return header{Type: typ, Sender: t.cfg.Node} }

// send streams a message to a node, counting failures. A message over
// messageLimit, which the peer would refuse, is not sent: it is counted
// and logged once per type.
func (t *Tier) send(n *memberlist.Node, msg any) bool {
	b := encodeMessage(msg)
	if len(b) > messageLimit {
		t.m.syncs.WithLabelValues(t.cfg.Tier, "too_large").Inc()
		typ := msgType(b[0])
		if t.logged.first("too_large/"+typ.String(), time.Now()) {
			t.log.Error("sync: message too large to send, exchange abandoned (logged once per message type)",
				"peer", n.Name, "type", typ.String(), "bytes", len(b), "limit", messageLimit)
		}
		return false
	}
	if err := t.ml.SendReliable(n, b); err != nil {
		t.m.syncs.WithLabelValues(t.cfg.Tier, "failed").Inc()
		t.log.Debug("sync: send failed", "peer", n.Name, "err", err)
		return false
	}
	return true
}

// syncLoop handles sync messages one at a time.
func (t *Tier) syncLoop() {
	defer t.done.Done()
	for {
		select {
		case <-t.stop:
			return
		case in := <-t.syncIn:
			t.handleSync(in.msg)
			t.inbox.release(in.size)
		}
	}
}

func (t *Tier) handleSync(msg any) {
	switch m := msg.(type) {
	case *syncDigestMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "sync-digest").Inc()
		t.onDigest(m)
	case *syncLeavesMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "sync-leaves").Inc()
		t.onLeaves(m)
	case *syncKeysMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "sync-keys").Inc()
		t.refuseItems(m.Sender, m.Refused)
		t.onKeys(m)
	case *syncRowsMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "sync-rows").Inc()
		t.refuseItems(m.Sender, m.Refused)
		t.onRows(m)
	case *transferRequestMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "transfer-request").Inc()
		t.onTransferRequest(m)
	case *transferRowsMsg:
		t.m.received.WithLabelValues(t.cfg.Tier, "transfer-rows").Inc()
		t.refuseItems(m.Sender, m.Refused)
		t.onTransferRows(m)
	}
}

// onDigest (responder): answer with the leaves of differing branches. A
// node waiting for a state transfer does not answer: its old rows are what
// the transfer replaces, and must not be shipped meanwhile.
func (t *Tier) onDigest(m *syncDigestMsg) {
	n := t.node(m.Sender)
	if n == nil || t.needsTransfer() {
		return
	}
	reply := &syncLeavesMsg{header: t.hdr(msgSyncLeaves), Session: m.Session}
	reply.Branch, reply.Leaves = answerDigest(t.store.Digest(), m.Root, m.Branches)
	t.send(n, reply)
}

// onLeaves (initiator): list this node's keys in the leaves that differ,
// a page at a time.
func (t *Tier) onLeaves(m *syncLeavesMsg) {
	n := t.node(m.Sender)
	if n == nil {
		return
	}
	leaves := differingLeaves(t.store.Digest(), m.Branch, m.Leaves)
	if len(leaves) == 0 {
		t.m.syncs.WithLabelValues(t.cfg.Tier, "in_sync").Inc()
		t.finished(syncResult{Peer: m.Sender, InSync: true})
		return
	}
	keys, err := t.store.LeafKeys(leaves)
	if err != nil {
		t.syncError("reading leaf keys", err)
		return
	}
	pages := pageLeaves(leaves, keys, keysPageBytes())
	if len(pages) > 1 {
		t.sync.start(m.Session, &pagedExchange{peer: m.Sender, pages: pages[1:], last: time.Now()})
		keys = inLeaves(keys, pages[0])
	}
	if !t.send(n, keysMsg(t.hdr(msgSyncKeys), m.Session, pages[0], keys)) {
		t.sync.end(m.Session)
	}
}

func keysMsg(h header, session uint64, leaves []int, keys []store.KeyHash) *syncKeysMsg {
	msg := &syncKeysMsg{header: h, Session: session, Keys: keys}
	for _, l := range leaves {
		msg.Leaves = append(msg.Leaves, uint16(l))
	}
	return msg
}

// inLeaves keeps the keys that fall in leaves (ascending).
func inLeaves(keys []store.KeyHash, leaves []int) []store.KeyHash {
	var out []store.KeyHash
	for _, k := range keys {
		l := store.LeafOf(k.Table, k.Key)
		if i, ok := slices.BinarySearch(leaves, l); ok && leaves[i] == l {
			out = append(out, k)
		}
	}
	return out
}

// nextPage sends the next page of an exchange, reading its keys afresh
// (rows merged since the exchange began are listed as they are now).
func (t *Tier) nextPage(n *memberlist.Node, session uint64, ex *pagedExchange) {
	page := ex.pages[0]
	ex.pages = ex.pages[1:]
	keys, err := t.store.LeafKeys(page)
	if err != nil {
		t.syncError("reading leaf keys", err)
		t.sync.end(session)
		return
	}
	if !t.send(n, keysMsg(t.hdr(msgSyncKeys), session, page, keys)) {
		t.sync.end(session)
	}
}

// onKeys (responder): send the rows the initiator lacks or holds
// differently, and ask for the ones this node lacks or holds differently.
func (t *Tier) onKeys(m *syncKeysMsg) {
	n := t.node(m.Sender)
	if n == nil {
		return
	}
	leaves := make([]int, len(m.Leaves))
	for i, l := range m.Leaves {
		leaves[i] = int(l)
	}
	mine, err := t.store.LeafKeys(leaves)
	if err != nil {
		t.syncError("reading leaf keys", err)
		return
	}
	send, want := diffKeys(mine, m.Keys)
	t.sendRows(n, m.Session, send, want, true, false)
}

// sendRows ships rows in messages of bounded size, reading them from the
// store a chunk at a time; the last message carries the wanted keys, and
// is marked Final when final and no keys are wanted. It reports whether
// every message was sent.
func (t *Tier) sendRows(n *memberlist.Node, session uint64, keys, want []store.KeyHash, final, holdFresh bool) bool {
	limit := rowsPageBytes()
	var fresh freshWindow
	if holdFresh {
		fresh = t.freshWindow(n)
	}
	held := 0
	var batch []store.Change
	size := 0
	flush := func(last bool) bool {
		msg := &syncRowsMsg{header: t.hdr(msgSyncRows), Session: session, Rows: batch}
		if last {
			msg.Want, msg.Final = want, final && len(want) == 0
		}
		t.m.synced.WithLabelValues(t.cfg.Tier, "sent").Add(float64(len(batch)))
		batch, size = nil, 0
		return t.send(n, msg)
	}
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), rowsReadChunk)]
		keys = keys[len(chunk):]
		rows, err := t.store.Rows(chunk)
		if err != nil {
			t.syncError("reading rows", err)
			return false
		}
		if fresh != (freshWindow{}) {
			var h int
			rows, h = leaveFresh(rows, fresh)
			held += h
		}
		for _, r := range rows {
			if size >= limit && !flush(false) {
				return false
			}
			batch = append(batch, r)
			size += rowSize(r)
		}
	}
	if held > 0 {
		t.m.synced.WithLabelValues(t.cfg.Tier, "left_to_push").Add(float64(held))
	}
	return flush(true)
}

// freshWindow is what an exchange with n that holds fresh rows (see
// syncWith) leaves out because the push path is still carrying it: what
// was stamped in the last fifth of the sync interval (at most freshHold)
// up to this node's wall clock; nothing for a peer that does not take
// pushes, whose changes come by gossip, which may drop some. An exchange
// asked for at a join or a restart ships every row it finds.
func (t *Tier) freshWindow(n *memberlist.Node) freshWindow {
	if !t.speaksPush(n) {
		return freshWindow{}
	}
	hold := min(t.cfg.SyncInterval/5, freshHold)
	if t.cfg.freshHold > 0 {
		hold = t.cfg.freshHold
	}
	now := time.Now()
	return freshWindow{from: hlc.New(now.Add(-hold).UnixMilli(), 0), to: hlc.New(now.UnixMilli(), 1<<16-1)}
}

// freshHold bounds how long a change is left to the push path before an
// exchange ships it: past it, a change the push path has not delivered is
// taken to be lost (the push path's own repair gives up after about 3 s).
const freshHold = 2 * time.Second

// onRows merges rows from a peer (without re-broadcasting them) and, when
// the peer wants rows back, sends them. For an exchange initiated here,
// the responder's last message for a page (wanted keys, or Final) moves
// the exchange on to the next page, or ends it.
func (t *Tier) onRows(m *syncRowsMsg) {
	rows := m.Rows
	if t.sync.holdsFresh(m.Session) {
		// An exchange started here that holds fresh rows: rows the push
		// path is still carrying are left to it (the responder cannot tell
		// such an exchange from another, so it ships them).
		if n := t.node(m.Sender); n != nil {
			if fresh := t.freshWindow(n); fresh != (freshWindow{}) {
				var held int
				rows, held = leaveFresh(rows, fresh)
				if held > 0 {
					t.m.synced.WithLabelValues(t.cfg.Tier, "left_to_push").Add(float64(held))
				}
			}
		}
	}
	rows = t.accept(m.Sender, rows)
	received := 0
	if len(rows) > 0 {
		applied, rejected, err := t.store.Repair(context.Background(), rows)
		if err != nil {
			t.syncError("merging rows", err)
			return
		}
		t.m.bcast.applied.WithLabelValues(t.cfg.Tier, pathAntiEntropy).Add(float64(len(applied)))
		for _, r := range rejected {
			t.reject(m.Sender, rejectReason(r.Err), r.Err)
		}
		received = len(rows) - len(rejected)
		t.m.synced.WithLabelValues(t.cfg.Tier, "received").Add(float64(received))
	}
	if ex := t.sync.progress(m.Session, m.Sender, time.Now()); ex != nil {
		ex.received += received
		if len(m.Want) > 0 || m.Final {
			t.pageAnswered(m, ex)
		}
		return
	}
	if len(m.Want) > 0 {
		if n := t.node(m.Sender); n != nil {
			t.sendRows(n, m.Session, m.Want, nil, true, t.sync.holdsFresh(m.Session))
		}
		t.m.syncs.WithLabelValues(t.cfg.Tier, "repaired").Inc()
		t.finished(syncResult{Peer: m.Sender, Received: len(m.Rows), Sent: len(m.Want)})
		return
	}
	if m.Final {
		t.finished(syncResult{Peer: m.Sender, Received: len(m.Rows)})
	}
}

// pageAnswered (initiator): the responder has answered a page of ex with
// m. Send the rows it wants, then the next page, or end the exchange.
func (t *Tier) pageAnswered(m *syncRowsMsg, ex *pagedExchange) {
	n := t.node(m.Sender)
	if n == nil {
		t.sync.end(m.Session)
		return
	}
	last := len(ex.pages) == 0
	switch {
	case len(m.Want) > 0:
		if !t.sendRows(n, m.Session, m.Want, nil, last, t.sync.holdsFresh(m.Session)) {
			t.sync.end(m.Session)
			return
		}
		ex.sent += len(m.Want)
	case last && ex.sent > 0:
		// The responder wanted rows of earlier pages: tell it the
		// exchange is over.
		t.send(n, &syncRowsMsg{header: t.hdr(msgSyncRows), Session: m.Session, Final: true})
	}
	if !last {
		t.nextPage(n, m.Session, ex)
		return
	}
	t.sync.end(m.Session)
	t.m.syncs.WithLabelValues(t.cfg.Tier, "repaired").Inc()
	t.finished(syncResult{Peer: m.Sender, Received: ex.received, Sent: ex.sent})
}

// finished records a completed exchange (for the away-too-long check at
// start) and reports it to SyncResults readers, if any.
func (t *Tier) finished(r syncResult) {
	if t.needsTransfer() {
		// The rows merged are fine, but this node's old state still needs
		// the transfer: do not record it as synced.
		t.requestTransfer(r.Peer)
		return
	}
	if err := t.store.MarkSynced(time.Now()); err != nil {
		t.log.Debug("recording sync time", "err", err)
	}
	t.resetTransfer()
	t.markReady()
	select {
	case t.syncDone <- r:
	default:
	}
}
