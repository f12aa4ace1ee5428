package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// The API token from STRATA_TOKEN is never printed by --help (a flag's
// default is), and is still what the client sends to a real,
// token-protected API.
func TestTokenNotInHelp(t *testing.T) {
	const secret = "CrT8Cm2rSecretTokenValue"
	t.Setenv("STRATA_TOKEN", secret)
	for _, args := range [][]string{{"--help"}, {"status", "--help"}, {"keys", "rotate", "--help"}, {"backup", "--help"}} {
		out, err := runStrata(t, args...)
		if err != nil {
			t.Fatalf("strata %v: %v", args, err)
		}
		if strings.Contains(out, secret) || strings.Contains(out, secret[:8]) {
			t.Errorf("strata %v prints the token from STRATA_TOKEN:\n%s", args, out)
		}
		if !strings.Contains(out, "--token") {
			t.Errorf("strata %v: no --token flag in the help", args)
		}
	}

	c, err := contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(filepath.Join(t.TempDir(), "regional.db"), store.Options{Node: "t1", Clock: hlc.NewClock(nil, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hs := httptest.NewServer(api.New(api.Options{Contract: c, Regional: s, Node: "t1", Token: secret}).Handler())
	defer hs.Close()
	if out, err := runStrata(t, "--addr", hs.URL, "ls", "machines"); err != nil {
		t.Errorf("ls with STRATA_TOKEN set: %v\n%s", err, out)
	}
	if _, err := runStrata(t, "--addr", hs.URL, "--token", "wrong", "ls", "machines"); err == nil {
		t.Errorf("ls with a wrong --token succeeded: --token must win over STRATA_TOKEN")
	}
	t.Setenv("STRATA_TOKEN", "")
	if _, err := runStrata(t, "--addr", hs.URL, "ls", "machines"); err == nil {
		t.Errorf("ls with no token succeeded against a token-protected API")
	}
}
