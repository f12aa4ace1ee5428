package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/strata-state/strata/agent"
	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/internal/waitfor"
)

// TestSIGHUPReloadsToken sends a real SIGHUP to this process while an
// agent runs with reloadOnHUP: the token file's new content is required
// from then on.
func TestSIGHUPReloadsToken(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("before\n"), 0o600)
	cfgPath := filepath.Join(dir, "agent.toml")
	os.WriteFile(cfgPath, []byte(`node = "h1"
data_dir = "data"
`+exampleContracts(t)+`[regional]
region = "r1"
bind = "127.0.0.1:0"
[api]
addr = "127.0.0.1:0"
token_file = "token"
`), 0o644)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	log, level := newLogger(io.Discard, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, cfg, agent.Options{Logger: log, Level: level})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	reloadOnHUP(ctx, a, cfgPath, log)

	os.WriteFile(token, []byte("after\n"), 0o600)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 10*time.Second, "the new token is required after SIGHUP", func() error {
		if _, err := api.NewClient(a.Addr(), "after").Status(ctx); err != nil {
			return err
		}
		if _, err := api.NewClient(a.Addr(), "before").Status(ctx); err == nil {
			return fmt.Errorf("the old token still works")
		}
		return nil
	})
}

// TestLogFormatJSON: log_format = "json" writes one JSON object per line.
func TestLogFormatJSON(t *testing.T) {
	var buf bytes.Buffer
	log, _ := newLogger(&buf, &config.Config{LogLevel: "info", LogFormat: "json"})
	log.Info("hello", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "hello" || rec["k"] != "v" {
		t.Errorf("json log line %q: %v", buf.String(), err)
	}
}
