package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/contracts/check"
)

// ruleConfigMissing is the warning of a check whose --config file does
// not exist.
const ruleConfigMissing = "CONFIG_MISSING"

// errCheckFailed is returned when a contract check found errors (or, with
// --strict, warnings): exit status 1, the report says why.
var errCheckFailed = errors.New("contract check failed")

func newContractCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "contract",
		Short: "Check and build contracts: the contract gate for CI",
		Long: `Check a contract before it is deployed (strata contract check), and save a
compiled contract for later compatibility checks (strata contract build).`,
	}
	cmd.AddCommand(newContractCheckCmd(), newContractBuildCmd())
	return cmd
}

// contractSource is the flags that say which contract to compile.
type contractSource struct {
	dir, configPath string
}

func (s *contractSource) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.dir, "contracts", "contracts", "contract import root: every .proto file under it is compiled (also --contract)")
	flagSpelling(cmd, "contract", "contracts")
	cmd.Flags().StringVarP(&s.configPath, "config", "c", "", "agent.toml: take the contract files (and, for check, the reducers) from it")
}

// load returns the contract directory, the files to compile (nil: all) and
// the configuration, when --config is given. --contracts, when given too,
// overrides the configuration's contracts.
func (s *contractSource) load(cmd *cobra.Command) (dir string, files []string, cfg *config.Config, err error) {
	dir = s.dir
	if s.configPath == "" {
		return dir, nil, nil, nil
	}
	cfg, err = config.Load(s.configPath)
	if err != nil {
		return "", nil, nil, usageError{err}
	}
	if cmd.Flags().Changed("contracts") || cmd.Flags().Changed("contract") {
		return dir, nil, cfg, nil
	}
	return cfg.Contracts.Dir, cfg.Contracts.Files, cfg, nil
}

func newContractCheckCmd() *cobra.Command {
	var (
		src      contractSource
		against  string
		format   string
		strict   bool
		fixtures []string
		accept   string
		runCheck func(*cobra.Command) error
	)
	cmd := &cobra.Command{
		Use:   "check [--contracts DIR] [--config agent.toml] [--against REF] [--fixtures NAME=DIR]... [--accept FILE] [--format text|json|github] [--strict]",
		Short: "Check a contract: compile, strata's rules, compatibility, reducer conformance",
		Long: `Check a contract the way CI should before it is deployed:

 1. compile it, reporting every error with file:line:col;
 2. check strata's rules (table and record names and keys, no regional data
    in records) and lint basics (versioned packages, enum zero values, as
    warnings);
 3. with --against, compare it with its previous version, given as a
    directory, a descriptor set file (strata contract build), a git
    revision (git:v1.4.0) or, for a pull request, the commit its branch
    was cut from (git-merge-base:origin/main), and report breaking changes;
 4. with --config, run each reducer's fixtures in the reducer host and
    validate every output record through the agent's own pipeline, leak
    guard included, and diff it against the fixture's want.jsonl
    (--fixtures NAME=DIR takes reducer NAME's fixtures from DIR).

Every finding has a rule id, a severity, a position and a fix hint; the
rules and the JSON schema are in docs/CONTRACT_CHECK.md. Exit status: 0
clean, 1 on errors (and, with --strict, on warnings), 2 on usage problems.`,
		Example: `  strata contract check
  strata contract check --contracts contracts --against git-merge-base:origin/main --format github
  strata contract check --config agent.toml --against contract.binpb --strict
  strata contract check --config ci.toml --fixtures app-regions=testdata/app-regions`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return annotate(cmd, format, runCheck(cmd))
		},
	}
	runCheck = func(cmd *cobra.Command) error {
		switch format {
		case check.FormatText, check.FormatJSON, check.FormatGitHub:
		default:
			return usageError{fmt.Errorf("--format %q: use text, json or github", format)}
		}
		// A repository without the agent.toml a shared CI workflow names
		// is checked without it, with a warning: its contracts still are.
		configMissing := ""
		if _, err := os.Stat(src.configPath); src.configPath != "" && errors.Is(err, fs.ErrNotExist) {
			configMissing, src.configPath = src.configPath, ""
		}
		dir, files, cfg, err := src.load(cmd)
		if err != nil {
			return err
		}
		opts := check.Options{Dir: dir, Files: files, Against: against, Accept: accept}
		dirs, err := fixtureDirs(fixtures, cfg)
		if err != nil {
			return err
		}
		if cfg != nil {
			opts.Reducers = checkReducers(cfg, dirs)
			opts.ConfigFile = src.configPath
			if len(opts.Reducers) > 0 {
				host, closeHost, err := newCheckHost(cmd, cfg)
				if err != nil {
					return err
				}
				defer closeHost()
				opts.Host = host
			}
		}
		report, err := check.Run(cmd.Context(), opts)
		if err != nil {
			return asUsage(err)
		}
		if configMissing != "" {
			report.Findings = append([]check.Finding{{Finding: contracts.Finding{
				Rule: ruleConfigMissing, Severity: contracts.SeverityWarning,
				Message: fmt.Sprintf("--config %s: no such file: checked every .proto file under %s, and no reducers", configMissing, dir),
				Hint:    "give the agent.toml that lists the contract files and reducers, or drop --config",
			}}}, report.Findings...)
		}
		if err := report.Write(cmd.OutOrStdout(), format, strict); err != nil {
			return err
		}
		if report.Failed(strict) {
			return errCheckFailed
		}
		return nil
	}
	cmd.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return annotate(cmd, format, usageError{err})
	})
	src.flags(cmd)
	cmd.Flags().StringVar(&against, "against", "", "previous version to check compatibility with: a directory, a descriptor set file, git:REF (that revision) or git-merge-base:REF (where HEAD branched from REF: for pull requests)")
	cmd.Flags().StringVar(&format, "format", check.FormatText, "output format: text, json or github (workflow annotations)")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on warnings too")
	cmd.Flags().StringVar(&accept, "accept", "", "file of breaking changes accepted on purpose, by rule and element (default: "+check.AcceptFile+" if it exists)")
	cmd.Flags().StringArrayVar(&fixtures, "fixtures", nil, "NAME=DIR: take reducer NAME's fixtures from DIR instead of its testdata directory (repeatable)")
	return cmd
}

// checkReducers returns the reducers of cfg as the contract check takes
// them; dirs overrides their fixture directories by name.
func checkReducers(cfg *config.Config, dirs map[string]string) []check.Reducer {
	var out []check.Reducer
	for _, r := range cfg.Reducers {
		out = append(out, check.Reducer{
			Name: r.Name, Source: r.Source, Wasm: r.Wasm,
			Inputs: r.Inputs, Outputs: r.Outputs,
			Fixtures: cmp.Or(dirs[r.Name], check.FixturesDir(r.Source, r.Wasm)),
		})
	}
	return out
}

// reducerConfigError reports, for `strata agent --check`, every reducer
// input that is not a table of c and every output that is not a record,
// each with its fix; nil when there is none.
func reducerConfigError(path string, c *contracts.Contract, cfg *config.Config) error {
	findings := check.ReducerConfig(c, checkReducers(cfg, nil))
	if len(findings) == 0 {
		return nil
	}
	var b strings.Builder
	for i, f := range findings {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s: %s\n  fix: %s", cmp.Or(path, "agent.toml"), f.Message, f.Hint)
	}
	return errors.New(b.String())
}

// annotate returns err, after writing it as a GitHub Actions error
// annotation when the format is github: a usage problem must show in the
// workflow's summary as findings do. A failed check (errCheckFailed) has
// its findings annotated already.
func annotate(cmd *cobra.Command, format string, err error) error {
	if err != nil && format == check.FormatGitHub && !errors.Is(err, errCheckFailed) {
		_ = check.WriteGitHubError(cmd.OutOrStdout(), err)
	}
	return err
}

// fixtureDirs parses --fixtures NAME=DIR flags against the configured
// reducers.
func fixtureDirs(flags []string, cfg *config.Config) (map[string]string, error) {
	dirs := map[string]string{}
	for _, f := range flags {
		name, dir, ok := strings.Cut(f, "=")
		if !ok || name == "" || dir == "" {
			return nil, usageError{fmt.Errorf("--fixtures %q: want NAME=DIR, e.g. app-regions=testdata/app-regions", f)}
		}
		if cfg == nil || !slices.ContainsFunc(cfg.Reducers, func(r config.Reducer) bool { return r.Name == name }) {
			return nil, usageError{fmt.Errorf("--fixtures %q: no reducer %q in the --config file", f, name)}
		}
		dirs[name] = dir
	}
	return dirs, nil
}

func newContractBuildCmd() *cobra.Command {
	var (
		src contractSource
		out string
	)
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Compile a contract into a descriptor set file, for later checks",
		Long: `Compile a contract and write it, with its imports and source positions, as a
binary FileDescriptorSet (what protoc --include_imports --include_source_info
writes). A later "strata contract check --against FILE" compares with it, for
example with the contract of the release running in production.`,
		Example: `  strata contract build -o contract.binpb
  strata contract build --config agent.toml -o contract.binpb`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{errors.New("-o is required: the file to write, e.g. -o contract.binpb")}
			}
			dir, files, _, err := src.load(cmd)
			if err != nil {
				return err
			}
			if len(files) == 0 {
				report, err := check.Run(cmd.Context(), check.Options{Dir: dir})
				if err != nil {
					return asUsage(err)
				}
				files = report.Files
			}
			c, err := contracts.CompileDir(cmd.Context(), dir, files)
			var ce *contracts.CompileError
			if errors.As(err, &ce) {
				return fmt.Errorf("contract %s does not compile (run strata contract check for details):\n%w", dir, err)
			}
			if err != nil {
				return err
			}
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.FileDescriptorSet())
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			// Count files as the check does (the contract's own), and the
			// imports the set carries besides.
			set := c.FileDescriptorSet()
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %s from %s, with %s\n", out,
				plural(len(files), "file"), filepath.Clean(dir), plural(len(set.GetFile())-len(files), "import"))
			return nil
		},
	}
	src.flags(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the descriptor set to (required)")
	return cmd
}

// noArgs refuses arguments as a usage error (exit status 2).
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}

// asUsage marks the check's usage errors for exit status 2.
func asUsage(err error) error {
	var ue *check.UsageError
	if errors.As(err, &ue) {
		return usageError{err}
	}
	return err
}

// newCheckHost returns the reducer host the conformance check runs
// reducers in — the agent's own (agent/reducer), so that the check sees
// what the agent would — and a function that releases it. Builds of Source
// reducers and wazero's compiled code are cached under the user's cache
// directory (strata/contract-check), so a second check starts warm; build
// progress and errors go to stderr.
func newCheckHost(cmd *cobra.Command, _ *config.Config) (check.Host, func(), error) {
	cacheDir := ""
	if dir, err := os.UserCacheDir(); err == nil {
		cacheDir = filepath.Join(dir, "strata", "contract-check")
	}
	h, err := reducer.NewHost(reducer.HostOptions{
		CacheDir:    cacheDir,
		Logger:      slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		BuildOutput: cmd.ErrOrStderr(),
	})
	if err != nil {
		return nil, nil, err
	}
	ch := reducer.NewCheckHost(h)
	return ch, func() {
		ctx := context.WithoutCancel(cmd.Context())
		_ = ch.Close(ctx)
		_ = h.Close(ctx)
	}, nil
}

// plural writes n and word, with an "s" unless n is 1: "1 file", "3 files".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// flagSpelling adds alias to cmd as a hidden second spelling of the string
// flag name (same variable): the reducer commands take --contract and the
// contract commands --contracts, and either spelling works on both.
func flagSpelling(cmd *cobra.Command, alias, name string) {
	f := cmd.Flags().Lookup(name)
	cmd.Flags().Var(f.Value, alias, "same as --"+name)
	cmd.Flags().MarkHidden(alias)
}
