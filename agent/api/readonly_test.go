package api

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// A store whose file cannot be written (a read-only disk) still serves
// reads through the API; writes answer 503 naming the file, and
// /v1/health and /v1/status say writes are unavailable. /v1/health,
// served without the token, names the file to callers with the token
// only.
func TestReadOnlyStoreServesReadsAndReportsWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regional.db")
	clock := hlc.NewClock(nil, time.Minute)
	st, err := store.Open(path, store.Options{Node: "t1", Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "machines", Key: "m-1",
		Fields: []store.FieldValue{{Num: 1, Value: []byte("\n\x03m-1")}}}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if os.Getuid() == 0 {
		if err := exec.Command("chattr", "+i", path).Run(); err != nil {
			t.Skipf("cannot make the file unwritable as root: %v", err)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
	} else {
		os.Chmod(path, 0o400)
	}
	st, err = store.Open(path, store.Options{Node: "t1", Clock: clock})
	if err != nil {
		t.Fatalf("open read-only: %v", err)
	}
	defer st.Close()
	c, err := contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(New(Options{Contract: c, Regional: st, Node: "t1", Token: "s3cret"}).Handler())
	defer hs.Close()
	a := &testAgent{t: t, url: hs.URL, store: st}
	token := []string{"Authorization", "Bearer s3cret"}

	if code, body := a.call("GET", "/v1/regional/machines/m-1", "", token...); code != 200 {
		t.Errorf("read: %d %s", code, body)
	}
	if code, body := a.call("PUT", "/v1/regional/machines/m-2", strings.ReplaceAll(m1, "m-1", "m-2"), token...); code != 503 || !strings.Contains(body, path) {
		t.Errorf("write: %d %s, want 503 naming the file", code, body)
	}
	if code, body := a.call("GET", "/v1/health", "", token...); code != 503 || !strings.Contains(body, "writes unavailable") || !strings.Contains(body, path) {
		t.Errorf("health with the token: %d %s, want 503 naming the file", code, body)
	}
	code, body := a.call("GET", "/v1/health", "")
	if code != 503 || !strings.Contains(body, "writes unavailable") || !strings.Contains(body, "read-only") {
		t.Errorf("health without the token: %d %s, want 503 saying the store is read-only", code, body)
	}
	if strings.Contains(body, filepath.Dir(path)) || strings.Contains(body, "regional.db") {
		t.Errorf("health without the token names the data directory or file: %s", body)
	}
	var h healthBody
	if err := json.Unmarshal([]byte(body), &h); err != nil || h.Status != "unhealthy" || len(h.Problems) != 1 {
		t.Errorf("health without the token: %s, want the same shape (%v)", body, err)
	}
	status := decode[statusBody](t, func() string { _, b := a.call("GET", "/v1/status", "", token...); return b }())
	if w := status.Tiers["regional"].Writes; !strings.Contains(w, "read-only") {
		t.Errorf("status writes: %q", w)
	}
}
