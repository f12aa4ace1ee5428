package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"

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

// TestUnknownSubcommandExits2 walks the whole command tree: every command
// group refuses an argument that is none of its subcommands with exit
// status 2 (docs/CLI.md), naming it, and prints its help when given none.
func TestUnknownSubcommandExits2(t *testing.T) {
	var groups []*cobra.Command
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() {
			groups = append(groups, c)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
	if len(groups) < 4 {
		t.Fatalf("found only %d command groups", len(groups))
	}
	for _, g := range groups {
		path := strings.Fields(g.CommandPath())[1:] // without "strata"
		out, err := runStrata(t, append(path, "bogus")...)
		if err == nil {
			t.Errorf("strata %s bogus: exit 0, output %.80q; want exit 2, unknown command", strings.Join(path, " "), out)
		} else if exitCode(err) != 2 || !strings.Contains(err.Error(), `unknown command "bogus"`) {
			t.Errorf("strata %s bogus: exit %d, err %v; want exit 2, unknown command", strings.Join(path, " "), exitCode(err), err)
		}
		if len(path) == 0 {
			continue
		}
		out, err = runStrata(t, path...)
		if err != nil || !strings.Contains(out, "Available Commands") {
			t.Errorf("strata %s: err %v, output %.80q; want its help", strings.Join(path, " "), err, out)
		}
	}
}
