package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest sends text on a new connection to a and returns the
// connection and a reader of the answer.
func rawRequest(t *testing.T, addr, text string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, text); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// An unauthenticated request is answered at once without reading its
// body, and its connection closed: a client that sends headers and holds
// back the body it announced cannot hold the connection.
func TestUnauthenticatedAnsweredWithoutBody(t *testing.T) {
	a := newTestAgent(t, Options{Token: "s3cret"})
	addr := strings.TrimPrefix(a.url, "http://")
	c, rd := rawRequest(t, addr, "PUT /v1/regional/machines/m-1 HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 100\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatalf("no answer to an unauthenticated request whose body never comes: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("status %d, want 401", resp.StatusCode)
	}
	if _, err := rd.ReadByte(); err != io.EOF {
		t.Errorf("connection still open after the 401 (read: %v)", err)
	}
}

// The server's read timeout cuts off a client that sends headers and no
// body, and the connection cap makes further clients wait instead of
// using up file descriptors.
func TestServerLimits(t *testing.T) {
	a := newTestAgent(t, Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := Limits{ReadTimeout: 300 * time.Millisecond, MaxConnections: 2}
	hs := NewHTTPServer(a.srv.Handler(), lim)
	go hs.Serve(LimitListener(l, hs, lim))
	t.Cleanup(func() { hs.Close() })
	addr := l.Addr().String()

	// Headers, then no body: cut off after the read timeout.
	c, rd := rawRequest(t, addr, "PUT /v1/regional/machines/m-1 HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 100\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, rd); err != nil {
		t.Fatalf("a request without its body held the connection past the read timeout: %v", err)
	}

	// Two idle connections fill the cap; a third client waits until one
	// of them closes.
	idle1, _ := rawRequest(t, addr, "")
	rawRequest(t, addr, "")
	client := &http.Client{Timeout: 200 * time.Millisecond}
	if resp, err := client.Get("http://" + addr + "/v1/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("a third connection was served while two were open (cap 2)")
	}
	idle1.Close()
	client.Timeout = 5 * time.Second
	resp, err := client.Get("http://" + addr + "/v1/health")
	if err != nil {
		t.Fatalf("served no client after a connection closed: %v", err)
	}
	resp.Body.Close()
}

// TestIdleConnectionsMakeRoomAtTheCap: with the connection cap taken by
// kept-alive connections between requests, a health check is served at
// once (the idlest connection is closed to make room) rather than after
// their idle timeout; the clients whose connection was closed are served
// on a new one.
func TestIdleConnectionsMakeRoomAtTheCap(t *testing.T) {
	a := newTestAgent(t, Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := Limits{MaxConnections: 3} // IdleTimeout: the default 2m
	hs := NewHTTPServer(a.srv.Handler(), lim)
	go hs.Serve(LimitListener(l, hs, lim))
	t.Cleanup(func() { hs.Close() })
	url := "http://" + l.Addr().String() + "/v1/health"

	// Each client keeps its own connection alive after its request.
	var clients []*http.Client
	get := func(c *http.Client, what string) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", what, resp.StatusCode)
		}
	}
	for i := range 3 {
		c := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
		t.Cleanup(c.CloseIdleConnections)
		clients = append(clients, c)
		get(c, fmt.Sprintf("client %d", i))
	}
	// The cap is taken by idle connections: a new client is served
	// within its timeout, far below the idle timeout.
	health := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	t.Cleanup(health.CloseIdleConnections)
	get(health, "a health check with the cap taken by 3 idle connections")
	for i, c := range clients {
		get(c, fmt.Sprintf("client %d again", i))
	}
}

// Without a token, a cross-origin request (a web page) and a request for a
// foreign Host (DNS rebinding) are refused; curl-like requests and the
// API's own origin are served.
func TestNoTokenRefusesBrowsers(t *testing.T) {
	a := newTestAgent(t, Options{Addr: "127.0.0.1:7070", Hosts: []string{"ord-1.internal:7070"}})
	port := a.url[strings.LastIndex(a.url, ":")+1:]
	for _, tc := range []struct {
		name, host, origin string
		want               int
	}{
		{"curl", "", "", 201},
		{"own origin", "", "own", 201},
		{"localhost", "localhost:" + port, "", 201},
		{"configured name", "ord-1.internal:" + port, "", 201},
		{"cross-site page", "", "http://evil.example", 403},
		{"null origin", "", "null", 403},
		{"dns rebinding", "evil.example:" + port, "", 403},
		{"rebinding with its own origin", "evil.example:" + port, "http://evil.example:" + port, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("PUT", a.url+"/v1/regional/machines/m-1", strings.NewReader(m1))
			if tc.host != "" {
				req.Host = tc.host
			}
			switch tc.origin {
			case "":
			case "own":
				req.Header.Set("Origin", "http://"+req.Host)
				if req.Host == "" {
					req.Header.Set("Origin", a.url)
				}
			default:
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got := resp.StatusCode
			if got == 200 {
				got = 201 // served
			}
			if got != tc.want {
				t.Errorf("status %d (%s), want %s", resp.StatusCode, b, map[int]string{201: "served", 403: "403"}[tc.want])
			}
			if tc.want == 403 && !strings.Contains(string(b), "forbidden") {
				t.Errorf("refusal without the forbidden code: %s", b)
			}
		})
	}
	_ = fmt.Sprint
}
