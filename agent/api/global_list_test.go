package api

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// gatewayAgent is a test agent of region "local" with a global store and
// its write path, as a gateway's; opts' Contract, Global and Writer are
// set here.
func gatewayAgent(t *testing.T, opts Options) (*testAgent, *global.Writer) {
	t.Helper()
	c, err := contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	clock := hlc.NewClock(nil, time.Minute)
	gst, err := store.Open(filepath.Join(t.TempDir(), "global.db"), store.Options{Node: "t1", Clock: clock, NoSync: true, Deleted: global.DeletedRow})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gst.Close() })
	w := global.NewWriter(global.Options{Contract: c, Store: gst, Clock: clock, Node: "t1", Region: "local"})
	opts.Contract, opts.Global, opts.Writer = c, gst, w
	return newTestAgent(t, opts), w
}

// putPlacement writes app_placements/app of region local through the API.
func putPlacement(t *testing.T, a *testAgent, app string) {
	t.Helper()
	if code, body := a.call("PUT", "/v1/global/app_placements/"+app, fmt.Sprintf(`{"app":%q,"serving":true}`, app)); code != 200 {
		t.Fatalf("PUT %s: %d %s", app, code, body)
	}
}

// globalPage is a page of GET /v1/global/{record} as a client reads it.
type globalPage struct {
	Entries []GlobalEntry `json:"entries"`
	Next    string        `json:"next"`
}

// TestGlobalListPages: GET /v1/global/{record} takes the regional list's
// limit and after, answers keys in key order, and sets next while more
// follow; paging through it returns every key once. Without limit it
// answers every key; a bad limit is refused as on the regional list.
func TestGlobalListPages(t *testing.T) {
	a, _ := gatewayAgent(t, Options{})
	var want []string
	for i := range 7 {
		app := fmt.Sprintf("app-%d", (i*5)%7) // written out of key order
		putPlacement(t, a, app)
		want = append(want, app)
	}
	slices.Sort(want)

	var got []string
	after, pages := "", 0
	for {
		code, body := a.call("GET", "/v1/global/app_placements?limit=3&after="+after, "")
		if code != 200 {
			t.Fatalf("page after %q: %d %s", after, code, body)
		}
		l := decode[globalPage](t, body)
		pages++
		if len(l.Entries) > 3 {
			t.Fatalf("page after %q: %d entries, limit 3", after, len(l.Entries))
		}
		for _, e := range l.Entries {
			if _, ok := e.Regions["local"]; !ok {
				t.Fatalf("entry %s without its region: %s", e.Key, body)
			}
			got = append(got, e.Key)
		}
		if l.Next == "" {
			break
		}
		if l.Next != got[len(got)-1] {
			t.Fatalf("next %q, want the page's last key %q", l.Next, got[len(got)-1])
		}
		after = l.Next
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("paged keys %q in %d pages, want %q in 3", got, pages, want)
	}

	_, body := a.call("GET", "/v1/global/app_placements", "")
	l := decode[globalPage](t, body)
	var all []string
	for _, e := range l.Entries {
		all = append(all, e.Key)
	}
	if !slices.Equal(all, want) || l.Next != "" {
		t.Errorf("without limit: %q next %q, want every key %q", all, l.Next, want)
	}
	if _, body := a.call("GET", "/v1/global/app_placements?after=app-5", ""); len(decode[globalPage](t, body).Entries) != 1 {
		t.Errorf("after=app-5: %s, want app-6 only", body)
	}
	// The signed form is answered whole; a page of it is refused, not
	// silently ignored.
	for _, q := range []string{"limit=3", "after=app-5"} {
		if code, body := a.call("GET", "/v1/global/app_placements?format=signed&"+q, ""); code != 400 || !strings.Contains(body, "format=signed") {
			t.Errorf("format=signed&%s: %d %s, want 400 naming format=signed", q, code, body)
		}
	}
	for _, bad := range []string{"0", "x", "10001"} {
		if code, body := a.call("GET", "/v1/global/app_placements?limit="+bad, ""); code != 400 || !strings.Contains(body, "want an integer from 1 to 10000") {
			t.Errorf("limit=%s: %d %s, want 400 as on the regional list", bad, code, body)
		}
	}
}
