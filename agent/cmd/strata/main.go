// Command strata is the strata agent and its command-line client.
//
//	strata agent [--config agent.toml] [--check]   run the daemon
//	strata put|get|del|ls|watch|status            talk to a running agent
//
// Run `strata help` for every command and flag.
package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent/api/client"
)

// version is set at build time with -ldflags "-X main.version=...";
// otherwise buildVersion derives it from the build information.
var version = buildVersion()

// buildVersion is the module version and VCS revision recorded by the Go
// toolchain: "v1.2.3 (rev 0123abcd, modified)" for a build from a module
// or a checkout, "devel (rev …)" for a local build, "dev" when the binary
// carries no build information.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return formatVersion(info)
}

// formatVersion renders a binary's build information as a version.
func formatVersion(info *debug.BuildInfo) string {
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev == "" {
		return v
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return fmt.Sprintf("%s (rev %s%s)", v, rev, modified)
}

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, errorText(err))
		os.Exit(exitCode(err))
	}
}

// exitCode is the exit status of a failed command (docs/CLI.md): 3 for
// something the agent does not have (HTTP 404), 2 for a command-line
// mistake, 1 for everything else.
func exitCode(err error) int {
	var apiErr *client.Error
	if errors.As(err, &apiErr) && apiErr.Status == 404 {
		return 3
	}
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	// cobra's own argument errors: an unknown command, a wrong number of
	// arguments for a command using cobra's validators.
	msg := err.Error()
	if strings.HasPrefix(msg, "unknown command ") || strings.Contains(msg, " arg(s), received ") {
		return 2
	}
	return 1
}

// usageError marks a command-line mistake (exit status 2).
type usageError struct{ error }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "strata",
		Short: "strata: two-tier, contract-checked replicated state for multi-region fleets",
		Long: `strata keeps fleet state in two tiers of gossip-replicated CRDT stores:
fine-grained rows inside each region, and contract-checked coarse records
across regions. This one binary runs the agent and talks to it.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newAgentCmd(), newBenchCmd(), newReducerCmd(), newContractCmd(), newDemoCmd())
	addClientCommands(root)
	strictGroups(root)
	return root
}

// strictGroups makes every command group (a command with subcommands and
// nothing to run itself, such as "strata reducer") refuse an argument that
// names none of its subcommands, with exit status 2 as for the root
// (docs/CLI.md): cobra would print the group's help and exit 0, so a typo
// in a script ("strata reducer biuld") would pass. A group given no
// argument prints its help.
func strictGroups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strictGroups(sub)
	}
	if c == c.Root() || !c.HasSubCommands() || c.Run != nil || c.RunE != nil {
		return // the root already refuses unknown commands
	}
	c.SuggestionsMinimumDistance = 2
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean %q?)", s[0])
		}
		return usageError{fmt.Errorf("%s; run '%s --help' for its commands", msg, cmd.CommandPath())}
	}
	c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// errorText is the line main prints for a failed command: "strata: "
// once (errors from the API client already carry it), and, when the agent
// could not be reached at all, where the client looked and how to point it
// elsewhere.
func errorText(err error) string {
	msg := "strata: " + strings.TrimPrefix(err.Error(), "strata: ")
	var ue *url.Error
	if errors.As(err, &ue) {
		msg += "\n  hint: is the agent running there? Point the client at its [api] addr with --addr HOST:PORT or STRATA_ADDR"
	}
	return msg
}
