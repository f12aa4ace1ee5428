package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/litegen"
	"github.com/strata-state/strata/internal/protogen"
	"github.com/strata-state/strata/internal/recordcheck"
	"github.com/strata-state/strata/internal/rustgen"
)

// newReducerCmd returns `strata reducer`: the commands reducer authors use.
func newReducerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reducer",
		Short: "Generate types for, build and test reducers (WebAssembly plugins)",
		Long: `A reducer turns a region's rows into the region's global records. It is a Go
package (or a Rust crate) built to a WASI reactor module; see sdk/README.md
(sdk/rust/README.md).

  strata reducer gen   --contract DIR -o DIR     generate Go types for a contract
  strata reducer gen   --lang rust --contract DIR -o FILE.rs   ... or Rust types
  strata reducer build DIR -o FILE.wasm          build a reducer module
  strata reducer test  FILE.wasm [--contract DIR] --rows FILE.jsonl [--golden FILE.json]`,
	}
	cmd.AddCommand(newReducerBuildCmd(), newReducerTestCmd(), newReducerGenCmd())
	return cmd
}

func newReducerBuildCmd() *cobra.Command {
	var out, gotool, lang, cargo, rustc string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "build DIR -o FILE.wasm",
		Short: "Build the reducer in DIR (a Go package or a Rust crate) to a WebAssembly module",
		Long: `Build runs GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared in DIR, which
may be a package of a larger module or a module of its own, and shows the
packages as they compile.

A DIR holding a Cargo.toml (or --lang rust) is a Rust crate, built with
cargo build --release --lib --target wasm32-wasip1 (or wasm32-wasi, the
target's name before Rust 1.78); see sdk/rust/README.md. The toolchain is
--cargo and --rustc, else $RUSTC, else the first of the cargo and rustc on
PATH and Debian's in /usr/bin whose rustc has a WASI standard library.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				out = filepath.Base(filepath.Clean(args[0])) + ".wasm"
				if abs, err := filepath.Abs(args[0]); err == nil {
					out = filepath.Base(abs) + ".wasm"
				}
			}
			opts := reducer.BuildOptions{GoTool: gotool, Lang: lang, Cargo: cargo, Rustc: rustc}
			if !quiet {
				opts.Progress = cmd.ErrOrStderr()
			}
			return reducer.Build(cmd.Context(), args[0], out, opts)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "module file to write (default: DIR's name + .wasm)")
	cmd.Flags().StringVar(&gotool, "go", "", `go command to build with (default "go" on PATH)`)
	cmd.Flags().StringVar(&lang, "lang", "", "language of DIR: go or rust (default: rust when DIR has a Cargo.toml, else go)")
	cmd.Flags().StringVar(&cargo, "cargo", "", "cargo command to build Rust with (default: see above)")
	cmd.Flags().StringVar(&rustc, "rustc", "", "rustc command to build Rust with (default: see above)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "do not show progress")
	return cmd
}

// reducerTest holds the flags of `strata reducer test`.
type reducerTest struct {
	contractDir     string
	name            string
	cache           string
	files           []string
	rows            []string
	golden          string
	update          bool
	region          string
	inputs, outputs []string
	timeout         time.Duration
	memoryLimit     int64
	maxOutput       int64
}

func newReducerTestCmd() *cobra.Command {
	var t reducerTest
	cmd := &cobra.Command{
		Use:   "test FILE.wasm [--contract DIR] --rows FILE.jsonl [--golden FILE.json [--update]]",
		Short: "Run a reducer module on rows and check its records against the contract",
		Long: `Test runs the module in the host the agent uses, on the rows of --rows, and
checks every record it writes with the agent's global-write pipeline:
known record type, no unknown fields, protovalidate rules, key, limits, and
the leak guard (no value of a regional_only field of the input rows). Each
failure is reported by record and field.

--rows is protojson rows, one per line ('#' comments allowed), of the table
named TABLE=FILE, or of the table named like the file (machines.jsonl), or
of the contract's only table. Repeat it for several tables.

With --golden, the records are compared with the golden file (a JSON array
of {"record", "key", "value"}, as --update writes it; JSON lines are read
too); --update rewrites it instead.

Exit status: 0 when the run succeeds and every record passes (and matches
the golden file), 1 otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return t.run(cmd.Context(), args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&t.contractDir, "contract", ".", "contract import root (also --contracts)")
	flagSpelling(cmd, "contracts", "contract")
	f.StringVar(&t.name, "name", "", "reducer name in messages (default: the module file's name)")
	f.StringVar(&t.cache, "cache", defaultCache(), "directory of the compilation cache (empty: none)")
	f.StringSliceVar(&t.files, "files", nil, "contract files to compile, relative to --contract (default: every .proto under it)")
	f.StringArrayVar(&t.rows, "rows", nil, "[TABLE=]FILE.jsonl: input rows (repeatable)")
	f.StringVar(&t.golden, "golden", "", "golden file of the expected records")
	f.BoolVar(&t.update, "update", false, "write the records to --golden instead of comparing")
	f.StringVar(&t.region, "region", "local", "region of the rows")
	f.StringSliceVar(&t.inputs, "inputs", nil, "input tables, in order (default: the tables of --rows)")
	f.StringSliceVar(&t.outputs, "outputs", nil, "records the reducer may write (default: every record of the contract)")
	f.DurationVar(&t.timeout, "timeout", reducer.DefaultTimeout, "run timeout")
	f.Int64Var(&t.memoryLimit, "memory-limit", reducer.DefaultMemoryLimit, "memory limit in bytes")
	f.Int64Var(&t.maxOutput, "max-output", reducer.DefaultMaxOutput, "output limit in bytes")
	return cmd
}

func (t *reducerTest) run(ctx context.Context, wasm string, stdout, stderr io.Writer) error {
	if t.update && t.golden == "" {
		return usageError{errors.New("--update needs --golden")}
	}
	c, err := compileContractDir(ctx, t.contractDir, t.files)
	if err != nil {
		return err
	}
	var tables []recordcheck.Table
	for _, spec := range t.rows {
		name, path, ok := strings.Cut(spec, "=")
		if !ok {
			path, name = spec, tableForFile(c, spec)
		}
		if name == "" {
			return usageError{fmt.Errorf("--rows %s: name the table, as TABLE=%s (the contract has several)", spec, spec)}
		}
		rows, err := recordcheck.ReadRowsFile(c, name, path)
		if err != nil {
			return err
		}
		tables = append(tables, recordcheck.Table{Name: name, Rows: rows})
	}
	inputs := t.inputs
	if len(inputs) == 0 {
		for _, tb := range tables {
			if !slices.Contains(inputs, tb.Name) {
				inputs = append(inputs, tb.Name)
			}
		}
	}
	if len(inputs) == 0 {
		return usageError{errors.New("no input tables: give --rows or --inputs")}
	}
	outputs := t.outputs
	if len(outputs) == 0 {
		for _, s := range c.Records() {
			outputs = append(outputs, s.Name)
		}
	}

	h, err := reducer.NewHost(reducer.HostOptions{CacheDir: t.cache, Logger: slog.New(dropErrors{slog.NewTextHandler(stderr, nil)})})
	if err != nil {
		return err
	}
	defer h.Close(context.Background())
	name := t.name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(wasm), filepath.Ext(wasm))
	}
	r, err := h.Load(ctx, reducer.Config{Name: name, Wasm: wasm, Inputs: inputs, Outputs: outputs,
		Timeout: t.timeout, MemoryLimit: t.memoryLimit, MaxOutput: t.maxOutput})
	if err != nil {
		return err
	}
	defer r.Close(context.Background())
	var in []reducer.Table
	rowsIn := 0
	for _, tb := range tables {
		in = append(in, reducer.Table{Name: tb.Name, Rows: tb.Rows})
		rowsIn += len(tb.Rows)
	}
	res, err := r.Run(ctx, t.region, in)
	if err != nil {
		return err
	}
	records := make([]recordcheck.Record, len(res.Records))
	for i, rec := range res.Records {
		records[i] = recordcheck.Record{Name: rec.Name, Key: rec.Key, Value: rec.Value}
	}
	fmt.Fprintf(stdout, "%s: %s in, %s out in %s\n", name, plural(rowsIn, "row"), plural(len(records), "record"), res.Duration.Round(time.Microsecond))

	problems, err := recordcheck.Check(c, t.region, tables, records)
	if err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, "  rejected:", p)
	}
	failed := len(problems) > 0
	diffs := 0

	if t.golden != "" {
		if t.update {
			b, err := recordcheck.Golden(c, records)
			if err != nil {
				return err
			}
			if err := os.WriteFile(t.golden, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrote %s\n", t.golden)
		} else {
			want, err := os.ReadFile(t.golden)
			if err != nil {
				return fmt.Errorf("--golden: %w (create it with --update)", err)
			}
			found, err := recordcheck.CompareGolden(c, records, want)
			if err != nil {
				return err
			}
			for _, d := range found {
				fmt.Fprintln(stdout, "  golden:", d)
			}
			diffs = len(found)
			if diffs == 0 {
				fmt.Fprintf(stdout, "golden: %s matches (%s)\n", t.golden, plural(len(records), "record"))
			} else {
				fmt.Fprintf(stdout, "golden: %s differs (%s)\n", t.golden, plural(diffs, "difference"))
			}
			failed = failed || diffs > 0
		}
	}
	if failed {
		why := plural(len(problems), "record") + " rejected by the contract"
		if t.golden != "" && !t.update {
			why += ", " + plural(diffs, "difference") + " from the golden file"
		}
		return fmt.Errorf("reducer %s: test failed: %s", name, why)
	}
	fmt.Fprintln(stdout, "ok: every record passes the contract")
	return nil
}

// defaultCache is the compilation cache of `strata reducer test`:
// $XDG_CACHE_HOME/strata/reducer-test, so that testing a module again does
// not compile it again.
func defaultCache() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "strata", "reducer-test")
}

// tableForFile picks the table of a rows file: the table named like the
// file, or the contract's only table.
func tableForFile(c *contracts.Contract, path string) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if _, ok := c.Table(base); ok {
		return base
	}
	if ts := c.Tables(); len(ts) == 1 {
		return ts[0].Name
	}
	return ""
}

// compileContractDir compiles files of dir, or every .proto file under dir.
func compileContractDir(ctx context.Context, dir string, files []string) (*contracts.Contract, error) {
	if len(files) == 0 {
		var err error
		if files, err = protoFiles(dir); err != nil {
			return nil, err
		}
	}
	c, err := contracts.CompileDir(ctx, dir, files)
	if err != nil {
		return nil, fmt.Errorf("contract %s: %w", dir, err)
	}
	return c, nil
}

// protoFiles lists the .proto files under dir, as import paths.
func protoFiles(dir string) ([]string, error) {
	var files []string
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return fs.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".proto") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("contract %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("contract %s: no .proto files", dir)
	}
	return files, nil
}

func newReducerGenCmd() *cobra.Command {
	var contractDir, out, pkg, lang string
	var files []string
	var protocGenGo bool
	cmd := &cobra.Command{
		Use:   "gen --contract DIR -o DIR [--package NAME] [FILE.proto...]",
		Short: "Generate the Go (or Rust) types of a contract for reducers",
		Long: `Gen writes the Go types of the contract's messages that reducers use
(reflection-free, see sdk/README.md) into one package directory, one
.strata.go file per .proto file. FILE.proto are import paths relative to
--contract (default: every .proto under it).

With --protoc-gen-go it writes protoc-gen-go's types instead (.pb.go files
laid out by import path under -o), for Go programs outside reducers.

With --lang rust it writes the Rust types for the crate strata-reducer
(sdk/rust/README.md) into one Rust module file, -o FILE.rs.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				files = args
			}
			if len(files) == 0 {
				var err error
				if files, err = protoFiles(contractDir); err != nil {
					return err
				}
			}
			if out == "" {
				return usageError{errors.New("-o DIR is required")}
			}
			ctx := cmd.Context()
			switch lang {
			case "go":
			case "rust":
				if protocGenGo || pkg != "" {
					return usageError{errors.New("--lang rust takes neither --protoc-gen-go nor --package")}
				}
				src, err := rustgen.Generate(ctx, os.DirFS(contractDir), files)
				if err != nil {
					return err
				}
				if dir := filepath.Dir(out); dir != "." {
					if err := os.MkdirAll(dir, 0o755); err != nil {
						return err
					}
				}
				if err := os.WriteFile(out, src, 0o644); err != nil {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "wrote", out)
				return nil
			default:
				return usageError{fmt.Errorf("--lang %q: want go or rust", lang)}
			}
			if protocGenGo {
				gen, err := protogen.Generate(ctx, os.DirFS(contractDir), files, protogen.Options{})
				if err != nil {
					return err
				}
				return protogen.WriteFiles(out, gen)
			}
			if pkg == "" {
				abs, err := filepath.Abs(out)
				if err != nil {
					return err
				}
				pkg = strings.ReplaceAll(filepath.Base(abs), "-", "")
			}
			gen, err := litegen.Generate(ctx, os.DirFS(contractDir), files, litegen.Options{Package: pkg})
			if err != nil {
				return err
			}
			var pg []protogen.File
			for _, f := range gen {
				pg = append(pg, protogen.File{Name: f.Name, Content: f.Content})
				fmt.Fprintln(cmd.ErrOrStderr(), "wrote", filepath.Join(out, f.Name))
			}
			return protogen.WriteFiles(out, pg)
		},
	}
	cmd.Flags().StringVar(&contractDir, "contract", ".", "contract import root (also --contracts)")
	flagSpelling(cmd, "contracts", "contract")
	cmd.Flags().StringVarP(&out, "output", "o", "", "output package directory (Go), or module file (Rust)")
	cmd.Flags().StringVar(&lang, "lang", "go", "language of the types: go or rust")
	cmd.Flags().StringVar(&pkg, "package", "", "Go package name (default: the output directory's name)")
	cmd.Flags().BoolVar(&protocGenGo, "protoc-gen-go", false, "generate protoc-gen-go's types instead")
	return cmd
}

// dropErrors passes on the reducer host's logs except those carrying an
// error ("reducer run failed"): the run's error is what reducer test
// returns, and it is printed once, as the command's error. The guest's own
// logs, and the host's other warnings, are kept.
type dropErrors struct{ slog.Handler }

func (d dropErrors) Handle(ctx context.Context, r slog.Record) error {
	carriesErr := false
	r.Attrs(func(a slog.Attr) bool {
		_, carriesErr = a.Value.Any().(error)
		return !carriesErr
	})
	if carriesErr {
		return nil
	}
	return d.Handler.Handle(ctx, r)
}

func (d dropErrors) WithAttrs(as []slog.Attr) slog.Handler {
	return dropErrors{d.Handler.WithAttrs(as)}
}

func (d dropErrors) WithGroup(name string) slog.Handler { return dropErrors{d.Handler.WithGroup(name)} }
