package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/waitfor"
)

// TestStatusAndMembersShowThePublisher runs a gateway (no reducers) of r1
// on real memberlist and HTTP: `strata members` marks it as the region's
// publisher and `strata status` names it.
func TestStatusAndMembersShowThePublisher(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`node = "g1"
cluster = "status"
data_dir = %q
[contracts]
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "r1"
bind = "127.0.0.1:0"
gossip_interval = "50ms"
probe_interval = "200ms"
probe_timeout = "100ms"
[global]
bind = "127.0.0.1:0"
gossip_interval = "50ms"
probe_interval = "200ms"
probe_timeout = "100ms"
[api]
addr = "127.0.0.1:0"
`, filepath.Join(dir, "data"))), "agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, cfg, agent.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ContractFS: contracts.Example})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitfor.Until(t, 10*time.Second, "strata members marks g1 as the publisher", func() error {
		out, err := runStrata(t, "--addr", a.Addr(), "members")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 5 && f[0] == "regional" && f[1] == "g1" {
				if f[5] != "gateway,publisher" {
					return fmt.Errorf("g1's roles %q, want gateway,publisher:\n%s", f[5], out)
				}
				return nil
			}
		}
		return fmt.Errorf("no regional g1 line:\n%s", out)
	})
	out, err := runStrata(t, "--addr", a.Addr(), "status")
	if err != nil {
		t.Fatal(err, out)
	}
	var st struct {
		Publisher struct {
			Node     string   `json:"node"`
			Gateways []string `json:"gateways"`
		} `json:"publisher"`
		Tiers map[string]any `json:"tiers"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if st.Publisher.Node != "g1" || len(st.Publisher.Gateways) != 1 || st.Tiers["global"] == nil {
		t.Errorf("strata status: publisher %+v, tiers %v:\n%s", st.Publisher, st.Tiers, out)
	}
}
