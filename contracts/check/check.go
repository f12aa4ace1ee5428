package check

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/strata-state/strata/contracts"
)

// Options say what to check.
type Options struct {
	// Dir is the contract's import root on disk, e.g. "contracts".
	// Required.
	Dir string
	// Files are the files to compile, as import paths relative to Dir.
	// Empty means every .proto file under Dir (directories whose name
	// starts with "." excepted).
	Files []string
	// Against is the previous version to check compatibility with: a
	// directory (every .proto file under it is compiled), a descriptor set
	// file written by `strata contract build` or `protoc
	// --include_imports`, or GitPrefix and a git revision (e.g.
	// "git:main"), read from the repository holding Dir. Empty: no
	// compatibility check.
	Against string
	// Reducers are checked for conformance when Host is set: each one's
	// fixtures run in the host and every output record goes through the
	// agent's validation pipeline. Empty: no conformance check.
	Reducers []Reducer
	// Host runs reducers; nil skips the conformance check (reported as a
	// warning when there are reducers to check). The reducers' inputs and
	// outputs are checked against the contract either way.
	Host Host
	// ConfigFile is the agent.toml the reducers come from, for the
	// positions of findings about their configuration; "" when none.
	ConfigFile string
	// Accept is the file of breaking changes accepted on purpose (see
	// Acceptance). Empty: AcceptFile in the working directory, if it
	// exists.
	Accept string
}

// Finding is a contracts.Finding placed on disk for display.
type Finding struct {
	contracts.Finding
	// Path is the file the finding points into, relative to the working
	// directory when Options.Dir is (e.g. "contracts/fleet/v1/global.proto"),
	// with forward slashes; empty when it points nowhere.
	Path string
}

// Report is the outcome of Run.
type Report struct {
	// Dir and Against are the options checked.
	Dir, Against string
	// AgainstCommit is the commit a GitMergeBasePrefix Against resolved
	// to; "" for other forms.
	AgainstCommit string
	// Files are the import paths compiled, sorted.
	Files []string
	// Reducers are the names of the reducers whose fixtures ran.
	Reducers []string
	// Findings are sorted by path, position and rule.
	Findings []Finding
	// Accepted are the findings the accept file accepted, in the same
	// order: reported, but they fail nothing.
	Accepted []Accepted
	// AcceptFile is the accept file read, or "".
	AcceptFile string
}

// Count returns the number of errors and of warnings in r.
func (r *Report) Count() (errs, warnings int) {
	for _, f := range r.Findings {
		if f.Severity == contracts.SeverityError {
			errs++
		} else {
			warnings++
		}
	}
	return errs, warnings
}

// Failed reports whether r fails the check: on any error, and with strict
// on any warning too.
func (r *Report) Failed(strict bool) bool {
	errs, warnings := r.Count()
	return errs > 0 || strict && warnings > 0
}

// Rule ids of the check's own findings.
const (
	ruleAgainstMissing = "AGAINST_MISSING" // nothing to compare with
	ruleNoHost         = "CONFORMANCE_SKIPPED"
)

// UsageError is an error of Run that is the caller's to fix: a directory or
// file that does not exist, a bad git revision, an old version that does
// not compile. Problems with the contract itself are findings, not errors.
type UsageError struct{ Err error }

// Error returns the cause's message.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *UsageError) Unwrap() error { return e.Err }

func usage(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Run checks a contract: it compiles it (every error, with positions),
// applies strata's rules and the lint warnings, compares it with
// opts.Against, and runs the reducers' fixtures through the validation
// pipeline. The error, a *UsageError, is for problems with the options;
// everything wrong with the contract or the reducers is in the Report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Dir == "" {
		return nil, usage("no contract directory")
	}
	if st, err := os.Stat(opts.Dir); err != nil || !st.IsDir() {
		return nil, usage("contract directory %s: %v", opts.Dir, orNotDir(err))
	}
	acceptFile, acceptList, err := loadAccept(opts.Accept)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	r := &Report{Dir: opts.Dir, Against: opts.Against}
	v, err := compile(ctx, os.DirFS(opts.Dir), opts.Files)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, usage("%s: %v", opts.Dir, err)
	}
	r.Files = v.roots
	for _, d := range v.diags {
		r.add(contracts.FindingOf(d), opts.Dir)
	}
	if v.files != nil {
		for _, f := range contracts.Lint(v.files) {
			r.add(f, opts.Dir)
		}
	}

	if opts.Against != "" && v.files != nil {
		old, err := loadAgainst(ctx, opts.Against, opts.Dir)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &UsageError{Err: err}
		}
		r.AgainstCommit = old.base
		if old.missing {
			r.add(contracts.Finding{
				Rule: ruleAgainstMissing, Severity: contracts.SeverityWarning,
				Message: fmt.Sprintf("%s has no .proto files at %s: nothing to compare with", opts.Dir, opts.Against),
				Hint:    "a new contract needs no compatibility check; check the revision if this is not one",
			}, opts.Dir)
		}
		for _, f := range contracts.Compare(old.files, v.files) {
			dir := opts.Dir
			if f.Old {
				dir = old.dir
			}
			r.add(f, dir)
		}
	}

	if len(opts.Reducers) > 0 && v.contract != nil {
		bad := r.reducerConfig(v.contract, opts.Reducers, opts.ConfigFile)
		opts.Reducers = slices.DeleteFunc(slices.Clone(opts.Reducers), func(red Reducer) bool { return bad[red.Name] })
	}
	if len(opts.Reducers) > 0 {
		switch {
		case v.contract == nil:
			// The contract does not compile: the errors above say why, and
			// no record can be validated.
		case opts.Host == nil:
			r.add(contracts.Finding{
				Rule: ruleNoHost, Severity: contracts.SeverityWarning,
				Message: fmt.Sprintf("%d reducer(s) configured, but this build has no reducer host: conformance not checked", len(opts.Reducers)),
				Hint:    "build strata with the reducer host to run the reducers' fixtures",
			}, "")
		default:
			if err := conformance(ctx, r, v.contract, opts.Reducers, opts.Host); err != nil {
				return nil, err
			}
		}
	}
	r.accept(acceptFile, acceptList, opts.Against != "" && v.files != nil)
	r.fillHints()
	r.sort()
	return r, nil
}

// reducerConfig adds the findings of ReducerConfig, placed in the config
// file, and returns the names of the reducers they are about: their
// fixtures cannot run.
func (r *Report) reducerConfig(c *contracts.Contract, reducers []Reducer, configFile string) map[string]bool {
	var data []byte
	if configFile != "" {
		data, _ = os.ReadFile(configFile)
	}
	bad := map[string]bool{}
	for _, p := range reducerConfig(c, reducers) {
		bad[p.reducer] = true
		if data != nil {
			p.Line = configLine(data, p.reducer, p.key)
		}
		r.addAt(p.Finding, configFile)
	}
	return bad
}

func orNotDir(err error) error {
	if err != nil {
		return err
	}
	return errors.New("not a directory")
}

// add appends f, placing its file under dir.
func (r *Report) add(f contracts.Finding, dir string) {
	out := Finding{Finding: f}
	if f.File != "" {
		out.Path = filepath.ToSlash(filepath.Join(dir, filepath.FromSlash(f.File)))
	}
	r.Findings = append(r.Findings, out)
}

// sort orders the findings, and the accepted ones, by path, position,
// rule and message.
func (r *Report) sort() {
	slices.SortStableFunc(r.Findings, compareFindings)
	slices.SortStableFunc(r.Accepted, func(a, b Accepted) int { return compareFindings(a.Finding, b.Finding) })
}

func compareFindings(a, b Finding) int {
	return cmp.Or(
		strings.Compare(a.Path, b.Path),
		cmp.Compare(a.Line, b.Line),
		cmp.Compare(a.Col, b.Col),
		strings.Compare(a.Rule, b.Rule),
		strings.Compare(a.Message, b.Message),
	)
}
