package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
)

// fileOps are the file system calls whose order makes a replacement
// durable. Tests swap them (atomically: background saves may be running)
// to observe the calls.
type fileOps struct {
	sync   func(*os.File) error
	rename func(oldpath, newpath string) error
}

var currentFileOps atomic.Pointer[fileOps]

func init() {
	currentFileOps.Store(&fileOps{sync: (*os.File).Sync, rename: os.Rename})
}

// writeFileSynced replaces the file at path with data, so that a crash at
// any point leaves either the old file or the new one, complete: it writes
// a temporary file in the same directory, fsyncs it, renames it over path,
// and fsyncs the directory, which makes the rename itself durable. The
// file gets mode perm.
func writeFileSynced(path string, data []byte, perm os.FileMode) (err error) {
	ops := currentFileOps.Load()
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := ops.sync(f); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := ops.rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := ops.sync(d); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
