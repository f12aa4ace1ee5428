package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/reducertest"
	"github.com/strata-state/strata/internal/waitfor"
)

// syncBuffer is a log sink safe for the agent's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBrokenSourceReducerAtStartUp runs a real gateway whose one reducer
// is a source directory that does not compile: the agent starts and
// serves, logs that it runs on without the reducer by design and how that
// shows, /v1/health answers ok and /v1/reducers names the reducer with the
// compiler's reason.
func TestBrokenSourceReducerAtStartUp(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "broken")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module example.com/broken\n\ngo 1.24\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { notDefined() }\n"), 0o644)
	cfg, err := config.Parse([]byte(`node = "g1"
cluster = "test"
data_dir = "`+filepath.ToSlash(filepath.Join(dir, "data"))+`"
[contracts]
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "r1"
bind = "127.0.0.1:0"
[global]
bind = "127.0.0.1:0"
[api]
addr = "127.0.0.1:0"
[[reducers]]
name = "broken"
source = "`+filepath.ToSlash(src)+`"
inputs = ["machines"]
outputs = ["app_placements"]
`), "agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), ContractFS: contracts.Example})
	if err != nil {
		t.Fatalf("the agent did not start without its broken reducer: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	c := api.NewClient(a.Addr(), "")

	var health map[string]any
	if err := c.GetJSON(ctx, "/v1/health", &health); err != nil || health["status"] != "ok" {
		t.Errorf("/v1/health = %v, %v; want status ok", health, err)
	}
	var res struct {
		Reducers []struct {
			Name      string `json:"name"`
			LastError struct {
				Kind    string `json:"kind"`
				Message string `json:"message"`
			} `json:"last_error"`
		} `json:"reducers"`
	}
	if err := c.GetJSON(ctx, "/v1/reducers", &res); err != nil {
		t.Fatal(err)
	}
	reducers := res.Reducers
	if len(reducers) != 1 || reducers[0].Name != "broken" || !strings.Contains(reducers[0].LastError.Message, "undefined: notDefined") {
		b, _ := json.Marshal(reducers)
		t.Errorf("/v1/reducers = %s, want the broken reducer with the compiler's error", b)
	}
	out := logs.String()
	for _, want := range []string{"reducer=broken", "runs on without it by design", "/v1/health still answers ok", "/v1/reducers"} {
		if !strings.Contains(out, want) {
			t.Errorf("start-up log lacks %q:\n%s", want, out)
		}
	}
}

// TestReducerConfigTypoAtStartUp runs a real gateway whose reducer lists
// a table that is not in the contract ("machine" for "machines"): the
// agent starts without that reducer, reports it as `strata agent --check`
// does (did-you-mean and fix) in its log, in GET /v1/reducers and in
// /v1/status problems, and /v1/health answers ok.
func TestReducerConfigTypoAtStartUp(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(`node = "g1"
cluster = "test"
data_dir = "`+filepath.ToSlash(filepath.Join(dir, "data"))+`"
[contracts]
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "r1"
bind = "127.0.0.1:0"
[global]
bind = "127.0.0.1:0"
[api]
addr = "127.0.0.1:0"
[[reducers]]
name = "app-regions"
wasm = "`+filepath.ToSlash(reducertest.Module(t, "app-regions"))+`"
inputs = ["machine"]
outputs = ["app_placements"]
`), "agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), ContractFS: contracts.Example})
	if err != nil {
		t.Fatalf("the agent did not start: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	c := api.NewClient(a.Addr(), "")

	const typo = `reducer app-regions: inputs: "machine" is not a table of the contract; did you mean "machines"?`
	const fix = `replace "machine" with "machines" in inputs`
	var health map[string]any
	if err := c.GetJSON(ctx, "/v1/health", &health); err != nil || health["status"] != "ok" {
		t.Errorf("/v1/health = %v, %v; want status ok", health, err)
	}
	var res struct {
		Reducers []struct {
			Name      string `json:"name"`
			LastError *struct {
				Kind    string `json:"kind"`
				Message string `json:"message"`
			} `json:"last_error"`
		} `json:"reducers"`
	}
	if err := c.GetJSON(ctx, "/v1/reducers", &res); err != nil {
		t.Fatal(err)
	}
	if r := res.Reducers; len(r) != 1 || r[0].LastError == nil || r[0].LastError.Kind != "config" ||
		!strings.Contains(r[0].LastError.Message, typo) || !strings.Contains(r[0].LastError.Message, fix) {
		b, _ := json.Marshal(r)
		t.Errorf("/v1/reducers = %s, want app-regions not loaded, kind config, with %q and its fix", b, typo)
	}
	var st struct {
		Problems []string `json:"problems"`
	}
	waitfor.Until(t, 10*time.Second, "/v1/status names the reducer's typo among its problems", func() error {
		if err := c.GetJSON(ctx, "/v1/status", &st); err != nil {
			return err
		}
		for _, p := range st.Problems {
			if strings.Contains(p, typo) {
				return nil
			}
		}
		return fmt.Errorf("problems: %q", st.Problems)
	})
	out := logs.String()
	for _, want := range []string{"reducer=app-regions", "runs on without it by design", "did you mean \\\"machines\\\"?"} {
		if !strings.Contains(out, want) {
			t.Errorf("start-up log lacks %q:\n%s", want, out)
		}
	}
}
