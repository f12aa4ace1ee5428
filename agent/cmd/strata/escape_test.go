package main

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/api/client"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// The CLI escapes every path segment: `strata del machines a/../b` deletes
// the row keyed "a/../b" (here: none), never row b.
func TestCLIEscapesKeys(t *testing.T) {
	c, err := contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "regional.db"), store.Options{Node: "t1", Clock: hlc.NewClock(nil, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hs := httptest.NewServer(api.New(api.Options{Contract: c, Regional: st, Node: "t1"}).Handler())
	defer hs.Close()
	row := `{"id":"b","app":"web","state":"MACHINE_STATE_STARTED"}`
	if _, err := runStrata(t, "--addr", hs.URL, "put", "machines", "b", row); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"a/../b", "../b", "./b", "..", "a%2F..%2Fb", "b?x=1", "b#frag"} {
		_, err := runStrata(t, "--addr", hs.URL, "del", "machines", key)
		var ae *client.Error
		if !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, key) {
			t.Errorf("del machines %q: %v, want 404 naming that key", key, err)
		}
		if _, err := st.Get("machines", "b"); err != nil {
			t.Fatalf("del machines %q deleted row b: %v", key, err)
		}
	}
	if _, err := runStrata(t, "--addr", hs.URL, "del", "machines", "b"); err != nil {
		t.Errorf("del machines b: %v", err)
	}
}
