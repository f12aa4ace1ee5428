package cluster

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// msgPushStream opens a push stream: a long-lived connection, dialled
// through the tier's memberlist transport, that carries one peer's push
// bundles (msgPlum) as a sequence of frames. memberlist's own stream
// handling reads one message per connection and closes it, so push
// streams are told apart from memberlist's streams by this byte, right
// after the tier's label header, and served here; every other stream goes
// to memberlist unchanged. A node of an older build refuses the stream
// (memberlist rejects the type) and is sent its bundles by SendReliable.
//
//	dialler:  label header | msgPushStream | frame(hello)
//	acceptor: frame(hello)
//	dialler:  frame(msgPlum bundle) | frame(msgPlum bundle) | …
//
// A frame is a 4-byte big-endian length and a body. On a tier with a
// keyring the body is sealed with AES-GCM under the primary key, as
// memberlist seals its own messages: a random 12-byte nonce, the
// ciphertext and its tag, the tier's label as additional data; the
// receiver tries every installed key. Without a keyring the body is
// plain. The hello is pushStreamHello; its answer proves to the dialler
// that the acceptor holds a key of the tier (and speaks push streams).
const msgPushStream msgType = 65

// pushStreamHello is the body of both hello frames.
const pushStreamHello = "strata-push-stream/1"

const (
	// pushDialTimeout bounds a push stream's dial and its hello exchange.
	pushDialTimeout = 5 * time.Second
	// pushWriteTimeout bounds the write of one batch: a peer that reads
	// slower than that has its stream closed and is treated as failed.
	pushWriteTimeout = 5 * time.Second
	// pushStreamIdle closes a stream unused for that long, so a node
	// holds streams only to the peers it pushes to or repairs from.
	pushStreamIdle = 30 * time.Second
	// pushLegacyRetry is how long a peer that refused a push stream is
	// sent its bundles by SendReliable before a stream is tried again.
	pushLegacyRetry = time.Minute
	// maxPushStreams bounds the push streams a node accepts at once.
	maxPushStreams = 1024
	// maxPushFrame is the largest frame body accepted: the largest
	// message and the sealing overhead.
	maxPushFrame = maxMessageSize + gcmNonceSize + gcmTagSize
	gcmNonceSize = 12
	gcmTagSize   = 16
)

var (
	// errStreamRefused: the peer answered a push stream's hello with
	// something else than a hello (an older build, or no common key).
	errStreamRefused = errors.New("cluster: push stream refused by peer")
	// errPushDecrypt: a push stream frame no installed key opens.
	errPushDecrypt = errors.New("cluster: push stream frame: no installed key decrypts it")
)

// pushSealer seals and opens push stream frames with the tier's label and
// keyring. It is safe for concurrent use.
type pushSealer struct {
	label string
	kr    *memberlist.Keyring // nil: frames are plain

	mu    sync.Mutex
	aeads map[string]cipher.AEAD // by key
}

func (s *pushSealer) aead(key []byte) (cipher.AEAD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.aeads[string(key)]; ok {
		return a, nil
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if s.aeads == nil || len(s.aeads) >= 16 { // rotated-out keys do not pile up
		s.aeads = map[string]cipher.AEAD{}
	}
	s.aeads[string(key)] = a
	return a, nil
}

// frame returns body as a frame: length prefix, sealed when keyed.
func (s *pushSealer) frame(body []byte) ([]byte, error) {
	if s.kr == nil {
		out := make([]byte, 4, 4+len(body))
		out = append(out, body...)
		binary.BigEndian.PutUint32(out, uint32(len(body)))
		return out, nil
	}
	a, err := s.aead(s.kr.GetPrimaryKey())
	if err != nil {
		return nil, fmt.Errorf("cluster: push stream: %w", err)
	}
	out := make([]byte, 4+gcmNonceSize, 4+gcmNonceSize+len(body)+gcmTagSize)
	if _, err := rand.Read(out[4:]); err != nil {
		return nil, err
	}
	out = a.Seal(out, out[4:4+gcmNonceSize], body, []byte(s.label))
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	return out, nil
}

// open returns a frame body's content.
func (s *pushSealer) open(body []byte) ([]byte, error) {
	if s.kr == nil {
		return body, nil
	}
	if len(body) < gcmNonceSize+gcmTagSize {
		return nil, errPushDecrypt
	}
	for _, key := range s.kr.GetKeys() {
		a, err := s.aead(key)
		if err != nil {
			continue
		}
		if p, err := a.Open(nil, body[:gcmNonceSize], body[gcmNonceSize:], []byte(s.label)); err == nil {
			return p, nil
		}
	}
	return nil, errPushDecrypt
}

// readFrame reads one frame's body. Its buffer grows with the bytes that
// arrive, not with the length a peer claims.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > maxPushFrame {
		return nil, fmt.Errorf("%w: push stream frame of %d bytes, limit %d", errMalformed, n, maxPushFrame)
	}
	if n <= 64<<10 {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, noEOF(err)
		}
		return b, nil
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		return nil, noEOF(err)
	}
	return buf.Bytes(), nil
}

// noEOF reports a stream that ended inside a frame as truncated.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// streamRouter is the tier's transport as memberlist sees it, with push
// streams split off: it reads the first bytes of every accepted stream,
// serves push streams itself and hands every other stream, bytes
// included, to memberlist.
type streamRouter struct {
	memberlist.NodeAwareTransport
	p       *pusher
	seal    *pushSealer
	streams chan net.Conn
	stop    <-chan struct{} // the tier stopped: memberlist no longer reads streams

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{} // push streams being served
	served sync.WaitGroup
}

// routeStreams wraps the tier's transport (label and keyring are the
// tier's) and makes it the one the push path dials through.
func (p *pusher) routeStreams(inner memberlist.NodeAwareTransport, label string, kr *memberlist.Keyring) memberlist.NodeAwareTransport {
	r := &streamRouter{NodeAwareTransport: inner, p: p, seal: &pushSealer{label: label, kr: kr},
		streams: make(chan net.Conn), stop: p.t.stop, conns: map[net.Conn]struct{}{}}
	p.router = r
	done := p.t.transportDone
	go func() {
		for {
			select {
			case conn := <-inner.StreamCh():
				go r.route(conn)
			case <-done:
				return
			}
		}
	}()
	return r
}

// StreamCh is where memberlist takes its streams from.
func (r *streamRouter) StreamCh() <-chan net.Conn { return r.streams }

// Shutdown stops the transport, then closes the push streams being served
// and waits for their readers.
func (r *streamRouter) Shutdown() error {
	err := r.NodeAwareTransport.Shutdown()
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.served.Wait()
	return err
}

// bufferedConn is a connection whose first bytes were read ahead into r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// route peeks at an accepted stream: a push stream is served here, any
// other (or one that sends too little to tell) goes to memberlist.
func (r *streamRouter) route(conn net.Conn) {
	conn.SetReadDeadline(time.Now().Add(pushDialTimeout))
	br := bufio.NewReader(conn)
	label, push := peekPushStream(br)
	if !push {
		conn.SetReadDeadline(time.Time{}) // memberlist sets its own
		select {
		case r.streams <- &bufferedConn{Conn: conn, r: br}:
		case <-r.stop:
			conn.Close()
		}
		return
	}
	t := r.p.t
	if label != r.seal.label {
		t.reject(conn.RemoteAddr().String(), "label", fmt.Errorf("push stream with label %q, want %q", label, r.seal.label))
		conn.Close()
		return
	}
	br.Discard(labelLen(label) + 1)
	r.mu.Lock()
	if r.closed || len(r.conns) >= maxPushStreams {
		r.mu.Unlock()
		conn.Close()
		return
	}
	r.conns[conn] = struct{}{}
	r.served.Add(1)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.conns, conn)
		r.mu.Unlock()
		conn.Close()
		r.served.Done()
	}()
	r.serve(conn, br)
}

// peekPushStream reports whether a stream starts as a push stream, and
// with which label, without consuming anything.
func peekPushStream(br *bufio.Reader) (label string, push bool) {
	b, err := br.Peek(1)
	if err != nil {
		return "", false
	}
	if b[0] == byte(msgPushStream) {
		return "", true
	}
	if b[0] != labelHeaderByte {
		return "", false
	}
	if b, err = br.Peek(2); err != nil {
		return "", false
	}
	n := int(b[1])
	if b, err = br.Peek(2 + n + 1); err != nil {
		return "", false
	}
	return string(b[2 : 2+n]), b[2+n] == byte(msgPushStream)
}

// labelHeaderByte starts memberlist's label header (its hasLabelMsg).
const labelHeaderByte = 244

func labelLen(label string) int {
	if label == "" {
		return 0
	}
	return 2 + len(label)
}

// serve answers a push stream's hello and hands each frame's bundle to the
// push path, until the stream ends or the tier stops.
func (r *streamRouter) serve(conn net.Conn, br *bufio.Reader) {
	t := r.p.t
	from := conn.RemoteAddr().String()
	body, err := readFrame(br)
	if err == nil {
		body, err = r.seal.open(body)
	}
	if err != nil {
		r.refused(from, err)
		return
	}
	if string(body) != pushStreamHello {
		t.reject(from, "malformed", fmt.Errorf("%w: push stream hello %q", errMalformed, body))
		return
	}
	hello, err := r.seal.frame([]byte(pushStreamHello))
	if err != nil {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(pushDialTimeout))
	if _, err := conn.Write(hello); err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	for {
		body, err := readFrame(br)
		if err == nil {
			body, err = r.seal.open(body)
		}
		if err != nil {
			if err != io.EOF && !errors.Is(err, net.ErrClosed) {
				r.refused(from, err)
			}
			return
		}
		r.p.receive(body)
	}
}

// refused counts a push stream ended by a bad frame: one no key opens is
// counted as memberlist's own decrypt failures are.
func (r *streamRouter) refused(from string, err error) {
	t := r.p.t
	if errors.Is(err, errPushDecrypt) {
		peer := t.memberAt(from)
		t.m.decryptFailed.WithLabelValues(t.cfg.Tier, peer).Inc()
		t.decrypt.mu.Lock()
		if t.decrypt.peers == nil {
			t.decrypt.peers = map[string]uint64{}
		}
		t.decrypt.peers[peer]++
		t.decrypt.mu.Unlock()
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return
	}
	t.reject(from, "malformed", err)
}

// pushStream is an open push stream to one peer, owned by its sender.
type pushStream struct {
	conn net.Conn
	dead chan struct{} // closed when the peer ends the stream
}

// dialStream opens a push stream to n: the label header, the type byte
// and a hello; the peer's hello back. errStreamRefused when the peer
// answers anything else.
func (r *streamRouter) dialStream(n *memberlist.Node) (*pushStream, error) {
	addr := memberlist.Address{Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), Name: n.Name}
	conn, err := r.NodeAwareTransport.DialAddressTimeout(addr, pushDialTimeout)
	if err != nil {
		return nil, err
	}
	hello, err := r.seal.frame([]byte(pushStreamHello))
	if err != nil {
		conn.Close()
		return nil, err
	}
	start := append([]byte{byte(msgPushStream)}, hello...)
	if start, err = memberlist.AddLabelHeaderToPacket(start, r.seal.label); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(pushDialTimeout))
	if _, err := conn.Write(start); err != nil {
		conn.Close()
		return nil, err
	}
	body, err := readFrame(conn)
	if err == nil {
		body, err = r.seal.open(body)
	}
	if err != nil || string(body) != pushStreamHello {
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: %v", errStreamRefused, n.Name, err)
	}
	conn.SetDeadline(time.Time{})
	s := &pushStream{conn: conn, dead: make(chan struct{})}
	go func() {
		// The acceptor writes nothing after its hello: a read returns
		// when it closes the stream (or this side does).
		io.Copy(io.Discard, conn)
		close(s.dead)
	}()
	return s, nil
}

// close closes the stream and waits for its reader.
func (s *pushStream) close() {
	s.conn.Close()
	<-s.dead
}

// alive reports whether the peer has not ended the stream.
func (s *pushStream) alive() bool {
	select {
	case <-s.dead:
		return false
	default:
		return true
	}
}

// write sends one bundle as a frame.
func (s *pushStream) write(seal *pushSealer, b []byte) error {
	f, err := seal.frame(b)
	if err != nil {
		return err
	}
	s.conn.SetWriteDeadline(time.Now().Add(pushWriteTimeout))
	_, err = s.conn.Write(f)
	return err
}
