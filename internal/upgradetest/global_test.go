package upgradetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api/client"
	"github.com/strata-state/strata/internal/testbin"
	"github.com/strata-state/strata/internal/waitfor"
)

// gateway makes a the only node of its region and a gateway: its [global]
// table binds a fresh port and joins join. Heartbeats every 500ms
// (stale_after / 3) and a 500ms anti-entropy interval keep the test short.
func (a *agent) gateway(t *testing.T, join []string) string {
	t.Helper()
	addr := testbin.FreeAddr(t, true)
	a.extra = fmt.Sprintf(`[global]
bind = %q
join = [%s]
stale_after = "1500ms"
sync_interval = "500ms"
`, addr, tomlList(join))
	return addr
}

// regionKey writes region's signing key into dir with bin and returns its
// path and its trusted_regions line.
func regionKey(t *testing.T, bin, dir, region string) (string, string) {
	t.Helper()
	path := filepath.Join(dir, region+".key")
	out, err := exec.Command(bin, "keys", "gen-region", region, "-o", path).Output()
	if err != nil {
		t.Fatalf("strata keys gen-region %s: %v", region, err)
	}
	return path, strings.TrimSpace(string(out))
}

// signing returns the [global] lines that make a gateway sign with key
// and trust the regions in trusted.
func signing(t *testing.T, dir, key string, trusted ...string) string {
	t.Helper()
	pub := filepath.Join(dir, "regions.pub")
	if err := os.WriteFile(pub, []byte(strings.Join(trusted, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("region_key = %q\ntrusted_regions = %q\n", key, pub)
}

// putPlacement publishes app's placement from a's region.
func putPlacement(t *testing.T, a *agent, app string) {
	t.Helper()
	body := fmt.Sprintf(`{"app":%q,"serving":true}`, app)
	if err := a.c.PutJSON(context.Background(), "/v1/global/app_placements/"+app, []byte(body), nil); err != nil {
		t.Fatalf("publish %s on %s (%s): %v\n%s", app, a.name, a.bin, err, a.log())
	}
}

// placementRegions is the set of regions a shows app's placement for.
func placementRegions(a *agent, app string) (map[string]bool, error) {
	// GET /v1/global/{record}/{key}, as both builds answer it.
	var e struct {
		Regions map[string]json.RawMessage `json:"regions"`
	}
	err := a.c.GetJSON(context.Background(), "/v1/global/app_placements/"+app, &e)
	if ae := (*client.Error)(nil); errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return map[string]bool{}, nil // no region publishes it
	}
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for r := range e.Regions {
		out[r] = true
	}
	return out, nil
}

// rejected is a's strata_global_received_rejected_total for record and
// reason (0 when absent).
func rejected(a *agent, record, reason string) (float64, error) {
	return metric(a, fmt.Sprintf(`strata_global_received_rejected_total{reason=%q,record=%q}`, reason, record))
}

// TestGlobalTierOldAndNewGateways runs a gateway of PreviousCommit (region
// r1) and one of this build (region r2) in one global tier.
//
// Without region signatures the new gateway's records reach the old one,
// but not its deletes (an empty value, which the old build validates as a
// record and refuses), and a record the old gateway's reducer publishes
// reaches the new one.
// With them, the old gateway refuses every signed record ("decode": it
// knows a global row of field 1 only) and the new gateway refuses the old
// one's unsigned heartbeats ("unsigned"): signed and old gateways do not
// exchange records, which is why docs/UPGRADING.md says to turn region
// signatures on only once every gateway runs this build. Upgrading the old
// gateway in place with its region key joins the two again, both ways.
func TestGlobalTierOldAndNewGateways(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two agents and starts processes")
	}
	oldBin, newBin := oldBinary(t), newBinary(t)

	t.Run("unsigned", func(t *testing.T) {
		o := newAgentIn(t, "o", "r1", nil)
		og := o.gateway(t, nil)
		o.extra += fmt.Sprintf(`[[reducers]]
name = "placements"
wasm = %q
inputs = ["machines"]
outputs = ["app_placements"]
`, oldPlacementsWasm(t))
		o.start(t, oldBin)
		n := newAgentIn(t, "n", "r2", nil)
		n.gateway(t, []string{og})
		n.start(t, newBin)
		putPlacement(t, n, "web")
		waitfor.Until(t, 30*time.Second, "the new gateway's unsigned record on the old gateway", func() error {
			got, err := placementRegions(o, "web")
			if err != nil {
				return err
			}
			if !got["r2"] {
				return fmt.Errorf("old gateway shows web in %v", got)
			}
			return nil
		})

		// The other way: the old build publishes records from reducers
		// only; its reducer publishes batch's placement once a machine of
		// batch runs in r1.
		rows := ackedRows{}
		rows.put(t, o, "m-batch", "batch")
		waitfor.Until(t, 30*time.Second, "the old gateway's record on the new gateway", func() error {
			got, err := placementRegions(n, "batch")
			if err != nil {
				return err
			}
			if !got["r1"] {
				return fmt.Errorf("new gateway shows batch in %v", got)
			}
			return nil
		})

		// A delete is a write of an empty value in this build, a store
		// tombstone in the old one: the old gateway refuses it (the empty
		// record fails its rules) and keeps showing the record.
		req, _ := http.NewRequest(http.MethodDelete, "http://"+n.api+"/v1/global/app_placements/web", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("DELETE on the new gateway: %s", resp.Status)
		}
		waitfor.Until(t, 30*time.Second, "the old gateway refusing the new gateway's delete", func() error {
			v, err := rejected(o, "app_placements", "validate")
			if err != nil {
				return err
			}
			if v == 0 {
				return fmt.Errorf("no validate refusal counted")
			}
			return nil
		})
		if got, err := placementRegions(o, "web"); err != nil || !got["r2"] {
			t.Fatalf("the old gateway after refusing the delete shows web in %v (%v); want r2 still", got, err)
		}
	})

	t.Run("signed", func(t *testing.T) {
		keys := t.TempDir()
		k1, line1 := regionKey(t, newBin, keys, "r1")
		k2, line2 := regionKey(t, newBin, keys, "r2")
		o := newAgentIn(t, "o", "r1", nil)
		og := o.gateway(t, nil)
		o.start(t, oldBin)
		n := newAgentIn(t, "n", "r2", nil)
		n.gateway(t, []string{og})
		n.extra += signing(t, keys, k2, line1, line2)
		n.start(t, newBin)
		putPlacement(t, n, "web")

		waitfor.Until(t, 30*time.Second, "the old gateway refusing the signed record, the new one the unsigned heartbeats", func() error {
			dec, err := rejected(o, "app_placements", "decode")
			if err != nil {
				return err
			}
			uns, err := rejected(n, "_heartbeats", "unsigned")
			if err != nil {
				return err
			}
			if dec == 0 || uns == 0 {
				return fmt.Errorf("old gateway refused %v signed records, new gateway %v unsigned heartbeats", dec, uns)
			}
			return nil
		})
		if got, err := placementRegions(o, "web"); err != nil {
			t.Fatal(err)
		} else if got["r2"] {
			t.Fatalf("the old gateway stored a signed record it refused: %v", got)
		}

		// Upgrade in place, with r1's key: records flow both ways.
		o.stop(t)
		o.extra += signing(t, keys, k1, line1, line2)
		o.start(t, newBin)
		putPlacement(t, o, "api")
		for _, c := range []struct {
			on       *agent
			app, reg string
		}{{o, "web", "r2"}, {n, "api", "r1"}, {o, "api", "r1"}} {
			waitfor.Until(t, 30*time.Second, fmt.Sprintf("%s of %s on %s after the upgrade", c.app, c.reg, c.on.name), func() error {
				got, err := placementRegions(c.on, c.app)
				if err != nil {
					return err
				}
				if !got[c.reg] {
					return fmt.Errorf("%s shows %s in %v", c.on.name, c.app, got)
				}
				return nil
			})
		}
		if t.Failed() {
			t.Logf("o log:\n%s\nn log:\n%s", o.log(), n.log())
		}
	})
}
