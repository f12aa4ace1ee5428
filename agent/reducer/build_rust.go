package reducer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Languages of reducer sources, for BuildOptions.Lang.
const (
	// LangGo is a Go main package, built with the go command.
	LangGo = "go"
	// LangRust is a Rust crate (a Cargo.toml) of crate type cdylib, built
	// with cargo against the crate strata-reducer (sdk/rust).
	LangRust = "rust"
)

// ErrNoRust is wrapped by the error of Build when no Rust toolchain that
// can build WASI modules is found.
var ErrNoRust = errors.New("reducer: no Rust toolchain with a WASI target")

// DetectLang returns the language of the reducer source in dir: LangRust
// when dir holds a Cargo.toml, else LangGo.
func DetectLang(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, "Cargo.toml")); err == nil {
		return LangRust
	}
	return LangGo
}

// sourceLang returns the language to build dir in: lang when set (and
// checked against dir), else DetectLang's.
func sourceLang(dir, lang string) (string, error) {
	switch lang {
	case "":
		return DetectLang(dir), nil
	case LangGo:
		return LangGo, nil
	case LangRust:
		if DetectLang(dir) != LangRust {
			return "", fmt.Errorf("%s has no Cargo.toml: a Rust reducer is a cargo crate (see sdk/rust/README.md)", dir)
		}
		return LangRust, nil
	}
	return "", fmt.Errorf("unknown reducer language %q: want %s or %s", lang, LangGo, LangRust)
}

// RustToolchain is a cargo and the rustc it builds with, and the WASI
// target that rustc has a standard library for.
type RustToolchain struct {
	// Cargo and Rustc are the paths of the commands.
	Cargo, Rustc string
	// Target is the WASI target: wasm32-wasip1 or wasm32-wasi.
	Target string
	// Sysroot is rustc's sysroot, where the target's library is.
	Sysroot string
}

// wasiTargets are the WASI preview 1 targets, newest name first: Rust
// 1.78 renamed wasm32-wasi to wasm32-wasip1 (and 1.84 removed the old name).
var wasiTargets = []string{"wasm32-wasip1", "wasm32-wasi"}

var (
	rustMu    sync.Mutex
	rustFound = map[string]RustToolchain{} // by findRust's arguments and $RUSTC
)

// FindRust returns the Rust toolchain that Build uses for Rust crates, for
// cargo and rustc as in BuildOptions; the error wraps ErrNoRust when there
// is none. Run `cargo test` with the same one: a newer cargo may write a
// Cargo.lock that an older one cannot read.
func FindRust(cargo, rustc string) (RustToolchain, error) { return findRust(cargo, rustc) }

// findRust returns the Rust toolchain to build with. cargo and rustc, when
// set, name the commands (else $RUSTC names rustc); a command not named is
// taken from the directory of the other, so that cargo and rustc are of one
// toolchain. With neither, the candidates are the cargo and rustc on PATH,
// then Debian's in /usr/bin (rustup's rustc may lack a WASI target where
// Debian's libstd-rust-dev-wasm32 provides one); the first whose rustc has
// a standard library for a WASI target wins. The answer is remembered for
// the process.
func findRust(cargo, rustc string) (RustToolchain, error) {
	if rustc == "" {
		rustc = os.Getenv("RUSTC")
	}
	memo := cargo + "\x00" + rustc
	rustMu.Lock()
	defer rustMu.Unlock()
	if tc, ok := rustFound[memo]; ok {
		return tc, nil
	}
	var pairs [][2]string
	sibling := func(path, name string) string {
		if p, err := exec.LookPath(path); err == nil {
			if s := filepath.Join(filepath.Dir(p), name); isExecutable(s) {
				return s
			}
		}
		return name
	}
	switch {
	case cargo != "" && rustc != "":
		pairs = append(pairs, [2]string{cargo, rustc})
	case cargo != "":
		pairs = append(pairs, [2]string{cargo, sibling(cargo, "rustc")})
	case rustc != "":
		pairs = append(pairs, [2]string{sibling(rustc, "cargo"), rustc})
	default:
		pairs = append(pairs, [2]string{"cargo", "rustc"}, [2]string{"/usr/bin/cargo", "/usr/bin/rustc"})
	}
	var tried []string
	seen := map[[2]string]bool{}
	for _, p := range pairs {
		c, errC := exec.LookPath(p[0])
		r, errR := exec.LookPath(p[1])
		if errC != nil || errR != nil {
			tried = append(tried, fmt.Sprintf("%s and %s: %v", p[0], p[1], errors.Join(errC, errR)))
			continue
		}
		if seen[[2]string{c, r}] {
			continue
		}
		seen[[2]string{c, r}] = true
		out, err := exec.Command(r, "--print", "sysroot").Output()
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s --print sysroot: %v", r, err))
			continue
		}
		sysroot := strings.TrimSpace(string(out))
		for _, t := range wasiTargets {
			if st, err := os.Stat(filepath.Join(sysroot, "lib", "rustlib", t)); err == nil && st.IsDir() {
				tc := RustToolchain{Cargo: c, Rustc: r, Target: t, Sysroot: sysroot}
				rustFound[memo] = tc
				return tc, nil
			}
		}
		tried = append(tried, fmt.Sprintf("%s (sysroot %s) has no standard library for %s", r, sysroot, strings.Join(wasiTargets, " or ")))
	}
	return RustToolchain{}, fmt.Errorf("%w: %s; install one (rustup target add wasm32-wasip1, or Debian's apt-get install cargo rustc libstd-rust-dev-wasm32 lld-14) or name it with --cargo and --rustc", ErrNoRust, strings.Join(tried, "; "))
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// buildRust builds the cdylib of the crate in dir for WASI with cargo and
// copies the module to out.
func buildRust(ctx context.Context, dir, out string, opts BuildOptions) error {
	tc, err := findRust(opts.Cargo, opts.Rustc)
	if err != nil {
		return err
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	args := []string{"build", "--release", "--lib", "--target", tc.Target, "--message-format=json-render-diagnostics"}
	cmd := exec.CommandContext(ctx, tc.Cargo, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RUSTC="+tc.Rustc, "CARGO_TERM_COLOR=never")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	flush := func() {}
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "building %s: RUSTC=%s %s %s\n", dir, tc.Rustc, tc.Cargo, strings.Join(args, " "))
		var pw io.Writer
		pw, flush = prefixWriter(opts.Progress, "  ")
		cmd.Stderr = io.MultiWriter(&stderr, pw)
	}
	start := time.Now()
	err = cmd.Run()
	flush()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		out := strings.TrimSpace(stderr.String())
		msg := fmt.Sprintf("cargo build in %s failed: %v", dir, err)
		if opts.Progress != nil {
			msg += " (cargo's output is above)" // shown as it came: not twice
		} else {
			msg += "\n" + out
		}
		if strings.Contains(out, "lock file version") {
			msg += fmt.Sprintf("\n  fix: %s was written by a newer cargo than the one building it (%s): "+
				"remove it and run `cargo test` with that cargo (%s test), or build with a newer cargo and a rustc that has a WASI target (--cargo, --rustc)",
				filepath.Join(dir, "Cargo.lock"), tc.Cargo, tc.Cargo)
		}
		return errors.New(msg)
	}
	wasm, err := cargoArtifact(&stdout, dir)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(wasm)
	if err != nil {
		return err
	}
	if err := os.WriteFile(absOut, b, 0o644); err != nil {
		return err
	}
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "built %s (%.1f KB) in %s\n", out, float64(len(b))/1e3, time.Since(start).Round(10*time.Millisecond))
	}
	return nil
}

// cargoArtifact finds, in cargo's JSON messages, the .wasm file of the
// cdylib of the package in dir.
func cargoArtifact(messages io.Reader, dir string) (string, error) {
	manifest, _ := filepath.Abs(filepath.Join(dir, "Cargo.toml"))
	var found []string
	sc := bufio.NewScanner(messages)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var m struct {
			Reason       string   `json:"reason"`
			ManifestPath string   `json:"manifest_path"`
			Filenames    []string `json:"filenames"`
			Target       struct {
				CrateTypes []string `json:"crate_types"`
			} `json:"target"`
		}
		if json.Unmarshal(sc.Bytes(), &m) != nil || m.Reason != "compiler-artifact" || !slices.Contains(m.Target.CrateTypes, "cdylib") {
			continue
		}
		for _, f := range m.Filenames {
			if strings.HasSuffix(f, ".wasm") && (m.ManifestPath == manifest || m.ManifestPath == "") {
				found = append(found, f)
			}
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("cargo built no WebAssembly module in %s: declare the library a cdylib in Cargo.toml ([lib] crate-type = [\"cdylib\"])", dir)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("cargo built several modules in %s (%s): build one crate", dir, strings.Join(found, ", "))
}

// pathDep matches the path of a dependency in a Cargo.toml.
var pathDep = regexp.MustCompile(`(?m)\bpath\s*=\s*"([^"]+)"`)

// rustSourceHash is SourceHash for a Rust crate: every file of the crate
// but its target directory, the Cargo.toml and Cargo.lock files of the
// directories above it (a workspace's), the crates it depends on by path,
// recursively, and the identity of the toolchain (cargo, rustc, sysroot,
// target). Registry dependencies are identified by Cargo.lock; cargo
// writes one on the first build, so a crate without one gets a new hash
// (and one more build) after it.
func rustSourceHash(dir string) (string, error) {
	tc, err := findRust("", "")
	if err != nil {
		return "", err
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "strata reducer build rust v1\n%q %q %q\n", tc.Target, tc.Sysroot, []string{"--release", "--lib"})
	for _, tool := range []string{tc.Cargo, tc.Rustc} {
		if st, err := os.Stat(tool); err == nil {
			fmt.Fprintf(h, "tool %s %d %d\n", tool, st.Size(), st.ModTime().UnixNano())
		}
	}
	rel := func(path string) string {
		if r, err := filepath.Rel(absDir, path); err == nil {
			return r
		}
		return path
	}
	for d := filepath.Dir(absDir); ; d = filepath.Dir(d) {
		for _, name := range []string{"Cargo.toml", "Cargo.lock"} {
			if err := hashFile(h, filepath.Join(d, name), rel(filepath.Join(d, name))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return "", err
			}
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	seen := map[string]bool{}
	var visit func(crate string) error
	visit = func(crate string) error {
		if seen[crate] {
			return nil
		}
		seen[crate] = true
		err := filepath.WalkDir(crate, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() && path != crate && (name == "target" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			if d.IsDir() || strings.HasPrefix(name, ".") {
				return nil
			}
			return hashFile(h, path, rel(path))
		})
		if err != nil {
			return err
		}
		toml, err := os.ReadFile(filepath.Join(crate, "Cargo.toml"))
		if err != nil {
			return err
		}
		for _, m := range pathDep.FindAllSubmatch(toml, -1) {
			dep := filepath.Join(crate, filepath.FromSlash(string(m[1])))
			if _, err := os.Stat(filepath.Join(dep, "Cargo.toml")); err == nil {
				if err := visit(dep); err != nil {
					return err
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
