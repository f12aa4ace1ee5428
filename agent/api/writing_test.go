package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/internal/waitfor"
)

// A write that the store does not commit within WriteWait is answered 503
// saying it may still be applied, instead of leaving the client without an
// answer when the server's write timeout cuts the connection; once the
// store moves again, the write is there.
func TestWriteStuckInTheStoreIsAnswered(t *testing.T) {
	a := newTestAgentWith(t, Options{WriteWait: 500 * time.Millisecond}, store.Options{InitialMmapSize: -1}, nil)
	putRows(t, a, "m-", 10)
	stop := stallCommits(t, a)
	waitfor.Until(t, 20*time.Second, "the commit loop to stall", func() error {
		if d := a.store.CommitStall(); d < 100*time.Millisecond {
			return fmt.Errorf("commit stall %s", d)
		}
		return nil
	})

	client := &http.Client{Timeout: 15 * time.Second}
	req, err := http.NewRequest("PUT", a.url+"/v1/regional/machines/m-2", strings.NewReader(strings.ReplaceAll(m1, "m-1", "m-2")))
	must(t, err)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("a write to a stuck store got no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	queued := strings.Contains(string(body), "may still be applied")
	if resp.StatusCode != http.StatusServiceUnavailable || !queued && !strings.Contains(string(body), "not applied") {
		t.Fatalf("a write to a stuck store: %d %s, want a 503 saying whether it may still be applied", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("answered after %s, WriteWait is 500ms", d)
	}

	// Once the store moves, what the answer said holds: a later write
	// commits after every write queued before it.
	stop()
	if code, body := a.call("PUT", "/v1/regional/machines/m-3", strings.ReplaceAll(m1, "m-1", "m-3")); code != 200 {
		t.Fatalf("a write after the stall: %d %s", code, body)
	}
	code, got := a.call("GET", "/v1/regional/machines/m-2", "")
	if queued && code != 200 || !queued && code != 404 {
		t.Fatalf("m-2 after the stall: %d %s; the 503 said queued=%v", code, got, queued)
	}
}

// Large write bodies share a budget of writeBudget × MaxBody: while it is
// taken, a large batch waits and then gets a 503 naming the budget, a
// small write goes through, and once the budget is free the batch does.
func TestLargeWritesShareABudget(t *testing.T) {
	const maxBody = 256 << 10
	a := newTestAgent(t, Options{MaxBody: maxBody, WriteWait: 3 * time.Second}) // room for the last batch's commit on a loaded machine, under -race
	var rows []string
	for i := 0; len(strings.Join(rows, ",")) < 2*smallBody; i++ {
		rows = append(rows, strings.ReplaceAll(m1, "m-1", fmt.Sprintf("b-%05d", i)))
	}
	batch := "[" + strings.Join(rows, ",") + "]"

	held := int64(writeBudget*maxBody) - smallBody // less than one batch left
	must(t, a.srv.bodies.Acquire(context.Background(), held))
	code, body := a.call("POST", "/v1/regional/machines", batch)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "write budget") {
		t.Fatalf("a large batch with the budget taken: %d %s, want a 503 naming the write budget", code, body)
	}
	if code, body := a.call("PUT", "/v1/regional/machines/m-1", m1); code != 200 {
		t.Fatalf("a small write with the budget taken: %d %s", code, body)
	}
	a.srv.bodies.Release(held)
	if code, body := a.call("POST", "/v1/regional/machines", batch); code != 200 {
		t.Fatalf("a large batch with the budget free: %d %s", code, body)
	}
	if !a.srv.bodies.TryAcquire(writeBudget * maxBody) {
		t.Fatal("the budget was not given back after the writes")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Global routes answer a method they do not serve with 405 and the
// methods they do, as the regional routes do, not with 404.
func TestGlobalRoutesAnswerMethodNotAllowed(t *testing.T) {
	a := newTestAgent(t, Options{})
	for _, tc := range []struct{ method, path, allow string }{
		{"POST", "/v1/global/app_placements", "GET"},
		{"PATCH", "/v1/global/app_placements/web", "GET, PUT, DELETE"},
		{"POST", "/v1/global/app_placements/web", "GET, PUT, DELETE"},
	} {
		code, body := a.call(tc.method, tc.path, "{}")
		if code != http.StatusMethodNotAllowed || !strings.Contains(body, tc.allow) {
			t.Errorf("%s %s: %d %s, want 405 allowing %s", tc.method, tc.path, code, body, tc.allow)
		}
	}
}

// A batch that names a key twice is refused whole, naming both rows,
// instead of the later row silently winning.
func TestBatchWithADuplicateKeyIsRefused(t *testing.T) {
	a := newTestAgent(t, Options{})
	batch := "[" + m1 + "," + strings.ReplaceAll(m1, "m-1", "m-2") + "," + strings.ReplaceAll(m1, `"h1"`, `"h9"`) + "]"
	code, body := a.call("POST", "/v1/regional/machines", batch)
	if code != http.StatusBadRequest || !strings.Contains(body, `duplicate key \"m-1\", also row 0`) || !strings.Contains(body, "row 2") {
		t.Fatalf("a batch naming m-1 twice: %d %s, want a 400 naming rows 0 and 2", code, body)
	}
	if code, _ := a.call("GET", "/v1/regional/machines/m-2", ""); code != http.StatusNotFound {
		t.Fatalf("a refused batch wrote m-2: %d", code)
	}
}
