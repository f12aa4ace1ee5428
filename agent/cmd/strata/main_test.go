package main

import (
	"strings"
	"testing"

	"github.com/strata-state/strata/internal/testbin"
)

// TestUnreachableAgentMessage: a client command that cannot reach the
// agent says "strata:" once and hints at --addr and STRATA_ADDR.
func TestUnreachableAgentMessage(t *testing.T) {
	addr := testbin.FreeAddr(t, false) // closed again: nothing listens there
	_, err := runStrata(t, "--addr", addr, "status")
	if err == nil {
		t.Fatal("status against a closed port succeeded")
	}
	msg := errorText(err)
	if strings.Count(msg, "strata:") != 1 || !strings.HasPrefix(msg, "strata: cannot reach the agent at http://"+addr) {
		t.Errorf("message = %q, want one \"strata:\" prefix naming %s", msg, addr)
	}
	if !strings.Contains(msg, "--addr") || !strings.Contains(msg, "STRATA_ADDR") {
		t.Errorf("message = %q, want a hint about --addr and STRATA_ADDR", msg)
	}
}

// TestExitCodes: usage mistakes, cobra's included, exit 2 as documented in
// docs/CLI.md.
func TestExitCodes(t *testing.T) {
	for _, args := range [][]string{
		{"nosuch"},
		{"reducer", "build"},
		{"agent", "extra"},
		{"keys", "use"},
		{"status", "--nosuchflag"},
	} {
		_, err := runStrata(t, args...)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("strata %v: err %v, exit %d, want 2", args, err, exitCode(err))
		}
	}
}
