package agent

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/internal/reducertest"
)

// BenchmarkEndToEnd measures, in the demo topology (3 regions of 3 agents,
// 2 gateways each, in one process on loopback, default gossip settings of
// the agent and a 250ms debounce), how long a machine starting in region A
// (written on A's non-gateway) takes to be visible as A in app_placements on
// every gateway of B and C, and how that splits: regional gossip to A's
// publisher, then debounce + reducer + validation + local commit, then
// global gossip to the last remote gateway.
func BenchmarkEndToEnd(b *testing.B) {
	wasm := reducertest.Module(b, "app-regions")
	ctx := context.Background()
	regions := []string{"ord", "ams", "syd"}
	agents := map[string][]*runningAgent{}
	var globalSeed string
	keys := newTrustKeys(b, regions...) // every global change signed and verified
	for _, region := range regions {
		for i := 1; i <= 3; i++ {
			var rjoin, gjoin []string
			if len(agents[region]) > 0 {
				rjoin = []string{agents[region][0].a.Tier().Addr()}
			}
			if globalSeed != "" {
				gjoin = []string{globalSeed}
			}
			cfg := gatewayConfig(b, fmt.Sprintf("%s-%d", region, i), region, wasm, rjoin, gjoin)
			// Agent defaults, not the fast test settings.
			cfg.Regional.GossipInterval.Duration, cfg.Regional.ProbeInterval.Duration, cfg.Regional.ProbeTimeout.Duration = 100*time.Millisecond, time.Second, 500*time.Millisecond
			cfg.Global.GossipInterval.Duration, cfg.Global.ProbeInterval.Duration, cfg.Global.ProbeTimeout.Duration = 200*time.Millisecond, 5*time.Second, 3*time.Second
			cfg.Global.StaleAfter.Duration = 30 * time.Second
			cfg.Reducers[0].Debounce.Duration = 250 * time.Millisecond
			cfg.Global.RegionKey, cfg.Global.TrustedRegions = keys.keyFiles[region], keys.trusted
			if i == 3 {
				cfg.Global, cfg.Reducers = nil, nil
			}
			ra := startAgent(b, cfg)
			agents[region] = append(agents[region], ra)
			if globalSeed == "" {
				globalSeed = ra.a.GlobalTier().Addr()
			}
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := true
		for _, region := range regions {
			for _, ra := range agents[region] {
				if ra.a.Tier().NumAlive() != 3 || (ra.a.GlobalTier() != nil && ra.a.GlobalTier().NumAlive() != 6) {
					ok = false
				}
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("topology did not form")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var total, regional, publishing, across []time.Duration
	b.ResetTimer()
	for i := 0; i < 10*b.N; i++ {
		src := regions[i%3]
		app := fmt.Sprintf("app%d", i)
		publisher := agents[src][0] // lowest-named gateway
		var remotes []*runningAgent
		for _, r := range regions {
			if r != src {
				remotes = append(remotes, agents[r][0], agents[r][1])
			}
		}
		row := fmt.Sprintf(`{"id":"b-%d","app":%q,"state":"MACHINE_STATE_STARTED","healthy":true}`, i, app)
		t0 := time.Now()
		if _, err := agents[src][2].client.Put(ctx, "machines", fmt.Sprintf("b-%d", i), []byte(row)); err != nil {
			b.Fatal(err)
		}
		var tRegional, tPublished time.Duration
		for {
			now := time.Since(t0)
			if tRegional == 0 {
				if _, err := publisher.a.Store().Get("machines", fmt.Sprintf("b-%d", i)); err == nil {
					tRegional = now
				}
			}
			if tPublished == 0 {
				if _, err := global.Get(publisher.a.Global(), "app_placements", src, app); err == nil {
					tPublished = now
				}
			}
			all := true
			for _, r := range remotes {
				if _, err := global.Get(r.a.Global(), "app_placements", src, app); err != nil {
					all = false
					break
				}
			}
			if all && tRegional > 0 && tPublished > 0 {
				total = append(total, now)
				regional = append(regional, tRegional)
				publishing = append(publishing, tPublished-tRegional)
				across = append(across, now-tPublished)
				break
			}
			if now > 10*time.Second {
				b.Fatalf("write %d not visible everywhere after 10s", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(float64(len(s))*p))].Milliseconds())
	}
	b.ReportMetric(pct(total, 0.5), "p50_ms")
	b.ReportMetric(pct(total, 0.99), "p99_ms")
	b.ReportMetric(pct(regional, 0.5), "regional_p50_ms")
	b.ReportMetric(pct(publishing, 0.5), "debounce+reduce+validate_p50_ms")
	b.ReportMetric(pct(across, 0.5), "global_p50_ms")
	b.ReportMetric(pct(across, 0.99), "global_p99_ms")
}
