package check

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing/fstest"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/strata-state/strata/contracts"
)

// GitPrefix marks an Options.Against that names a git revision: the
// contract is compared with that revision as it is, e.g. the tip of main.
const GitPrefix = "git:"

// GitMergeBasePrefix marks an Options.Against that names a git revision
// whose merge base with HEAD is the previous version: what a pull request
// changes, whatever the revision gained since the branch was cut
// ("git-merge-base:origin/main" is `git merge-base HEAD origin/main`).
const GitMergeBasePrefix = "git-merge-base:"

// protoFiles returns the import paths of every .proto file under fsys,
// sorted. Directories whose name starts with "." are skipped.
func protoFiles(fsys fs.FS) ([]string, error) {
	var files []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != "." && strings.HasPrefix(d.Name(), ".") {
			return fs.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".proto") {
			files = append(files, p)
		}
		return nil
	})
	slices.Sort(files)
	return files, err
}

// version is one compiled version of a contract.
type version struct {
	// files are the compiled files and their dependencies; nil when the
	// protobuf compiler failed.
	files []protoreflect.FileDescriptor
	// contract is set when the contract passed strata's rules too.
	contract *contracts.Contract
	// diags are the compile errors and broken strata rules.
	diags []contracts.Diagnostic
	// roots are the import paths compiled.
	roots []string
}

// compile compiles files of fsys (every .proto file when files is empty).
// Problems with the contract are diagnostics; the error is for the rest
// (nothing to compile, a canceled context).
func compile(ctx context.Context, fsys fs.FS, files []string) (*version, error) {
	if len(files) == 0 {
		var err error
		if files, err = protoFiles(fsys); err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, errors.New("no .proto files")
		}
	}
	v := &version{roots: files}
	c, err := contracts.Compile(ctx, fsys, files)
	var ce *contracts.CompileError
	switch {
	case err == nil:
		v.contract = c
		v.files = c.FileDescriptors()
	case errors.As(err, &ce):
		v.diags = ce.Errors
		v.files = ce.Files
	default:
		return nil, err
	}
	return v, nil
}

// against is the previous version of a contract, loaded for comparison.
type against struct {
	files []protoreflect.FileDescriptor
	// dir is where its files are on disk, for positions; for a git
	// revision or a descriptor set, the contract directory.
	dir string
	// missing is set when a git revision has no contract directory: there
	// is nothing to compare with.
	missing bool
	// base is the commit a git-merge-base: spec resolved to.
	base string
}

// loadAgainst loads the version named by spec: a directory, a descriptor
// set file, or "git:REF" read from the repository holding dir. Errors are
// usage errors: the version cannot be read or does not compile.
func loadAgainst(ctx context.Context, spec, dir string) (*against, error) {
	if ref, ok := strings.CutPrefix(spec, GitMergeBasePrefix); ok {
		return loadMergeBase(ctx, ref, dir)
	}
	if ref, ok := strings.CutPrefix(spec, GitPrefix); ok {
		return loadGit(ctx, spec, ref, dir)
	}
	st, err := os.Stat(spec)
	if err != nil {
		return nil, fmt.Errorf("--against %s: %w", spec, err)
	}
	if st.IsDir() {
		v, err := compile(ctx, os.DirFS(spec), nil)
		if err != nil {
			return nil, fmt.Errorf("--against %s: %w", spec, err)
		}
		if v.files == nil {
			return nil, oldCompileError(spec, v.diags)
		}
		return &against{files: v.files, dir: spec}, nil
	}
	files, err := readDescriptorSet(spec)
	if err != nil {
		return nil, fmt.Errorf("--against %s: %w", spec, err)
	}
	return &against{files: files, dir: dir}, nil
}

func oldCompileError(spec string, diags []contracts.Diagnostic) error {
	lines := make([]string, len(diags))
	for i, d := range diags {
		lines[i] = "  " + d.String()
	}
	return fmt.Errorf("--against %s: the old contract does not compile:\n%s", spec, strings.Join(lines, "\n"))
}

// readDescriptorSet reads a binary FileDescriptorSet, as written by
// `strata contract build` or `protoc --include_imports`. Imports missing
// from the set are taken from the files this program links in (protobuf's
// well-known types, protovalidate) and strata's options.
func readDescriptorSet(name string) ([]protoreflect.FileDescriptor, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	set := new(descriptorpb.FileDescriptorSet)
	if err := proto.Unmarshal(b, set); err != nil {
		return nil, fmt.Errorf("not a binary FileDescriptorSet: %w", err)
	}
	if len(set.GetFile()) == 0 {
		return nil, errors.New("the descriptor set holds no files")
	}
	files := new(protoregistry.Files)
	pending := slices.Clone(set.GetFile())
	// Files may come in any order: add those whose imports are known
	// until none is left or none can be added.
	for len(pending) > 0 {
		var next []*descriptorpb.FileDescriptorProto
		var lastErr error
		for _, fdp := range pending {
			fd, err := protodesc.NewFile(fdp, resolverChain{files, protoregistry.GlobalFiles})
			if err != nil {
				next, lastErr = append(next, fdp), err
				continue
			}
			if err := files.RegisterFile(fd); err != nil {
				return nil, err
			}
		}
		if len(next) == len(pending) {
			return nil, fmt.Errorf("%s: %w", next[0].GetName(), lastErr)
		}
		pending = next
	}
	var out []protoreflect.FileDescriptor
	for _, fdp := range set.GetFile() {
		fd, err := files.FindFileByPath(fdp.GetName())
		if err != nil {
			return nil, err
		}
		out = append(out, fd)
	}
	return out, nil
}

// resolverChain finds files in the first registry that has them.
type resolverChain []*protoregistry.Files

var _ protodesc.Resolver = resolverChain(nil)

func (rc resolverChain) FindFileByPath(p string) (protoreflect.FileDescriptor, error) {
	for _, r := range rc {
		if fd, err := r.FindFileByPath(p); err == nil {
			return fd, nil
		}
	}
	return nil, fmt.Errorf("import %s: %w", p, protoregistry.NotFound)
}

func (rc resolverChain) FindDescriptorByName(n protoreflect.FullName) (protoreflect.Descriptor, error) {
	for _, r := range rc {
		if d, err := r.FindDescriptorByName(n); err == nil {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", n, protoregistry.NotFound)
}

// loadMergeBase loads dir as it is at the merge base of HEAD and ref.
func loadMergeBase(ctx context.Context, ref, dir string) (*against, error) {
	spec := GitMergeBasePrefix + ref
	if ref == "" {
		return nil, fmt.Errorf("--against %s: name a revision, e.g. %sorigin/main", spec, GitMergeBasePrefix)
	}
	if _, err := git(ctx, dir, "rev-parse", "--show-toplevel"); err != nil {
		return nil, fmt.Errorf("--against %s: %s is not in a git repository: %w", spec, dir, err)
	}
	if _, err := git(ctx, dir, "rev-parse", "--verify", "--quiet", ref+"^{commit}"); err != nil {
		return nil, fmt.Errorf("--against %s: no such revision %q (in CI, fetch it first: actions/checkout with fetch-depth: 0)", spec, ref)
	}
	base, err := git(ctx, dir, "merge-base", "HEAD", ref)
	if err != nil {
		return nil, fmt.Errorf("--against %s: HEAD and %s have no common ancestor (a shallow clone? fetch with fetch-depth: 0): %w", spec, ref, err)
	}
	a, err := loadGit(ctx, spec, strings.TrimSpace(base), dir)
	if a != nil {
		a.base = strings.TrimSpace(base)
	}
	return a, err
}

// loadGit compiles every .proto file under dir as it is at revision ref of
// the git repository holding dir, read with `git archive`. spec is the
// --against value, for errors.
func loadGit(ctx context.Context, spec, ref, dir string) (*against, error) {
	if ref == "" {
		return nil, fmt.Errorf("--against %s: name a revision, e.g. git:main", spec)
	}
	top, err := git(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, fmt.Errorf("--against %s: %s is not in a git repository: %w", spec, dir, err)
	}
	if _, err := git(ctx, dir, "rev-parse", "--verify", "--quiet", ref+"^{commit}"); err != nil {
		return nil, fmt.Errorf("--against %s: no such revision %q (in CI, fetch it first: actions/checkout with fetch-depth: 0)", spec, ref)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	top = strings.TrimSpace(top)
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if real, err := filepath.EvalSymlinks(top); err == nil {
		top = real
	}
	rel, err := filepath.Rel(top, abs)
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("--against %s: %s is outside the repository at %s", spec, dir, top)
	}
	prefix := filepath.ToSlash(rel)
	args := []string{"archive", "--format=tar", ref}
	if prefix != "." {
		args = append(args, "--", prefix)
	}
	out, err := git(ctx, top, args...)
	if err != nil {
		if strings.Contains(err.Error(), "did not match any files") {
			return &against{dir: dir, missing: true}, nil
		}
		return nil, fmt.Errorf("--against %s: %w", spec, err)
	}
	fsys, err := untar([]byte(out), prefix)
	if err != nil {
		return nil, fmt.Errorf("--against %s: %w", spec, err)
	}
	v, err := compile(ctx, fsys, nil)
	if err != nil {
		if len(fsys) == 0 {
			return &against{dir: dir, missing: true}, nil
		}
		return nil, fmt.Errorf("--against %s: %w", spec, err)
	}
	if v.files == nil {
		return nil, oldCompileError(spec, v.diags)
	}
	return &against{files: v.files, dir: dir}, nil
}

// untar returns the .proto files of a tar archive under prefix ("." for
// all), with prefix cut from their names.
func untar(b []byte, prefix string) (fstest.MapFS, error) {
	fsys := fstest.MapFS{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return fsys, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(h.Name, ".proto") {
			continue
		}
		name := h.Name
		if prefix != "." {
			var ok bool
			if name, ok = strings.CutPrefix(name, prefix+"/"); !ok {
				continue
			}
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		fsys[path.Clean(name)] = &fstest.MapFile{Data: data}
	}
}

// git runs git in dir and returns its standard output; the error carries
// its standard error.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return "", err
		}
		return "", fmt.Errorf("git %s: %s", args[0], msg)
	}
	return stdout.String(), nil
}
