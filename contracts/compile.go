package contracts

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"github.com/bufbuild/protocompile/reporter"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Diagnostic is one problem found in a contract, at a source position.
type Diagnostic struct {
	// File is the import path of the file, e.g. "fleet/v1/global.proto".
	File string
	// Line and Col are 1-based; both are 0 when the problem has no position
	// (for example a file that does not exist).
	Line, Col int
	// Msg says what is wrong, without the position.
	Msg string
	// Rule is the id of the rule broken, e.g. "COMPILE" for the protobuf
	// compiler's errors or "SCHEMA_KEY" for a bad key; see
	// docs/CONTRACT_CHECK.md for the list.
	Rule string
}

// String formats d as "file:line:col: message", or "file: message" when d has
// no position.
func (d Diagnostic) String() string {
	if d.File == "" {
		return d.Msg
	}
	return d.where() + ": " + d.Msg
}

// where formats d's position as "file:line:col", or "file".
func (d Diagnostic) where() string {
	if d.Line > 0 {
		return d.File + ":" + strconv.Itoa(d.Line) + ":" + strconv.Itoa(d.Col)
	}
	return d.File
}

// CompileError reports every problem Compile found in a contract: syntax and
// link errors from the protobuf compiler, and violations of strata's own rules
// (see Compile). Errors holds at least one Diagnostic, sorted by file and
// position.
type CompileError struct {
	Errors []Diagnostic
	// Files holds the compiled files, each after its dependencies, when the
	// contract is valid protobuf and only strata's rules failed; nil when
	// the protobuf compiler failed. A compatibility check can still compare
	// them with an older version.
	Files []protoreflect.FileDescriptor
}

// Error returns one "file:line:col: message" line per diagnostic.
func (e *CompileError) Error() string {
	var b strings.Builder
	for i, d := range e.Errors {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
	}
	return b.String()
}

func newCompileError(diags []Diagnostic) *CompileError {
	slices.SortStableFunc(diags, func(a, b Diagnostic) int {
		return cmp.Or(
			strings.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col),
			strings.Compare(a.Msg, b.Msg),
		)
	})
	diags = slices.CompactFunc(diags, func(a, b Diagnostic) bool { return a == b })
	return &CompileError{Errors: diags}
}

// CompileDir is Compile with the contract root dir on the local file system.
func CompileDir(ctx context.Context, dir string, files []string) (*Contract, error) {
	return Compile(ctx, os.DirFS(dir), files)
}

// Compile compiles the contract made of files (import paths such as
// "fleet/v1/regional.proto") and everything they import, and checks it.
//
// Imports resolve, in this order, from fsys (the contract's root; may be
// nil), from the OptionsFile embedded in this package, from the standard
// imports that ship with protoc (google/protobuf/*.proto), and for
// "buf/validate/validate.proto" from protovalidate's Go package. A contract
// therefore needs only its own files.
//
// Besides protobuf's rules, Compile enforces strata's, each reported with the
// position of the offending declaration:
//   - a table or record name is set, well formed (a letter, then letters,
//     digits, '_' or '-'; at most 64 characters) and unique across the
//     contract's tables and records;
//   - a key lists at least one field; each exists, is listed once and is a
//     singular string, integer, bool or enum field;
//   - a message is not both a table and a record;
//   - a record neither is nor contains, through message fields at any depth,
//     the message of a table, and has no field marked regional_only, at any
//     depth (the static half of the leak guard);
//   - the protovalidate rules of every table and record compile.
//
// All problems are collected, not only the first: the error is then a
// *CompileError. Compile returns ctx.Err() if ctx is done first.
func Compile(ctx context.Context, fsys fs.FS, files []string) (*Contract, error) {
	if len(files) == 0 {
		return nil, ErrNoFiles
	}
	user := &resolver{fsys: fsys, found: map[string]bool{}}
	res := protocompile.WithStandardImports(user)

	// A root file that does not exist is not a positioned error, and
	// protocompile would stop at it. Report it here and compile the rest,
	// so the user sees every problem at once.
	var diags []Diagnostic
	var roots []string
	for _, f := range files {
		name := path.Clean(f)
		if slices.Contains(roots, name) {
			continue
		}
		if !fs.ValidPath(name) {
			diags = append(diags, Diagnostic{File: f, Msg: "not a slash-separated path relative to the contract root", Rule: ruleCompile})
			continue
		}
		sr, err := res.FindFileByPath(name)
		if err != nil {
			msg := "file not found"
			if !errors.Is(err, fs.ErrNotExist) {
				msg = err.Error()
			}
			diags = append(diags, Diagnostic{File: f, Msg: msg, Rule: ruleCompile})
			continue
		}
		if c, ok := sr.Source.(io.Closer); ok {
			_ = c.Close()
		}
		roots = append(roots, name)
	}

	linked, more, err := compileFiles(ctx, res, roots)
	if err != nil {
		return nil, err
	}
	diags = append(diags, more...)
	if len(diags) > 0 {
		// protocompile reports some errors only as the result of the file
		// they occur in (an import that does not resolve), and returns one
		// error for the whole run. Compiling each of the contract's own
		// files alone surfaces those too; duplicates are dropped.
		for _, name := range user.foundFiles() {
			_, more, err := compileFiles(ctx, res, []string{name})
			if err != nil {
				return nil, err
			}
			diags = append(diags, more...)
		}
		return nil, newCompileError(diags)
	}
	fds := make([]protoreflect.FileDescriptor, len(linked))
	for i, f := range linked {
		fds[i] = f
	}
	return newContract(fds)
}

// compileFiles compiles names in one protocompile run and returns every
// problem it found as diagnostics. The error is ctx's, if it is done.
func compileFiles(ctx context.Context, res protocompile.Resolver, names []string) (linker.Files, []Diagnostic, error) {
	var (
		mu    sync.Mutex
		diags []Diagnostic
	)
	comp := protocompile.Compiler{
		Resolver: res,
		Reporter: reporter.NewReporter(func(err reporter.ErrorWithPos) error {
			mu.Lock()
			defer mu.Unlock()
			diags = append(diags, diagnosticOf(err))
			return nil // keep going: report every error
		}, nil),
		// Standard source info keeps comments and positions, for
		// FileDescriptorSet and for positions in strata's own checks; the
		// extra option locations point into `key: [...]` lists.
		SourceInfoMode: protocompile.SourceInfoStandard | protocompile.SourceInfoExtraOptionLocations,
	}
	linked, err := comp.Compile(ctx, names...)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, nil, ctxErr
	}
	mu.Lock()
	defer mu.Unlock()
	var ewp reporter.ErrorWithPos
	switch {
	case err == nil, errors.Is(err, reporter.ErrInvalidSource):
	case errors.As(err, &ewp):
		diags = append(diags, diagnosticOf(ewp))
	default:
		// A failure without a position, such as an unreadable file.
		diags = append(diags, Diagnostic{Msg: err.Error(), Rule: ruleCompile})
	}
	return linked, diags, nil
}

func diagnosticOf(err reporter.ErrorWithPos) Diagnostic {
	pos := err.GetPosition()
	msg := err.Error()
	if inner := errors.Unwrap(err); inner != nil {
		msg = inner.Error()
	}
	return Diagnostic{File: pos.Filename, Line: pos.Line, Col: pos.Col, Msg: msg, Rule: ruleCompile}
}

// resolver finds files in the user's contract root, then falls back to the
// files strata provides. It is safe for concurrent use, as protocompile
// requires, provided fsys is.
type resolver struct {
	fsys fs.FS

	mu    sync.Mutex
	found map[string]bool // files served from fsys
}

// foundFiles returns the names of the files served from fsys so far, sorted.
func (r *resolver) foundFiles() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.found))
	for name := range r.found {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

var _ protocompile.Resolver = (*resolver)(nil)

func (r *resolver) FindFileByPath(name string) (protocompile.SearchResult, error) {
	if r.fsys != nil && fs.ValidPath(name) {
		f, err := r.fsys.Open(name)
		switch {
		case err == nil:
			r.mu.Lock()
			r.found[name] = true
			r.mu.Unlock()
			return protocompile.SearchResult{Source: f}, nil
		case !errors.Is(err, fs.ErrNotExist):
			return protocompile.SearchResult{}, err
		}
	}
	switch name {
	case OptionsFile:
		return protocompile.SearchResult{Source: bytes.NewReader(optionsProto)}, nil
	case validateFile:
		return protocompile.SearchResult{Desc: validate.File_buf_validate_validate_proto}, nil
	}
	return protocompile.SearchResult{}, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
}
