package agent

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/internal/waitfor"
)

// metric returns the value of the sample named series (name and labels as
// /metrics prints them) on a's API, 0 when absent.
func metric(t *testing.T, a *runningAgent, series string) float64 {
	t.Helper()
	text, err := metricsOf(context.Background(), a)
	must(t, err)
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			x, err := strconv.ParseFloat(v, 64)
			must(t, err)
			return x
		}
	}
	return 0
}

// A gateway's own global writes travel on the push path, like regional
// writes: the writer signs its records and merges them into the global
// store, which reports them to the tier as a peer's, and the tier used to
// offer only local writes to push, so every global change went by
// memberlist gossip (and, when a gossip message was lost, waited up to a
// 30 s anti-entropy round: placements seen after 20 s in bench tiers).
func TestGlobalWritesArePushed(t *testing.T) {
	ctx := context.Background()
	fsys := trustContract(t)
	k := newTrustKeys(t, "ord", "ams")
	ord := startWith(t, trustGateway(t, "ord-1", "ord", k, nil, nil), fsys)
	ams := startWith(t, trustGateway(t, "ams-1", "ams", k, nil, []string{ord.a.GlobalTier().Addr()}), fsys)
	waitfor.Until(t, 15*time.Second, "ord-1 to push to ams-1 on the global tier", func() error {
		if n := metric(t, ord, `strata_push_peers{mode="eager",tier="global"}`); n < 1 {
			return fmt.Errorf("ord-1 has %v eager push peers on the global tier", n)
		}
		return nil
	})
	for _, app := range []string{"web", "api", "db"} {
		must(t, ord.client.PutJSON(ctx, "/v1/global/app_placements/"+app, []byte(`{"app":"`+app+`","serving":true}`), nil))
	}
	waitfor.Until(t, 15*time.Second, "ams-1 to hold ord's three records", func() error {
		for _, app := range []string{"web", "api", "db"} {
			p, err := placement(ctx, ams.client, app)
			if err != nil {
				return err
			}
			if !strings.Contains(p["ord"], `"serving":true`) {
				return fmt.Errorf("ams-1: %s is %v", app, p)
			}
		}
		return nil
	})
	if n := metric(t, ams, `strata_changes_applied_total{path="push",tier="global"}`); n < 3 {
		t.Fatalf("ams-1 applied %v global changes by push, want ord's 3 records (gossip: %v, anti-entropy: %v)", n,
			metric(t, ams, `strata_changes_applied_total{path="gossip",tier="global"}`),
			metric(t, ams, `strata_changes_applied_total{path="anti_entropy",tier="global"}`))
	}
}
