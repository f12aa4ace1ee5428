package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// backupAgent serves a gateway's two stores (a few rows each) over a real
// HTTP API and returns its URL.
func backupAgent(t *testing.T) string {
	t.Helper()
	c, err := contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	clock := hlc.NewClock(nil, time.Minute)
	stores := map[string]*store.Store{}
	for _, name := range []string{"regional.db", "global.db"} {
		s, err := store.Open(filepath.Join(dir, name), store.Options{Node: "t1", Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		for _, key := range []string{"a", "b", "c"} {
			if _, err := s.Apply(context.Background(), store.Mutation{Op: store.OpPut, Table: "t", Key: key,
				Fields: []store.FieldValue{{Num: 1, Value: []byte(key)}}}); err != nil {
				t.Fatal(err)
			}
		}
		stores[name] = s
	}
	hs := httptest.NewServer(api.New(api.Options{Contract: c, Regional: stores["regional.db"], Global: stores["global.db"], Node: "t1"}).Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// runStrataSplit runs a command with standard output and standard error
// kept apart.
func runStrataSplit(args ...string) (stdout, stderr string, err error) {
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errb.String(), err
}

// tarNames lists the entries of a tar archive, failing on a broken one.
func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatalf("the archive is broken after %v: %v", names, err)
		}
		names = append(names, hdr.Name)
	}
}

// `strata backup -` writes the archive to standard output (and its note
// to standard error), not to a file named "-".
func TestBackupToStdout(t *testing.T) {
	url := backupAgent(t)
	t.Chdir(t.TempDir())
	stdout, stderr, err := runStrataSplit("--addr", url, "backup", "-")
	if err != nil {
		t.Fatalf("backup -: %v\n%s", err, stderr)
	}
	if _, err := os.Lstat("-"); err == nil {
		t.Errorf(`backup - wrote a file named "-"`)
	}
	if got, want := strings.Join(tarNames(t, []byte(stdout)), " "), "MANIFEST.json global.db regional.db"; got != want {
		t.Errorf("standard output holds %q, want the archive (%s)", got, want)
	}
	if !strings.Contains(stderr, "standard output") {
		t.Errorf("standard error: %q, want a note of what was written", stderr)
	}
}

// An existing FIFO, or a symlink to one, is written through and stays a
// FIFO: backup never replaces what is not a regular file.
func TestBackupWritesThroughFIFO(t *testing.T) {
	url := backupAgent(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{fifo, link} {
		got := make(chan []byte, 1)
		go func() {
			f, err := os.Open(fifo) // blocks until backup opens it to write
			if err != nil {
				got <- nil
				return
			}
			defer f.Close()
			b, _ := io.ReadAll(f)
			got <- b
		}()
		out, err := runStrata(t, "--addr", url, "backup", target)
		if err != nil {
			t.Fatalf("backup %s: %v\n%s", target, err, out)
		}
		if fi, err := os.Stat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Fatalf("backup %s replaced the FIFO: %v %v", target, fi.Mode(), err)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("backup %s replaced the symlink: %v %v", target, fi.Mode(), err)
		}
		select {
		case b := <-got:
			if g, w := strings.Join(tarNames(t, b), " "), "MANIFEST.json global.db regional.db"; g != w {
				t.Errorf("backup %s: the reader of the FIFO got %q, want %s", target, g, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("backup %s: nothing reached the FIFO's reader", target)
		}
	}
}

// A write error (ENOSPC from /dev/full, reached through a symlink so that
// a broken build could only replace the link) fails, naming the file.
func TestBackupWriteErrorFails(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	url := backupAgent(t)
	link := filepath.Join(t.TempDir(), "full")
	if err := os.Symlink("/dev/full", link); err != nil {
		t.Fatal(err)
	}
	out, err := runStrata(t, "--addr", url, "backup", link)
	if err == nil {
		t.Fatalf("backup to /dev/full succeeded:\n%s", out)
	}
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "write "+link+": no space left on device") {
		t.Errorf("backup to /dev/full: exit %d, %v; want exit 1 naming %s and ENOSPC", exitCode(err), err, link)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink to /dev/full was replaced: %v %v", fi.Mode(), err)
	}
}

// A backup over an existing regular file (directly or through a symlink)
// replaces the file, keeping the symlink.
func TestBackupReplacesRegularFile(t *testing.T) {
	url := backupAgent(t)
	dir := t.TempDir()
	file, link := filepath.Join(dir, "old.tar"), filepath.Join(dir, "link.tar")
	os.WriteFile(file, []byte("old"), 0o600)
	os.Symlink(file, link)
	if out, err := runStrata(t, "--addr", url, "backup", link); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v", err)
	}
	b, _ := os.ReadFile(file)
	if g := strings.Join(tarNames(t, b), " "); g != "MANIFEST.json global.db regional.db" {
		t.Errorf("the file holds %q", g)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("left in the directory: %v", entries)
	}
}

// A truncated archive is refused and leaves nothing behind, whether the
// data_dir is new or an existing empty directory; a retry with the whole
// archive then succeeds.
func TestRestoreTruncatedLeavesNothing(t *testing.T) {
	url := backupAgent(t)
	dir := t.TempDir()
	whole, trunc := filepath.Join(dir, "whole.tar"), filepath.Join(dir, "trunc.tar")
	if out, err := runStrata(t, "--addr", url, "backup", whole); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(whole)
	// global.db comes first in the archive: cut inside regional.db, the last.
	os.WriteFile(trunc, b[:len(b)-4096], 0o600)

	parent := filepath.Join(t.TempDir(), "rr")
	os.Mkdir(parent, 0o700)
	empty := filepath.Join(t.TempDir(), "empty")
	os.Mkdir(empty, 0o700)
	for _, target := range []string{filepath.Join(parent, "b"), empty} {
		if out, err := runStrata(t, "restore", trunc, "--data-dir", target); err == nil || !strings.Contains(err.Error(), "nothing was restored") {
			t.Errorf("restore of a truncated archive into %s: %v\n%s", target, err, out)
		}
		if entries, err := os.ReadDir(target); len(entries) > 0 || (err != nil && !errors.Is(err, os.ErrNotExist)) {
			t.Errorf("after a failed restore, %s holds %v (%v)", target, entries, err)
		}
		if entries, _ := os.ReadDir(parent); len(entries) > 0 && target == filepath.Join(parent, "b") {
			t.Errorf("after a failed restore, %s holds %v", parent, entries)
		}
		if out, err := runStrata(t, "restore", whole, "--data-dir", target); err != nil {
			t.Fatalf("retry into %s: %v\n%s", target, err, out)
		}
		entries, _ := os.ReadDir(target)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != "global.db regional.db" {
			t.Errorf("restored %s holds %q", target, got)
		}
	}
}

// A restore killed before it cleaned up leaves its temporary directory
// inside an existing empty DIR; the next restore removes it and succeeds.
func TestRestoreAfterAKilledRestore(t *testing.T) {
	url := backupAgent(t)
	whole := filepath.Join(t.TempDir(), "whole.tar")
	if out, err := runStrata(t, "--addr", url, "backup", whole); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	target := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(filepath.Join(target, ".restoring-12345"), 0o700)
	os.WriteFile(filepath.Join(target, ".restoring-12345", "regional.db"), []byte("half"), 0o600)
	if out, err := runStrata(t, "restore", whole, "--data-dir", target); err != nil {
		t.Fatalf("restore after a killed one: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir(target)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "global.db regional.db" {
		t.Errorf("restored %s holds %q", target, got)
	}
}
