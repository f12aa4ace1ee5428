package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// `strata backup` of a running agent and `strata restore` into a fresh
// data_dir give stores with the same digests, both tiers.
func TestBackupRestoreSameDigest(t *testing.T) {
	c, err := contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	clock := hlc.NewClock(nil, time.Minute)
	open := func(path string) *store.Store {
		s, err := store.Open(path, store.Options{Node: "t1", Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	regional, global := open(filepath.Join(dir, "regional.db")), open(filepath.Join(dir, "global.db"))
	defer regional.Close()
	defer global.Close()
	hs := httptest.NewServer(api.New(api.Options{Contract: c, Regional: regional, Global: global, Node: "t1"}).Handler())
	defer hs.Close()
	for i := range 500 {
		row := fmt.Sprintf(`{"id":"m-%d","app":"web","state":"MACHINE_STATE_STARTED"}`, i)
		if _, err := runStrata(t, "--addr", hs.URL, "put", "machines", fmt.Sprintf("m-%d", i), row); err != nil {
			t.Fatal(err)
		}
	}
	runStrata(t, "--addr", hs.URL, "del", "machines", "m-7")
	if _, err := global.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "app_placements", Key: "ord/web",
		Fields: []store.FieldValue{{Num: 1, Value: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "ord-1.tar")
	if out, err := runStrata(t, "--addr", hs.URL, "backup", file); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	restored := filepath.Join(t.TempDir(), "data")
	if out, err := runStrata(t, "restore", file, "--data-dir", restored); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	for name, src := range map[string]*store.Store{"regional.db": regional, "global.db": global} {
		got := open(filepath.Join(restored, name))
		if g, w := got.Digest().Root(), src.Digest().Root(); g != w {
			t.Errorf("%s: restored digest %x, want %x", name, g, w)
		}
		if g, w := got.Stats().Rows, src.Stats().Rows; fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s: restored rows %v, want %v", name, g, w)
		}
		got.Close()
	}

	// Restore refuses a directory that is not empty, and a file that is
	// not a backup.
	if _, err := runStrata(t, "restore", file, "--data-dir", restored); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore into a used data_dir: %v", err)
	}
	bogus := filepath.Join(t.TempDir(), "bogus.tar")
	os.WriteFile(bogus, []byte("not a tar"), 0o600)
	if _, err := runStrata(t, "restore", bogus, "--data-dir", filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(err.Error(), "not a strata backup") {
		t.Errorf("restore of a bogus file: %v", err)
	}
}
