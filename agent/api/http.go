package api

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Limits bound what one client can hold of the API server: time to send a
// request, time to take an answer, idle connections, header size and the
// number of connections. The zero value of a field takes its default.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included. Default
	// 30s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing an answer. Watch streams lift it and
	// set a deadline per event instead (Options.WatchWriteTimeout).
	// Default 30s.
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection. Default 2m.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers. Default 64 KiB.
	MaxHeaderBytes int
	// MaxConnections bounds the open connections; more clients wait in the
	// listen backlog. At the bound, the kept-alive connection idle longest
	// is closed to make room (see LimitListener). Default 512.
	MaxConnections int
}

func (l *Limits) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeaderTimeout, 10*time.Second)
	def(&l.ReadTimeout, 30*time.Second)
	def(&l.WriteTimeout, 30*time.Second)
	def(&l.IdleTimeout, 2*time.Minute)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = 512
	}
}

// NewHTTPServer returns an http.Server for handler with the limits set.
func NewHTTPServer(handler http.Handler, lim Limits) *http.Server {
	lim.setDefaults()
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
	}
}

// LimitListener caps the connections hs accepts from l at the limit's
// MaxConnections: Accept waits while that many are open. It sets
// hs.ConnState (calling the one set before) to see which connections are
// kept alive between requests: while the cap is reached, the one idle
// longest is closed to make room, so that a new client (a health check)
// waits for the next idle connection rather than for an idle timeout.
// Connections in a request, or that have not sent their first one
// (bounded by ReadHeaderTimeout), are not closed.
func LimitListener(l net.Listener, hs *http.Server, lim Limits) net.Listener {
	lim.setDefaults()
	cl := &connLimiter{Listener: l, slots: make(chan struct{}, lim.MaxConnections),
		idle: map[net.Conn]time.Time{}, idleNow: make(chan struct{}, 1), done: make(chan struct{})}
	prev := hs.ConnState
	hs.ConnState = func(c net.Conn, st http.ConnState) {
		cl.track(c, st)
		if prev != nil {
			prev(c, st)
		}
	}
	return cl
}

// connLimiter is LimitListener's listener.
type connLimiter struct {
	net.Listener
	slots   chan struct{} // one per open connection
	mu      sync.Mutex
	idle    map[net.Conn]time.Time // kept-alive connections between requests, since when
	idleNow chan struct{}          // a connection turned idle
	done    chan struct{}          // closed by Close
	once    sync.Once
}

// Accept waits for room, making it if needed, then accepts a connection.
func (l *connLimiter) Accept() (net.Conn, error) {
	if err := l.acquire(); err != nil {
		return nil, err
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, l: l}, nil
}

// acquire takes a slot; at the cap, it closes the idlest connection, or
// waits for a connection to close or turn idle (or to have been idle
// long enough to be closed).
func (l *connLimiter) acquire() error {
	for {
		select {
		case l.slots <- struct{}{}:
			return nil
		default:
		}
		wait := l.closeIdlest(time.Now())
		var ripe <-chan time.Time
		var timer *time.Timer
		if wait > 0 {
			timer = time.NewTimer(wait)
			ripe = timer.C
		}
		var err error
		took := false
		select {
		case l.slots <- struct{}{}:
			took = true
		case <-l.idleNow:
		case <-ripe:
		case <-l.done:
			err = net.ErrClosed
		}
		if timer != nil {
			timer.Stop()
		}
		if took || err != nil {
			return err
		}
	}
}

// minIdleToClose is how long a kept-alive connection must have been idle
// before it is closed to make room: a client that just got its answer
// is likely to send its next request at once, and a request that
// arrives as its connection is closed fails (Go's client, for one, does
// not retry a PUT).
const minIdleToClose = time.Second

// closeIdlest closes the connection idle longest, if it has been idle
// for minIdleToClose; otherwise it returns how long until it will have
// been (0: no idle connection).
func (l *connLimiter) closeIdlest(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var oldest net.Conn
	var since time.Time
	for c, t := range l.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	if oldest == nil {
		return 0
	}
	if wait := minIdleToClose - now.Sub(since); wait > 0 {
		return wait
	}
	delete(l.idle, oldest)
	// Closed under the lock: the server marks a connection active (track)
	// once it reads a request on it, and must find it gone rather than
	// have it closed under a request it took.
	oldest.Close()
	return 0
}

// track follows a connection's state (http.Server.ConnState).
func (l *connLimiter) track(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == http.StateIdle {
		l.idle[c] = time.Now()
		select {
		case l.idleNow <- struct{}{}:
		default:
		}
		return
	}
	delete(l.idle, c)
}

// Close closes the listener; an Accept waiting for room returns.
func (l *connLimiter) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitedConn gives its slot back when it closes.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.l.slots })
	return err
}

// refuse answers a request that will not be served, without reading its
// body, and closes the connection: a client that sent headers and holds
// back its body gets its answer at once and cannot keep the connection.
func refuse(w http.ResponseWriter, e *Error) {
	// "Connection: close" keeps the server from reading the body before
	// it answers; the past read deadline from reading it afterwards (to
	// reuse the connection), so the connection closes at once.
	w.Header().Set("Connection", "close")
	writeError(w, e)
	rc := http.NewResponseController(w)
	rc.Flush()
	rc.SetReadDeadline(time.Now())
}

// authenticate checks the bearer token when one is configured, and
// without one keeps browsers out (see sameOrigin). The token is read per
// request: SetToken (SIGHUP) may set, change or clear it at run time.
func (s *Server) authenticate(next http.Handler) http.Handler {
	guarded := s.sameOrigin(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := s.auth.token.token()
		if want == nil {
			guarded.ServeHTTP(w, r)
			return
		}
		if !s.open(r.URL.Path) && !s.hasToken(r) && !s.nodeAuthorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="strata"`)
			refuse(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "missing or wrong bearer token (send Authorization: Bearer <token>, the content of api.token_file)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hasToken reports whether r carries the bearer token, or no token is
// configured (then every caller may see what the API serves).
func (s *Server) hasToken(r *http.Request) bool {
	want := s.auth.token.token()
	return want == nil || subtle.ConstantTimeCompare(bearer(r.Header.Get("Authorization")), want) == 1
}

// sameOrigin guards an API without a token against browsers: a request
// with an Origin other than the API's own is a web page writing across
// sites (CSRF), and a Host that is not an address of this API is DNS
// rebinding (a page whose name now resolves to this agent). curl and the
// Go client send no Origin and address the API by IP or its own name.
func (s *Server) sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.ownHost(r.Host) {
			refuse(w, &Error{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: fmt.Sprintf("Host %q is not this API's address (use an IP address, localhost or %q; or set api.token_file)", r.Host, s.opts.Addr)})
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			refuse(w, &Error{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: fmt.Sprintf("cross-origin request from %q refused (without api.token_file, only the API's own origin may send requests from a browser)", o)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ownHost reports whether a Host header names this API: an IP address
// (DNS rebinding needs a name), localhost, or the host of Options.Addr
// or of one of Options.Hosts.
func (s *Server) ownHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, a := range append([]string{s.opts.Addr}, s.opts.Hosts...) {
		h := a
		if hh, _, err := net.SplitHostPort(a); err == nil {
			h = hh
		}
		if h != "" && strings.EqualFold(strings.TrimSuffix(h, "."), host) {
			return true
		}
	}
	return false
}
