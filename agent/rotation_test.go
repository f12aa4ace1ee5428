package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/internal/reducertest"
	"github.com/strata-state/strata/internal/waitfor"
)

// TestRegionKeyRotationLosesNoRecords rotates ord's signing key while ord
// publishes: every node first trusts both keys, ord's gateway restarts
// with the new key (machines keep changing meanwhile) and re-signs what it
// had published, then the old key is dropped from trusted_regions. A
// gateway that joins afterwards, trusting only the new key, receives all
// of ord's records.
func TestRegionKeyRotationLosesNoRecords(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("starts gateways that compile reducers: too slow under -short or -race (.ci/run runs it without -race)")
	}
	ctx := context.Background()
	wasm := reducertest.Module(t, "app-regions")
	fsys := trustContract(t)
	k := newTrustKeys(t, "ord", "ams")
	next, err := global.NewSigner("ord")
	must(t, err)
	nextFile := filepath.Join(k.dir, "ord-next.key")
	must(t, os.WriteFile(nextFile, next.PrivateKeyFile(), 0o600))
	old, _ := os.ReadFile(k.trusted)
	both := filepath.Join(k.dir, "both.pub")
	must(t, os.WriteFile(both, append(old, []byte(next.TrustLine()+"\n")...), 0o644))
	newOnly := filepath.Join(k.dir, "new.pub")
	must(t, os.WriteFile(newOnly, []byte(next.TrustLine()+"\n"+k.signers["ams"].TrustLine()+"\n"), 0o644))

	gateway := func(node, region, trusted string, globalJoin []string) *config.Config {
		cfg := trustGateway(t, node, region, k, nil, globalJoin)
		cfg.Global.TrustedRegions = trusted
		if region == "ord" {
			cfg.Reducers = gatewayConfig(t, node, region, wasm, nil, nil).Reducers
		}
		return cfg
	}
	ordCfg := gateway("ord-1", "ord", both, nil)
	ord := startWith(t, ordCfg, fsys)
	ams := startWith(t, gateway("ams-1", "ams", both, []string{ord.a.GlobalTier().Addr()}), fsys)

	apps := 0
	addMachine := func(c *api.Client) {
		t.Helper()
		row := fmt.Sprintf(`{"id":"m-%d","app":"app-%d","state":"MACHINE_STATE_STARTED","healthy":true}`, apps, apps)
		if _, err := c.Put(ctx, "machines", fmt.Sprintf("m-%d", apps), []byte(row)); err != nil {
			t.Fatal(err)
		}
		apps++
	}
	seesAll := func(c *api.Client) func() error {
		return func() error {
			var list api.GlobalList
			if err := c.GetJSON(ctx, "/v1/global/app_placements", &list); err != nil {
				return err
			}
			have := map[string]bool{}
			for _, e := range list.Entries {
				if _, ok := e.Regions["ord"]; ok {
					have[e.Key] = true
				}
			}
			for i := range apps {
				if !have[fmt.Sprintf("app-%d", i)] {
					return fmt.Errorf("app-%d of ord missing; has %v", i, have)
				}
			}
			return nil
		}
	}
	for range 2 {
		addMachine(ord.client)
	}
	waitfor.Until(t, 20*time.Second, "ord's first records at ams", seesAll(ams.client))

	// ord's gateway restarts with the next key; machines keep coming.
	ord.stop()
	ordCfg.Global.RegionKey = nextFile
	ordCfg.Global.Join = []string{ams.a.GlobalTier().Addr()}
	ord = startWith(t, ordCfg, fsys)
	for range 2 {
		addMachine(ord.client)
	}
	waitfor.Until(t, 20*time.Second, "every ord record re-signed with the next key", func() error {
		recs, err := global.List(ord.a.Global(), "app_placements", "ord")
		if err != nil {
			return err
		}
		if len(recs) != apps {
			return fmt.Errorf("ord holds %d records, want %d", len(recs), apps)
		}
		for _, r := range recs {
			if len(r.Proof) < 33 || !bytes.Equal(r.Proof[1:33], next.Public()) {
				return fmt.Errorf("%s is still signed by the old key", r.Key)
			}
		}
		return nil
	})
	waitfor.Until(t, 20*time.Second, "all ord records at ams", seesAll(ams.client))

	// The old key is dropped. A gateway that trusts only the next key
	// joins and receives every record of ord.
	ams2 := startWith(t, gateway("ams-2", "ams", newOnly, []string{ams.a.GlobalTier().Addr()}), fsys)
	waitfor.Until(t, 30*time.Second, "a gateway trusting only the next key has every ord record", seesAll(ams2.client))
}
