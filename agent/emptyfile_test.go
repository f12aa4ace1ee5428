package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// TestEmptyDataFileOfAKnownNodeIsRefused: a node that has run before (its
// peers file is there) and finds its regional.db empty was truncated, not
// installed afresh: the agent refuses to start, naming the file and the
// way out, instead of starting with an empty store that would serve no
// rows and answer as if every acknowledged write were gone.
func TestEmptyDataFileOfAKnownNodeIsRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(cfg.DataDir, "regional.db")
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "peers-regional.json"), []byte(`{"peers":["127.0.0.1:1"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ContractFS: contracts.Example})
	if err == nil {
		a.close()
		t.Fatalf("an agent started on an empty %s although the node had run before", db)
	}
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), db) || !strings.Contains(err.Error(), "strata restore") {
		t.Errorf("start on an empty data file: %v, want ErrCorrupt naming the file and strata restore", err)
	}
}
