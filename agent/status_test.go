package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api/client"
	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/internal/reducertest"
	"github.com/strata-state/strata/internal/waitfor"
)

// nodeStatus is the part of /v1/status this file checks.
type nodeStatus struct {
	Tiers     map[string]json.RawMessage `json:"tiers"`
	Publisher *client.PublisherStatus    `json:"publisher"`
	Problems  []string                   `json:"problems"`
}

func statusOf(ctx context.Context, a *runningAgent) (nodeStatus, error) {
	var st nodeStatus
	raw, err := a.client.Status(ctx)
	if err == nil {
		err = json.Unmarshal(raw, &st)
	}
	return st, err
}

// metricsOf reads a's /metrics, with its API token when it has one.
func metricsOf(ctx context.Context, a *runningAgent) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.a.Addr()+"/metrics", nil)
	if f := a.a.Config().API.TokenFile; f != "" {
		tok, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// missing returns the lines of want that text lacks.
func missing(text string, want ...string) []string {
	var out []string
	for _, w := range want {
		if !strings.Contains(text, w) {
			out = append(out, w)
		}
	}
	return out
}

// TestStatusShowsPublisherRejectionsAndGlobalTier runs a gateway of r1
// whose reducer leaks a regional_only id, and a plain node of r1. The
// gateway's run is not OK: its result is "rejected", last_run_ok is 0, and
// /v1/status and /v1/reducers say so. Both nodes name the gateway as the
// region's publisher (status, members, strata_publisher); the gateway's
// status and store metrics include its global tier. When the gateway
// leaves, the plain node's status says the region has no alive gateway.
func TestStatusShowsPublisherRejectionsAndGlobalTier(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("starts a gateway that compiles a reducer: too slow under -short or -race (.ci/run runs it without -race)")
	}
	ctx := context.Background()
	mods := reducertest.Modules(t, "leakid")
	cfg := gatewayConfig(t, "gw-1", "r1", mods["leakid"], nil, nil)
	cfg.Reducers[0].Name = "leakid"
	gw := startAgent(t, cfg)
	n2 := startAgent(t, regionNode(t, "n2", filepath.Join(t.TempDir(), "data"), []string{gw.a.Tier().Addr()}))
	if _, err := gw.client.Put(ctx, "machines", "m-1", []byte(`{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED"}`)); err != nil {
		t.Fatal(err)
	}

	waitfor.Until(t, 30*time.Second, "the gateway's metrics show the rejected run, its publisher role and its global store", func() error {
		m, err := metricsOf(ctx, gw)
		if err != nil {
			return err
		}
		if miss := missing(m, `strata_publish_runs_total{reducer="leakid",result="rejected"}`, `strata_reducer_last_run_ok{reducer="leakid"} 0`,
			`strata_publisher{node="gw-1"} 1`, `strata_region_gateways_alive 1`, `strata_store_seq{tier="global"}`,
			`strata_store_file_bytes{tier="global"}`); len(miss) > 0 {
			return fmt.Errorf("metrics lack %v", miss)
		}
		if strings.Contains(m, `strata_publish_runs_total{reducer="leakid",result="published"}`) {
			return fmt.Errorf("a rejected run counted as published")
		}
		return nil
	})

	st, err := statusOf(ctx, gw)
	if err != nil {
		t.Fatal(err)
	}
	if st.Publisher == nil || st.Publisher.Node != "gw-1" || !slices.Equal(st.Publisher.Gateways, []string{"gw-1"}) {
		t.Errorf("gateway's status: publisher %+v, want gw-1", st.Publisher)
	}
	if _, ok := st.Tiers["global"]; !ok {
		t.Errorf("gateway's status lacks the global tier: %v", st.Tiers)
	}
	if len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "reducer leakid") || !strings.Contains(st.Problems[0], "rejected") {
		t.Errorf("gateway's status problems %q, want the rejected run of leakid", st.Problems)
	}
	var reducers struct{ Reducers []reducer.Status }
	if err := gw.client.GetJSON(ctx, "/v1/reducers", &reducers); err != nil {
		t.Fatal(err)
	}
	if r := reducers.Reducers; len(r) != 1 || r[0].LastRun == nil || r[0].LastRun.OK || r[0].Rejected == 0 {
		t.Errorf("/v1/reducers: %+v, want last_run.ok false and rejected > 0", r)
	}

	waitfor.Until(t, 10*time.Second, "the plain node names gw-1 as its region's publisher", func() error {
		st, err := statusOf(ctx, n2)
		if err != nil {
			return err
		}
		if st.Publisher == nil || st.Publisher.Node != "gw-1" || len(st.Problems) != 0 {
			return fmt.Errorf("publisher %+v, problems %q", st.Publisher, st.Problems)
		}
		mem, err := n2.client.Members(ctx)
		if err != nil {
			return err
		}
		if mem.Publisher != "gw-1" {
			return fmt.Errorf("members: publisher %q", mem.Publisher)
		}
		m, err := metricsOf(ctx, n2)
		if err != nil {
			return err
		}
		if miss := missing(m, `strata_publisher{node="gw-1"} 1`); len(miss) > 0 {
			return fmt.Errorf("metrics lack %v", miss)
		}
		return nil
	})

	gw.stop()
	waitfor.Until(t, 15*time.Second, "the plain node reports that its region has no alive gateway", func() error {
		st, err := statusOf(ctx, n2)
		if err != nil {
			return err
		}
		if st.Publisher == nil || st.Publisher.Node != "" || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "region r1 has no alive gateway") {
			return fmt.Errorf("publisher %+v, problems %q", st.Publisher, st.Problems)
		}
		return nil
	})
}
