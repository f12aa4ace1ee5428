package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-state/strata/agent/hlc"
)

// fillAndClose writes n rows to a new store file and closes it.
func fillAndClose(t *testing.T, path string, n int) {
	t.Helper()
	s, err := Open(path, Options{Node: "test-1", Clock: hlc.NewClock(nil, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var muts []Mutation
	for i := range n {
		muts = append(muts, put(fmt.Sprintf("m-%05d", i), strings.Repeat("v", 100)))
	}
	if _, err := s.Apply(context.Background(), muts...); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// dataPages is the number of pages in use at the start of a closed store
// file (bbolt allocates the file ahead, so its size says little).
func dataPages(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	db.View(func(tx *bolt.Tx) error {
		for id := 0; ; id++ {
			if p, err := tx.Page(id); err != nil || p == nil {
				return nil
			}
			n++
		}
	})
	return n
}

const pageSize = 4096

// rowLeafPages lists the leaf pages of a closed store file that hold
// rows keyed "m-…" (not the change feed's or the digest's pages): it
// parses each leaf page's first element (bbolt's page header is 16 bytes,
// a leaf element 16 bytes: flags, pos, ksize, vsize, with pos relative to
// the element).
func rowLeafPages(t *testing.T, path string) []int {
	t.Helper()
	var leaves []int
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		for id := 0; ; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return nil
			}
			if p.Type == "leaf" && p.Count > 0 {
				leaves = append(leaves, id)
			}
		}
	})
	db.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, id := range leaves {
		page := data[id*pageSize:]
		elem := page[16:]
		pos := binary.LittleEndian.Uint32(elem[4:])
		ksize := binary.LittleEndian.Uint32(elem[8:])
		key := elem[pos : pos+ksize]
		if bytes.HasPrefix(key, []byte("m-")) {
			out = append(out, id)
		}
	}
	if len(out) < 3 {
		t.Fatalf("found %d leaf pages of rows", len(out))
	}
	return out
}

// A page damaged under a running store (as a disk fault does) makes the
// write that meets it fail with an error naming the file and the remedy,
// never a panic of the commit goroutine; the store then refuses writes
// and says why, and reads of undamaged rows go on.
func TestDamagedPageFailsWritesWithoutPanic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regional.db")
	fillAndClose(t, path, 3000)
	leaves := rowLeafPages(t, path)
	s, err := Open(path, Options{Node: "test-1", Clock: hlc.NewClock(nil, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Zero a third of the pages of rows: no valid page type or id.
	for _, id := range leaves[len(leaves)/3 : 2*len(leaves)/3] {
		if _, err := f.WriteAt(make([]byte, pageSize), int64(id)*pageSize); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	var writeErr error
	for i := 0; i < 3000 && writeErr == nil; i += 10 {
		_, writeErr = s.Apply(context.Background(), put(fmt.Sprintf("m-%05d", i), "new"))
	}
	if !errors.Is(writeErr, ErrCorrupt) || !strings.Contains(writeErr.Error(), path) || !strings.Contains(writeErr.Error(), "strata restore") {
		t.Fatalf("write over a damaged page: %v, want ErrCorrupt naming the file and the remedy", writeErr)
	}
	if err := s.Unwritable(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Unwritable: %v, want ErrCorrupt", err)
	}
	if _, err := s.Apply(context.Background(), put("m-00000", "x")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a later write: %v, want it refused with ErrCorrupt", err)
	}
	// Rows on damaged pages fail to read (without a panic); the others
	// are still served.
	readable := 0
	for i := range 3000 {
		if _, err := s.Get("machines", fmt.Sprintf("m-%05d", i)); err == nil {
			readable++
		}
	}
	if readable == 0 || readable == 3000 {
		t.Errorf("%d of 3000 rows readable, want the undamaged ones only", readable)
	}
}

// A truncated file gives a clear error at open, never a panic.
func TestTruncatedFileFailsOpenClearly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regional.db")
	fillAndClose(t, path, 3000)
	if err := os.Truncate(path, dataPages(t, path)*pageSize/3); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{Node: "test-1", Clock: hlc.NewClock(nil, time.Minute)})
	if err == nil {
		defer s.Close()
		// bbolt may not look past the end at open: the first reads and
		// writes must then fail cleanly.
		_, werr := s.Apply(context.Background(), put("m-02999", "x"))
		rows, _, lerr := s.List("machines", "", 0)
		t.Logf("write: %v; list: %d rows, %v", werr, len(rows), lerr)
		if werr == nil && lerr == nil {
			t.Fatal("a store over a truncated file reads and writes as if whole")
		}
		return
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("open of a truncated file: %v, want an error naming the file", err)
	}
}

// An empty file where the node has written before is an error, not a new
// empty store; without RefuseEmpty (a new node) it is a new store.
func TestEmptyFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regional.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, Options{Node: "test-1", Clock: hlc.NewClock(nil, time.Minute), RefuseEmpty: true})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "empty") || !strings.Contains(err.Error(), path) {
		t.Fatalf("open of an empty file with RefuseEmpty: %v", err)
	}
	openTest(t, path, Options{})
}

// makeUnwritable makes path impossible to open for writing, even for
// root (immutable attribute), or skips the test.
func makeUnwritable(t *testing.T, path string) {
	t.Helper()
	if os.Getuid() != 0 {
		if err := os.Chmod(path, 0o400); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(path, 0o600) })
		return
	}
	if err := runQuiet("chattr", "+i", path); err != nil {
		t.Skipf("cannot make %s unwritable as root (chattr +i: %v)", path, err)
	}
	t.Cleanup(func() { runQuiet("chattr", "-i", path) })
}

// A file that cannot be opened for writing opens read-only: reads are
// served, writes refused with ErrReadOnly naming the file.
func TestUnwritableFileOpensReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regional.db")
	fillAndClose(t, path, 10)
	makeUnwritable(t, path)
	s, err := Open(path, Options{Node: "test-1", Clock: hlc.NewClock(nil, time.Minute)})
	if err != nil {
		t.Fatalf("open of a read-only file: %v", err)
	}
	defer s.Close()
	if _, err := s.Get("machines", "m-00003"); err != nil {
		t.Errorf("read: %v", err)
	}
	if _, err := s.Apply(context.Background(), put("m-1", "x")); !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), path) {
		t.Errorf("write: %v, want ErrReadOnly naming the file", err)
	}
	if err := s.Unwritable(); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Unwritable: %v", err)
	}
}

// A full disk (here: the process's file size limit, which makes writes
// that grow the file fail as a full disk does) fails writes with
// ErrUnwritable, keeps reads, and clears once space is back.
//
// The limit is per process, so the body runs in a child copy of the test
// binary: set in this process it would also fail the writes of tests
// running in parallel and of the testing package itself (its test log).
func TestFullDiskFailsWritesAndRecovers(t *testing.T) {
	if os.Getenv(fullDiskChild) == "" {
		runInChild(t, "TestFullDiskFailsWritesAndRecovers", fullDiskChild)
		return
	}
	path := filepath.Join(t.TempDir(), "regional.db")
	fillAndClose(t, path, 10)
	used := dataPages(t, path) * pageSize
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	lim := old
	lim.Cur = uint64(used) // no write past the pages in use
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip(err)
	}
	restore := func() { syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old) }
	defer restore()
	s, err := Open(path, Options{Node: "test-1", Clock: hlc.NewClock(nil, time.Minute)})
	if err != nil {
		restore()
		t.Fatalf("open on a full disk: %v", err)
	}
	defer s.Close()
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = s.Apply(context.Background(), put(fmt.Sprintf("big-%d", i), strings.Repeat("x", 64<<10)))
	}
	restore()
	if !errors.Is(werr, ErrUnwritable) || !strings.Contains(werr.Error(), path) {
		t.Fatalf("write past the file size limit: %v, want ErrUnwritable naming the file", werr)
	}
	if err := s.Unwritable(); !errors.Is(err, ErrUnwritable) || !strings.Contains(err.Error(), path) {
		t.Errorf("Unwritable on a full disk: %v", err)
	}
	if _, err := s.Get("machines", "m-00003"); err != nil {
		t.Errorf("read on a full disk: %v", err)
	}
	if _, err := s.Apply(context.Background(), put("after", "x")); err != nil {
		t.Fatalf("write once space is back: %v", err)
	}
	if err := s.Unwritable(); err != nil {
		t.Errorf("Unwritable after a successful commit: %v", err)
	}
}

const fullDiskChild = "STRATA_STORE_TEST_FULL_DISK_CHILD"

// runInChild runs the test named name alone in a child copy of this test
// binary with env set. A failure, or a child that did not run the test,
// fails t with the child's output; a skip in the child skips t.
func runInChild(t *testing.T, name, env string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child run of %s: %v\n%s", name, err, out)
	}
	switch {
	case bytes.Contains(out, []byte("--- SKIP: "+name)):
		t.Skipf("child run of %s skipped:\n%s", name, out)
	case !bytes.Contains(out, []byte("--- PASS: "+name)):
		t.Fatalf("child run of %s did not run the test:\n%s", name, out)
	}
}

func runQuiet(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}
