package agent

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/internal/waitfor"
)

// TestStoppedAgentIsSeenAsLeft: an agent stopped the way SIGTERM stops it
// (Run's context ends) leaves its tiers gracefully, and its peers list it
// as "left", not "dead".
func TestStoppedAgentIsSeenAsLeft(t *testing.T) {
	first := startAgent(t, leaveConfig(t, "a1", "", ""))
	second := startAgent(t, leaveConfig(t, "a2", first.a.Tier().Addr(), first.a.GlobalTier().Addr()))
	waitfor.Until(t, 10*time.Second, "a1 sees a2 alive in both tiers", func() error {
		if n := first.a.Tier().NumAlive(); n != 2 {
			return fmt.Errorf("regional: %d alive", n)
		}
		if n := first.a.GlobalTier().NumAlive(); n != 2 {
			return fmt.Errorf("global: %d alive", n)
		}
		return nil
	})
	second.stop()
	waitfor.Until(t, 10*time.Second, "a1 sees a2 as left in both tiers", func() error {
		for tier, ms := range map[string]func() []string{
			"regional": func() []string { return states(first.a.Tier().Members()) },
			"global":   func() []string { return states(first.a.GlobalTier().Members()) },
		} {
			if got := ms(); fmt.Sprint(got) != "[a1=alive a2=left]" {
				return fmt.Errorf("%s members: %v", tier, got)
			}
		}
		return nil
	})
}

func states(ms []cluster.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name+"="+m.State)
	}
	return out
}

// leaveConfig is a gateway without reducers, joining the given addresses.
func leaveConfig(t *testing.T, node, regionalJoin, globalJoin string) *config.Config {
	t.Helper()
	q := func(s string) string {
		if s == "" {
			return ""
		}
		return fmt.Sprintf("%q", s)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`node = %q
cluster = "test"
data_dir = %q
[contracts]
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "r1"
bind = "127.0.0.1:0"
join = [%s]
gossip_interval = "50ms"
probe_interval = "200ms"
probe_timeout = "100ms"
[global]
bind = "127.0.0.1:0"
join = [%s]
gossip_interval = "50ms"
probe_interval = "200ms"
probe_timeout = "100ms"
[api]
addr = "127.0.0.1:0"
`, node, filepath.Join(t.TempDir(), "data"), q(regionalJoin), q(globalJoin))), "agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
