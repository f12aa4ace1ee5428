package reducer

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BuildOptions tune Build.
type BuildOptions struct {
	// GoTool is the go command. Default: "go" on PATH.
	GoTool string
	// Progress, when set, receives what the build does: the command, the
	// packages as they compile, and errors.
	Progress io.Writer
	// Lang is the language of the source: LangGo, LangRust, or "" to
	// detect it (DetectLang: a Cargo.toml makes it Rust).
	Lang string
	// Cargo and Rustc are the Rust toolchain's commands (see findRust).
	// Default: $RUSTC, else the first of the cargo and rustc on PATH and
	// Debian's in /usr/bin that has a WASI target.
	Cargo, Rustc string
	// Name is what Progress calls the module written. Default: the out
	// argument of Build (BuildCached gives the cached file, not its
	// temporary one).
	Name string
}

// ErrNoGo is wrapped by the error of Build when the go command cannot be
// found.
var ErrNoGo = errors.New("reducer: the Go toolchain is not installed")

// goFlags are the flags of every reducer build.
var goFlags = []string{"build", "-buildmode=c-shared", "-trimpath"}

// Build compiles the Go main package in dir to a WASI reactor module at
// out, with `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`. dir may
// be a package of a larger module (as plugins/app-regions is) or a module
// of its own. A Rust crate (a Cargo.toml in dir, or opts.Lang LangRust) is
// built with `cargo build --release --lib --target wasm32-wasip1` (or
// wasm32-wasi, whichever the toolchain has) instead. The compiler's errors
// are returned and, with opts.Progress, shown as they come.
func Build(ctx context.Context, dir, out string, opts BuildOptions) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory (give the Go package or Rust crate directory of the reducer)", dir)
	}
	lang, err := sourceLang(dir, opts.Lang)
	if err != nil {
		return err
	}
	if lang == LangRust {
		return buildRust(ctx, dir, out, opts)
	}
	gotool, err := lookGo(opts.GoTool)
	if err != nil {
		return err
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	args := slices.Concat(goFlags, []string{"-o", absOut})
	if opts.Progress != nil {
		args = append(args, "-v")
	}
	args = append(args, ".")
	cmd := exec.CommandContext(ctx, gotool, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stdout = io.Discard
	cmd.Stderr = &stderr
	flush := func() {}
	if opts.Progress != nil {
		shown := slices.Clone(args)
		shown[slices.Index(shown, absOut)] = cmp.Or(opts.Name, out)
		fmt.Fprintf(opts.Progress, "building %s: GOOS=wasip1 GOARCH=wasm %s %s\n", dir, filepath.Base(gotool), strings.Join(shown, " "))
		var pw io.Writer
		pw, flush = prefixWriter(opts.Progress, "  ")
		cmd.Stderr = io.MultiWriter(&stderr, pw)
	}
	start := time.Now()
	err = cmd.Run()
	flush() // every line of the go command is written before Build returns
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if opts.Progress != nil {
			return fmt.Errorf("go build in %s failed: %w (its output is above)", dir, err) // shown as it came: not twice
		}
		return fmt.Errorf("go build in %s failed: %w\n%s", dir, err, msg)
	}
	if opts.Progress != nil {
		size := int64(0)
		if st, err := os.Stat(absOut); err == nil {
			size = st.Size()
		}
		fmt.Fprintf(opts.Progress, "built %s (%.1f MB) in %s\n", cmp.Or(opts.Name, out), float64(size)/1e6, time.Since(start).Round(10*time.Millisecond))
	}
	return nil
}

// lookGo finds the go command.
func lookGo(gotool string) (string, error) {
	if gotool == "" {
		gotool = "go"
	}
	path, err := exec.LookPath(gotool)
	if err != nil {
		return "", fmt.Errorf("%w: %q not found (%v); install Go 1.24 or newer, or build the module elsewhere and configure wasm = \"file.wasm\" instead of source", ErrNoGo, gotool, err)
	}
	return path, nil
}

// prefixWriter returns a writer that writes each line to w with a prefix,
// and a function that closes it and waits until every line is written.
func prefixWriter(w io.Writer, prefix string) (io.Writer, func()) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(w, prefix+sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return pw, func() {
		pw.Close()
		<-done
	}
}

// buildSource returns the module built from the Go package in dir, from
// the build cache when its source hash is there, else built now and
// cached. Concurrent builds of the same source are done once.
func (h *Host) buildSource(ctx context.Context, dir string) (string, error) {
	if DetectLang(dir) == LangRust {
		sum, err := rustSourceHash(dir)
		if err != nil {
			return "", err
		}
		cacheDir, err := h.buildCacheDir()
		if err != nil {
			return "", err
		}
		return BuildCached(ctx, dir, cacheDir, sum, BuildOptions{Lang: LangRust, Progress: h.opts.BuildOutput}, h.lock)
	}
	gotool, err := lookGo(h.opts.GoTool)
	if err != nil {
		return "", err
	}
	sum, err := SourceHash(dir, gotool)
	if err != nil {
		return "", err
	}
	cacheDir, err := h.buildCacheDir()
	if err != nil {
		return "", err
	}
	return BuildCached(ctx, dir, cacheDir, sum, BuildOptions{GoTool: gotool, Lang: LangGo, Progress: h.opts.BuildOutput}, h.lock)
}

// buildCacheDir is where buildSource keeps the modules it built.
func (h *Host) buildCacheDir() (string, error) {
	cacheDir := h.opts.CacheDir
	if cacheDir == "" {
		var err error
		if cacheDir, err = os.UserCacheDir(); err != nil {
			return "", fmt.Errorf("no cache directory for builds: %w", err)
		}
		cacheDir = filepath.Join(cacheDir, "strata")
	}
	return filepath.Join(cacheDir, "builds"), nil
}

// BuildCached returns dir's module from cacheDir/HASH.wasm, building it
// there first if it is missing. hash is dir's SourceHash. lock, when not
// nil, serializes builds of one hash within the process; builds racing in
// other processes are harmless (the last rename wins, with equal content).
func BuildCached(ctx context.Context, dir, cacheDir, hash string, opts BuildOptions, lock func(string) func()) (string, error) {
	path := filepath.Join(cacheDir, hash+".wasm")
	if lock != nil {
		defer lock("build:" + hash)()
	}
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(cacheDir, hash+".*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	opts.Name = cmp.Or(opts.Name, path)
	if err := Build(ctx, dir, tmp.Name(), opts); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

// SourceHash returns the hash that identifies the module built from the Go
// package in dir: the package's non-test Go files, the go.mod and go.sum of
// its module, and, recursively, the files of the packages it imports from
// its own module or from local replace directories, plus the identity of
// the go command (path, size and modification time). Dependencies from the
// module cache are identified by go.sum. For a Rust crate (a Cargo.toml in
// dir) it hashes the crate, its path dependencies and the Rust toolchain
// instead (see rustSourceHash), and gotool is not used.
func SourceHash(dir, gotool string) (string, error) {
	if DetectLang(dir) == LangRust {
		return rustSourceHash(dir)
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	root, modPath, replaces, err := findModule(absDir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "strata reducer build v1\n%q\n", goFlags)
	if st, err := os.Stat(gotool); err == nil {
		fmt.Fprintf(h, "go %s %d %d\n", gotool, st.Size(), st.ModTime().UnixNano())
	}
	for _, name := range []string{"go.mod", "go.sum", "go.work", "go.work.sum"} {
		if err := hashFile(h, filepath.Join(root, name), name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	seen := map[string]bool{}
	var visit func(pkgDir string) error
	visit = func(pkgDir string) error {
		if seen[pkgDir] {
			return nil
		}
		seen[pkgDir] = true
		entries, err := os.ReadDir(pkgDir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || strings.HasSuffix(name, "_test.go") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				continue
			}
			path := filepath.Join(pkgDir, name)
			rel, _ := filepath.Rel(root, path)
			if err := hashFile(h, path, rel); err != nil {
				return err
			}
			if !strings.HasSuffix(name, ".go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if d, ok := localImport(p, root, modPath, replaces); ok {
					if err := visit(d); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	if err := visit(absDir); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// localImport maps an import path to a directory when it is a package of
// the module at root, or of a local replacement.
func localImport(p, root, modPath string, replaces map[string]string) (string, bool) {
	if p == modPath || strings.HasPrefix(p, modPath+"/") {
		return filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(p, modPath))), true
	}
	for from, to := range replaces {
		if p == from || strings.HasPrefix(p, from+"/") {
			return filepath.Join(to, filepath.FromSlash(strings.TrimPrefix(p, from))), true
		}
	}
	return "", false
}

// findModule finds the go.mod governing dir, and returns its directory,
// module path and local replace directives (module path → directory).
func findModule(dir string) (root, modPath string, replaces map[string]string, err error) {
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			modPath, replaces = parseGoMod(b, d)
			if modPath == "" {
				return "", "", nil, fmt.Errorf("%s: no module line", filepath.Join(d, "go.mod"))
			}
			return d, modPath, replaces, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", "", nil, err
		}
		if filepath.Dir(d) == d {
			return "", "", nil, fmt.Errorf("%s is not inside a Go module (no go.mod found): run `go mod init` there", dir)
		}
	}
}

// parseGoMod reads the module path and the replace directives that point
// to directories, enough for SourceHash; the go command checks the rest.
func parseGoMod(b []byte, dir string) (string, map[string]string) {
	var modPath string
	replaces := map[string]string{}
	inReplace := false
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "//")
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "module "):
			modPath = strings.Trim(strings.TrimSpace(strings.TrimPrefix(line, "module")), `"`)
			continue
		case line == "replace (":
			inReplace = true
			continue
		case inReplace && line == ")":
			inReplace = false
			continue
		case strings.HasPrefix(line, "replace "):
			line = strings.TrimPrefix(line, "replace ")
		case !inReplace:
			continue
		}
		from, to, ok := strings.Cut(line, "=>")
		if !ok {
			continue
		}
		fromPath := strings.Fields(from)
		toPath := strings.Fields(to)
		if len(fromPath) == 0 || len(toPath) != 1 {
			continue // a module version, not a directory
		}
		t := toPath[0]
		if strings.HasPrefix(t, "./") || strings.HasPrefix(t, "../") || filepath.IsAbs(t) {
			if !filepath.IsAbs(t) {
				t = filepath.Join(dir, t)
			}
			replaces[fromPath[0]] = t
		}
	}
	return modPath, replaces
}

func hashFile(h io.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	fmt.Fprintf(h, "file %q %d\n", filepath.ToSlash(name), st.Size())
	_, err = io.Copy(h, f)
	return err
}
