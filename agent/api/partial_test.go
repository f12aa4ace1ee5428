package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// A PATCH that reaches a node before the PUT that created its row leaves a
// partial row. Readers do not see it as a row (GET 404 saying why, left
// out of listings), PATCH answers 404 like for a missing row, and a PUT
// makes it whole.
func TestPartialRowBeforeItsPut(t *testing.T) {
	a := newTestAgent(t, Options{})
	clock := hlc.NewClock(nil, time.Minute)
	created := store.Stamp{HLC: clock.Now(), Node: 7}
	patched := store.Stamp{HLC: clock.Now(), Node: 7}
	// The delta of `PATCH {"healthy": true}` on another node: the row's
	// causal length and creation stamp, and field 4 only.
	delta := store.Change{Table: "machines", Key: "m-9", Row: store.Row{CL: 1, Stamp: created,
		Fields: []store.Field{{Num: 4, Stamp: patched, Value: []byte{0x20, 0x01}}}}}
	if _, rejected, err := a.store.Merge(context.Background(), []store.Change{delta}); err != nil || len(rejected) > 0 {
		t.Fatalf("merge: %v %v", err, rejected)
	}
	if code, body := a.call("GET", "/v1/regional/machines/m-9", ""); code != 404 || !strings.Contains(body, "partial") {
		t.Errorf("GET of a partial row: %d %s, want 404 saying it is partial", code, body)
	}
	if _, body := a.call("GET", "/v1/regional/machines", ""); strings.Contains(body, "m-9") {
		t.Errorf("listing shows the partial row: %s", body)
	}
	if code, body := a.call("PATCH", "/v1/regional/machines/m-9", `{"app":"db"}`); code != 404 {
		t.Errorf("PATCH of a partial row: %d %s, want 404", code, body)
	}
	m9 := strings.ReplaceAll(m1, "m-1", "m-9")
	if code, body := a.call("PUT", "/v1/regional/machines/m-9", m9); code != 200 {
		t.Fatalf("PUT over a partial row: %d %s", code, body)
	}
	if code, body := a.call("GET", "/v1/regional/machines/m-9", ""); code != 200 || !strings.Contains(body, `"app":"web"`) {
		t.Errorf("GET after the PUT: %d %s", code, body)
	}
	if code, body := a.call("PATCH", "/v1/regional/machines/m-9", `{"app":"db"}`); code != 200 {
		t.Errorf("PATCH after the PUT: %d %s", code, body)
	}
}
