package api

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/internal/waitfor"
)

// smallBuffers shrinks the send buffer of every accepted connection, so
// that a client that stops reading blocks the server's writes after a few
// kilobytes instead of after the kernel's autotuned megabytes.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// putRows writes n machine rows through the batch API.
func putRows(t *testing.T, a *testAgent, prefix string, n int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(strings.ReplaceAll(m1, "m-1", fmt.Sprintf("%s%05d", prefix, i)))
	}
	b.WriteString("]")
	if code, body := a.call("POST", "/v1/regional/machines", b.String()); code != 200 {
		t.Fatalf("batch: %d %s", code, body)
	}
}

// stalledWatcher opens a watch over a raw TCP connection with a tiny
// receive buffer, reads the first bytes of the answer (so the server is
// known to be sending the snapshot), and then reads nothing more.
func stalledWatcher(t *testing.T, a *testAgent) net.Conn {
	t.Helper()
	addr := strings.TrimPrefix(a.url, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET /v1/watch/regional/machines HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	head := make([]byte, len("HTTP/1.1 200"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, head); err != nil || string(head) != "HTTP/1.1 200" {
		t.Fatalf("watch answer: %q, %v", head, err)
	}
	return c
}

// writeWithin applies one mutation and fails the test if it has not
// committed within limit.
func writeWithin(t *testing.T, st *store.Store, limit time.Duration, m store.Mutation) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := st.Apply(context.Background(), m)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("write %s: %v", m.Key, err)
		}
	case <-time.After(limit):
		t.Fatalf("write %s did not commit within %s while a watcher had stopped reading: the store is frozen", m.Key, limit)
	}
}

// A watch client that stops reading must not stop the store: writes keep
// committing while the file grows past its mapping (which makes bbolt
// remap, and a remap waits for every open read transaction).
func TestStalledWatcherDoesNotFreezeWrites(t *testing.T) {
	a := newTestAgentWith(t, Options{WatchWriteTimeout: time.Minute},
		store.Options{InitialMmapSize: -1}, func(l net.Listener) net.Listener { return smallBuffers{l} })
	putRows(t, a, "m-", 2000)
	stalledWatcher(t, a)

	start := a.store.Stats().FileBytes
	value := bytes.Repeat([]byte("x"), 32<<10)
	for i := 0; a.store.Stats().FileBytes < 4*start; i++ {
		if i == 5000 {
			t.Fatalf("the file did not grow from %d bytes after %d writes", start, i)
		}
		writeWithin(t, a.store, 10*time.Second, store.Mutation{Op: store.OpPut, Table: "blobs", Key: fmt.Sprintf("b-%d", i),
			Fields: []store.FieldValue{{Num: 1, Value: value}}})
	}
}

// A watcher that takes nothing for the write timeout is cut off, and the
// server's handler ends: it holds no goroutine for a gone client.
func TestStalledWatcherIsCutOff(t *testing.T) {
	a := newTestAgentWith(t, Options{WatchWriteTimeout: 200 * time.Millisecond},
		store.Options{}, func(l net.Listener) net.Listener { return smallBuffers{l} })
	putRows(t, a, "m-", 2000)
	c := stalledWatcher(t, a)
	// The handler ends, without the client reading a byte more: the
	// server cut the watcher off on its own (counted when the handler
	// returns). Reading before that would unblock the server's writes.
	waitfor.Until(t, 10*time.Second, "the server cuts off the stalled watcher (its handler ends)", func() error {
		if n := testutil.ToFloat64(a.srv.metrics.requests.WithLabelValues("GET /v1/watch/regional/{table}", "200")); n != 1 {
			return fmt.Errorf("%v watch requests ended", n)
		}
		return nil
	})
	// Then the stream ends: what the server had buffered, then EOF.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("read %d more bytes, then %v; want the stream closed by the server", n, err)
	}
}

// /v1/health must fail while the commit loop is stuck, and recover once it
// commits again.
func TestHealthFailsWhileCommitsAreStuck(t *testing.T) {
	a := newTestAgentWith(t, Options{CommitStall: 300 * time.Millisecond}, store.Options{InitialMmapSize: -1}, nil)
	putRows(t, a, "m-", 10)
	if code, body := a.call("GET", "/v1/health", ""); code != 200 {
		t.Fatalf("health of an idle store: %d %s", code, body)
	}
	stopStall := stallCommits(t, a)
	waitfor.Until(t, 20*time.Second, "health reports the stuck store", func() error {
		code, body := a.call("GET", "/v1/health", "")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "commit loop") {
			return fmt.Errorf("health: %d %s", code, body)
		}
		return nil
	})
	stopStall()
	waitfor.Until(t, 10*time.Second, "health recovers", func() error {
		if code, body := a.call("GET", "/v1/health", ""); code != 200 {
			return fmt.Errorf("health: %d %s", code, body)
		}
		return nil
	})
}

// A backup client that stops reading does not stop the store either: the
// backup holds a read transaction only while it copies the file locally.
func TestStalledBackupDoesNotFreezeWrites(t *testing.T) {
	a := newTestAgentWith(t, Options{WatchWriteTimeout: time.Minute},
		store.Options{InitialMmapSize: -1}, func(l net.Listener) net.Listener { return smallBuffers{l} })
	putRows(t, a, "m-", 2000)
	addr := strings.TrimPrefix(a.url, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET /v1/backup HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	head := make([]byte, len("HTTP/1.1 200"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, head); err != nil || string(head) != "HTTP/1.1 200" {
		t.Fatalf("backup answer: %q, %v", head, err)
	}
	start := a.store.Stats().FileBytes
	value := bytes.Repeat([]byte("x"), 32<<10)
	for i := 0; a.store.Stats().FileBytes < 4*start; i++ {
		if i == 5000 {
			t.Fatalf("the file did not grow from %d bytes after %d writes", start, i)
		}
		writeWithin(t, a.store, 10*time.Second, store.Mutation{Op: store.OpPut, Table: "blobs", Key: fmt.Sprintf("b-%d", i),
			Fields: []store.FieldValue{{Num: 1, Value: value}}})
	}
}

// A watcher that falls behind (more than WatchMaxLag changes, and losing
// ground) is cut off; when it resumes from its last event it gets "reset"
// and a new snapshot. The server keeps one page per watcher meanwhile.
func TestWatcherFallingBehindIsCutOffThenReset(t *testing.T) {
	a := newTestAgentWith(t, Options{WatchMaxLag: 100}, store.Options{}, func(l net.Listener) net.Listener { return smallBuffers{l} })
	putRows(t, a, "m-", 10)
	addr := strings.TrimPrefix(a.url, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET /v1/watch/regional/machines HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	rd := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	lastID := ""
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "event: synced") {
	}
	// Stop reading while 3,000 changes are committed, then read on: the
	// server sends what it had in hand and ends the stream.
	for i := range 30 {
		putRows(t, a, fmt.Sprintf("w%02d-", i), 100)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	events := 0
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			lastID = id
			events++
		}
	}
	if sc.Err() != nil {
		t.Fatalf("the stream of a watcher that fell behind was not cut off: %v after %d events", sc.Err(), events)
	}
	if events >= 3000 {
		t.Fatalf("the watcher got all %d changes: it was not cut off", events)
	}
	r := a.watch("machines", "Last-Event-ID", lastID)
	if got := r.next(); !strings.HasSuffix(got, "reset") {
		t.Fatalf("resume of a cut-off watcher: first event %q, want reset", got)
	}
	if got := r.next(); !strings.Contains(got, "snapshot") {
		t.Fatalf("after the reset: %q, want a snapshot", got)
	}
}

// stallCommits stalls a's commit loop: a read transaction is held open
// (Scan's callback waits) while a writer grows the file past its mapping
// (the store must be opened with InitialMmapSize -1), so commits wait for
// the read. The returned function ends the stall and waits for the
// writer; it also runs at cleanup.
func stallCommits(t *testing.T, a *testAgent) func() {
	t.Helper()
	// A read transaction held open (Scan's callback waits): once the file
	// outgrows its mapping, commits wait for it.
	release := make(chan struct{})
	var releaseOnce sync.Once
	stopStall := func() { releaseOnce.Do(func() { close(release) }) }
	scanning := make(chan struct{})
	go a.store.Scan("machines", func(store.KeyRow) error {
		select {
		case <-scanning:
		default:
			close(scanning)
		}
		<-release
		return nil
	})
	<-scanning
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		value := bytes.Repeat([]byte("x"), 64<<10)
		for i := 0; ; i++ {
			select {
			case <-release:
				return
			default:
			}
			a.store.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "blobs", Key: fmt.Sprintf("b-%d", i),
				Fields: []store.FieldValue{{Num: 1, Value: value}}})
		}
	}()
	stop := func() {
		stopStall()
		<-writerDone
	}
	t.Cleanup(stop) // before the store closes, even if the test fails
	return stop
}
