package api

import (
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// TestStatusShowsGlobalTierAndPublisher: a gateway's /v1/status and
// strata_store_* metrics include its global store; /v1/status, /v1/members
// and strata_publisher name the region's publisher, and a region without
// an alive gateway says so.
func TestStatusShowsGlobalTierAndPublisher(t *testing.T) {
	gst, err := store.Open(filepath.Join(t.TempDir(), "global.db"), store.Options{Node: "t1", Clock: hlc.NewClock(nil, time.Minute), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gst.Close() })
	var mu sync.Mutex
	pub := PublisherStatus{Node: "gw-1", Gateways: []string{"gw-1", "gw-2"}}
	a := newTestAgent(t, Options{Global: gst, Publisher: func() PublisherStatus {
		mu.Lock()
		defer mu.Unlock()
		return pub
	}})

	_, body := a.call("GET", "/v1/status", "")
	st := decode[statusBody](t, body)
	if _, ok := st.Tiers["global"]; !ok {
		t.Errorf("status lacks the global tier: %s", body)
	}
	if st.Publisher == nil || st.Publisher.Node != "gw-1" || !slices.Equal(st.Publisher.Gateways, []string{"gw-1", "gw-2"}) || len(st.Problems) != 0 {
		t.Errorf("status: publisher %+v, problems %q", st.Publisher, st.Problems)
	}
	_, body = a.call("GET", "/v1/members", "")
	if m := decode[MembersResult](t, body); m.Publisher != "gw-1" {
		t.Errorf("members: publisher %q, want gw-1", m.Publisher)
	}
	_, body = a.call("GET", "/metrics", "")
	for _, want := range []string{
		`strata_store_seq{tier="global"}`, `strata_store_commits_total{tier="global"}`, `strata_store_file_bytes{tier="global"}`,
		`strata_publisher{node="gw-1"} 1`, `strata_region_gateways_alive 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	for _, tc := range []struct {
		pub  PublisherStatus
		want string
	}{
		{PublisherStatus{}, "region local has no alive gateway"},
		{PublisherStatus{Gateways: []string{"gw-2"}}, "region local has no publisher: none of its alive gateways (gw-2) is alive in the global tier"},
	} {
		mu.Lock()
		pub = tc.pub
		mu.Unlock()
		_, body = a.call("GET", "/v1/status", "")
		st := decode[statusBody](t, body)
		if st.Publisher == nil || st.Publisher.Node != "" || st.Publisher.Gateways == nil || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], tc.want) {
			t.Errorf("status with %+v: %s, want a problem %q", tc.pub, body, tc.want)
		}
		_, body = a.call("GET", "/metrics", "")
		if strings.Contains(body, "strata_publisher{") {
			t.Errorf("strata_publisher with no publisher (%+v)", tc.pub)
		}
	}
}

// TestStatusCountsLiveGlobalRecords: /v1/status and strata_store_rows
// count a global record type's live records, as they count live regional
// rows: a deleted record (kept as a signed delete until tombstone_ttl) is
// not counted, on a gateway's write path and without one.
func TestStatusCountsLiveGlobalRecords(t *testing.T) {
	a, w := gatewayAgent(t, Options{})
	for _, app := range []string{"web", "db", "cache"} {
		putPlacement(t, a, app)
	}
	if code, body := a.call("DELETE", "/v1/global/app_placements/db", ""); code != 200 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if code, body := a.call("PUT", "/v1/regional/machines/m-1", m1); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, body := a.call("DELETE", "/v1/regional/machines/m-1", ""); code != 200 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	readOnly := newTestAgent(t, Options{Contract: a.srv.opts.Contract, Global: a.srv.opts.Global})
	for name, agent := range map[string]*testAgent{"gateway": a, "no write path": readOnly} {
		_, body := agent.call("GET", "/v1/status", "")
		st := decode[statusBody](t, body)
		if got := st.Tiers["global"].Rows["app_placements"]; got != 2 {
			t.Errorf("%s: status counts %d app_placements, want 2 (web, cache; db deleted): %s", name, got, body)
		}
		if got := st.Tiers["regional"].Rows["machines"]; agent == a && got != 0 {
			t.Errorf("%s: status counts %d machines, want 0 (m-1 deleted)", name, got)
		}
		_, body = agent.call("GET", "/metrics", "")
		if want := `strata_store_rows{table="app_placements",tier="global"} 2`; !strings.Contains(body, want) {
			t.Errorf("%s: metrics lack %s", name, want)
		}
	}
	// The count follows later writes.
	putPlacement(t, a, "db")
	if n, err := w.Live("app_placements"); err != nil || n != 3 {
		t.Errorf("after db is written again: %d live (%v), want 3", n, err)
	}
	_, body := a.call("GET", "/v1/status", "")
	if got := decode[statusBody](t, body).Tiers["global"].Rows["app_placements"]; got != 3 {
		t.Errorf("status counts %d app_placements after db is written again, want 3", got)
	}
}
