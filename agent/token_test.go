package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-state/strata/agent/config"
)

// A token file that group or others can read is refused with an error
// naming chmod 600; a private one is read.
func TestTokenFileMustBePrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if _, err := readToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("token file mode 0644: %v, want an error naming chmod 600", err)
	}
	os.Chmod(path, 0o600)
	tok, err := readToken(path)
	if err != nil || tok != "s3cret" {
		t.Fatalf("token file mode 0600: %q, %v", tok, err)
	}
}

// With no token, a non-loopback API or gossip address gets a warning at
// start naming the key to set; loopback-only gets none.
func TestWarnWithoutTokenBeyondLoopback(t *testing.T) {
	cfg, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	cfg.API.Addr, cfg.Regional.Bind = "127.0.0.1:7070", "127.0.0.1:7946"
	warnOpen(log, cfg, "")
	if buf.Len() != 0 {
		t.Errorf("warning for a loopback-only agent: %s", buf.String())
	}
	cfg.Regional.Bind = "0.0.0.0:7946"
	warnOpen(log, cfg, "")
	if !strings.Contains(buf.String(), "api.token_file") || !strings.Contains(buf.String(), "regional.bind") {
		t.Errorf("no warning naming api.token_file for gossip on 0.0.0.0 without a token: %q", buf.String())
	}
	buf.Reset()
	warnOpen(log, cfg, "s3cret")
	if buf.Len() != 0 {
		t.Errorf("warning although a token is set: %s", buf.String())
	}
}
