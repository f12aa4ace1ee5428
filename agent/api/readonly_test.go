package api

import (
	"context"
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
// /v1/health and /v1/status say writes are unavailable.
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
	hs := httptest.NewServer(New(Options{Contract: c, Regional: st, Node: "t1"}).Handler())
	defer hs.Close()
	a := &testAgent{t: t, url: hs.URL, store: st}

	if code, body := a.call("GET", "/v1/regional/machines/m-1", ""); code != 200 {
		t.Errorf("read: %d %s", code, body)
	}
	if code, body := a.call("PUT", "/v1/regional/machines/m-2", strings.ReplaceAll(m1, "m-1", "m-2")); code != 503 || !strings.Contains(body, path) {
		t.Errorf("write: %d %s, want 503 naming the file", code, body)
	}
	if code, body := a.call("GET", "/v1/health", ""); code != 503 || !strings.Contains(body, "writes unavailable") {
		t.Errorf("health: %d %s", code, body)
	}
	status := decode[statusBody](t, func() string { _, b := a.call("GET", "/v1/status", ""); return b }())
	if w := status.Tiers["regional"].Writes; !strings.Contains(w, "read-only") {
		t.Errorf("status writes: %q", w)
	}
}
