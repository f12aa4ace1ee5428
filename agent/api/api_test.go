package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// testAgent is an API server over a real store file and the example
// contract, served over real HTTP.
type testAgent struct {
	t     testing.TB
	url   string
	store *store.Store
	srv   *Server
}

func newTestAgent(t testing.TB, opts Options) *testAgent {
	t.Helper()
	return newTestAgentWith(t, opts, store.Options{}, nil)
}

// newTestAgentWith is newTestAgent with store options, and a function that
// may wrap the server's listener (to shrink socket buffers).
func newTestAgentWith(t testing.TB, opts Options, sopts store.Options, wrap func(net.Listener) net.Listener) *testAgent {
	t.Helper()
	c := opts.Contract
	if c == nil {
		var err error
		if c, err = contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles()); err != nil {
			t.Fatal(err)
		}
	}
	sopts.Node, sopts.Clock = "t1", hlc.NewClock(nil, time.Minute)
	st, err := store.Open(filepath.Join(t.TempDir(), "regional.db"), sopts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Contract, opts.Regional, opts.Node, opts.Region = c, st, "t1", "local"
	srv := New(opts)
	hs := httptest.NewUnstartedServer(srv.Handler())
	if wrap != nil {
		hs.Listener = wrap(hs.Listener)
	}
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		st.Close()
	})
	return &testAgent{t: t, url: hs.URL, store: st, srv: srv}
}

// call sends a request and returns the status and body.
func (a *testAgent) call(method, path, body string, header ...string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const m1 = `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","healthy":true,"host":"h1","private_ip":"10.0.0.1"}`

func decode[T any](t testing.TB, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

func TestRowLifecycle(t *testing.T) {
	a := newTestAgent(t, Options{})
	code, body := a.call("PUT", "/v1/regional/machines/m-1", m1)
	if code != 200 {
		t.Fatalf("put: %d %s", code, body)
	}
	put := decode[WriteResult](t, body)
	if put.Key != "m-1" || put.Stamp == "" {
		t.Fatalf("put answer %s", body)
	}
	code, body = a.call("GET", "/v1/regional/machines/m-1", "")
	got := decode[RowBody](t, body)
	if code != 200 || got.Key != "m-1" || got.Stamp != put.Stamp {
		t.Fatalf("get: %d %s", code, body)
	}
	row := decode[map[string]any](t, string(got.Row))
	if row["app"] != "web" || row["healthy"] != true || row["privateIp"] != "10.0.0.1" && row["private_ip"] != "10.0.0.1" {
		t.Fatalf("row %s", got.Row)
	}

	// PATCH with a false bool must count as present.
	code, body = a.call("PATCH", "/v1/regional/machines/m-1", `{"healthy":false}`)
	if code != 200 {
		t.Fatalf("patch: %d %s", code, body)
	}
	_, body = a.call("GET", "/v1/regional/machines/m-1", "")
	row = decode[map[string]any](t, string(decode[RowBody](t, body).Row))
	if row["healthy"] == true || row["app"] != "web" {
		t.Fatalf("after patch: %s", body)
	}

	// PUT replaces: fields left out are cleared.
	a.call("PUT", "/v1/regional/machines/m-1", `{"id":"m-1","app":"api","state":"MACHINE_STATE_STOPPED"}`)
	_, body = a.call("GET", "/v1/regional/machines/m-1", "")
	row = decode[map[string]any](t, string(decode[RowBody](t, body).Row))
	if row["app"] != "api" || (row["host"] != nil && row["host"] != "") {
		t.Fatalf("after replacing put: %s", body)
	}

	code, body = a.call("DELETE", "/v1/regional/machines/m-1", "")
	if code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, body = a.call("GET", "/v1/regional/machines/m-1", ""); code != 404 || !strings.Contains(body, `"not_found"`) {
		t.Fatalf("get after delete: %d %s", code, body)
	}
}

func TestBadInput(t *testing.T) {
	a := newTestAgent(t, Options{MaxBody: 1024})
	tests := []struct {
		name, method, path, body string
		status                   int
		code, mention            string
	}{
		{"malformed json", "PUT", "/v1/regional/machines/m-1", `{"id":`, 400, "invalid_row", ""},
		{"unknown field", "PUT", "/v1/regional/machines/m-1", `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","colour":"red"}`, 400, "invalid_row", "colour"},
		{"rule violation", "PUT", "/v1/regional/machines/m-1", `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","private_ip":"999.1.1.1"}`, 400, "invalid_row", "private_ip"},
		{"wrong type", "PUT", "/v1/regional/machines/m-1", `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","healthy":"yes"}`, 400, "invalid_row", "healthy"},
		{"key mismatch", "PUT", "/v1/regional/machines/m-2", m1, 400, "key_mismatch", "id"},
		{"unknown table", "PUT", "/v1/regional/nope/m-1", m1, 404, "not_found", "nope"},
		{"unknown row", "GET", "/v1/regional/machines/zzz", "", 404, "not_found", "zzz"},
		{"patch of missing row", "PATCH", "/v1/regional/machines/zzz", `{"healthy":true}`, 404, "not_found", "zzz"},
		{"patch unknown field", "PATCH", "/v1/regional/machines/m-1", `{"colour":"red"}`, 400, "invalid_row", "colour"},
		{"oversized body", "PUT", "/v1/regional/machines/m-1", `{"id":"m-1","app":"` + strings.Repeat("a", 2000) + `"}`, 413, "too_large", "1024"},
		{"batch not an array", "POST", "/v1/regional/machines", `{"id":"m-1"}`, 400, "bad_request", "array"},
		{"batch bad row", "POST", "/v1/regional/machines", `[` + m1 + `,{"id":"m-2","app":"web","state":"MACHINE_STATE_STARTED","private_ip":"x"}]`, 400, "invalid_row", "row 1"},
		{"bad limit", "GET", "/v1/regional/machines?limit=0", "", 400, "bad_request", "limit"},
		{"bad method", "POST", "/v1/regional/machines/m-1", m1, 405, "method_not_allowed", "POST"},
		{"no route", "GET", "/v2/whatever", "", 404, "not_found", "/v2/whatever"},
		{"bad watch position", "GET", "/v1/watch/regional/machines?since=abc", "", 400, "bad_request", "abc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := a.call(tc.method, tc.path, tc.body)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			e := decode[errorBody](t, body).Error
			if e == nil || e.Code != tc.code || !strings.Contains(e.Error(), tc.mention) {
				t.Fatalf("error %s: want code %q mentioning %q", body, tc.code, tc.mention)
			}
		})
	}
	// Nothing above may have stored a row.
	if st := a.store.Stats(); st.Seq != 0 {
		t.Fatalf("bad input changed the store: seq %d", st.Seq)
	}
}

func TestRuleViolationNamesFieldAndRule(t *testing.T) {
	a := newTestAgent(t, Options{})
	_, body := a.call("PUT", "/v1/regional/machines/m-1", `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","private_ip":"nope"}`)
	e := decode[errorBody](t, body).Error
	if len(e.Details) == 0 || e.Details[0].Field != "private_ip" || e.Details[0].Rule != "string.ip" {
		t.Fatalf("details %+v", e.Details)
	}
}

func TestBatchAndList(t *testing.T) {
	a := newTestAgent(t, Options{})
	var rows []string
	for i := 0; i < 25; i++ {
		rows = append(rows, fmt.Sprintf(`{"id":"m-%02d","app":"web","state":"MACHINE_STATE_STARTED"}`, i))
	}
	code, body := a.call("POST", "/v1/regional/machines", "["+strings.Join(rows, ",")+"]")
	if code != 200 || decode[BatchResult](t, body).Written != 25 {
		t.Fatalf("batch: %d %s", code, body)
	}
	var keys []string
	after := ""
	for {
		code, body := a.call("GET", "/v1/regional/machines?limit=10&after="+after, "")
		if code != 200 {
			t.Fatalf("list: %d %s", code, body)
		}
		page := decode[ListResult](t, body)
		for _, r := range page.Rows {
			keys = append(keys, r.Key)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if len(keys) != 25 || keys[0] != "m-00" || keys[24] != "m-24" {
		t.Fatalf("listed %v", keys)
	}
}

func TestAuth(t *testing.T) {
	a := newTestAgent(t, Options{Token: "s3cret"})
	if code, body := a.call("GET", "/v1/status", ""); code != 401 || !strings.Contains(body, "unauthorized") {
		t.Fatalf("no token: %d %s", code, body)
	}
	if code, _ := a.call("GET", "/v1/status", "", "Authorization", "Bearer wrong"); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	if code, _ := a.call("GET", "/v1/status", "", "Authorization", "Bearer s3cret"); code != 200 {
		t.Fatalf("right token: %d", code)
	}
	if code, _ := a.call("GET", "/v1/health", ""); code != 200 {
		t.Fatalf("health must not need the token: %d", code)
	}
}

func TestStatusAndMetrics(t *testing.T) {
	a := newTestAgent(t, Options{})
	a.call("PUT", "/v1/regional/machines/m-1", m1)
	a.call("PUT", "/v1/regional/machines/m-1", `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","private_ip":"bad"}`)
	code, body := a.call("GET", "/v1/status", "")
	st := decode[statusBody](t, body)
	if code != 200 || st.Tiers["regional"].Rows["machines"] != 1 || st.Node != "t1" {
		t.Fatalf("status: %d %s", code, body)
	}
	_, body = a.call("GET", "/metrics", "")
	for _, want := range []string{
		`strata_store_rows{table="machines",tier="regional"} 1`,
		`strata_api_rejected_rows_total{reason="string.ip",table="machines"} 1`,
		`strata_api_requests_total{code="200",route="/v1/regional/{table}/{key...}"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// sseReader reads events from a watch stream.
type sseReader struct {
	t    testing.TB
	resp *http.Response
	sc   *bufio.Scanner
}

func (a *testAgent) watch(table string, header ...string) *sseReader {
	a.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", a.url+"/v1/watch/regional/"+table, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { resp.Body.Close() })
	return &sseReader{t: a.t, resp: resp, sc: bufio.NewScanner(resp.Body)}
}

// next returns the next event as "id event key"; it fails the test if the
// stream ends. Reads block on the network, bounded by the test timeout.
func (r *sseReader) next() string {
	r.t.Helper()
	var id, name, key string
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "" && name != "":
			return strings.TrimSpace(id + " " + name + " " + key)
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			name = line[7:]
		case strings.HasPrefix(line, "data: "):
			var d struct{ Key string }
			json.Unmarshal([]byte(line[6:]), &d)
			key = d.Key
		}
	}
	r.t.Fatalf("stream ended: %v", r.sc.Err())
	return ""
}

func TestWatchSnapshotChangesAndResume(t *testing.T) {
	a := newTestAgent(t, Options{})
	a.call("PUT", "/v1/regional/machines/m-1", m1)
	a.call("PUT", "/v1/regional/machines/m-2", strings.ReplaceAll(m1, "m-1", "m-2"))
	w := a.watch("machines")
	for _, want := range []string{"snapshot m-1", "snapshot m-2", "2 synced"} {
		if got := w.next(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	a.call("PATCH", "/v1/regional/machines/m-1", `{"healthy":false}`)
	a.call("DELETE", "/v1/regional/machines/m-2", "")
	if got := w.next(); got != "3 put m-1" {
		t.Fatalf("got %q", got)
	}
	if got := w.next(); got != "4 delete m-2" {
		t.Fatalf("got %q", got)
	}
	// Resume after event 3: only event 4 and later.
	r := a.watch("machines", "Last-Event-ID", "3")
	if got := r.next(); got != "4 delete m-2" {
		t.Fatalf("resumed stream: got %q", got)
	}
}
