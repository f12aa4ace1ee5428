package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent/store"
)

func backupCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Save a consistent online backup of the agent's stores to FILE (- for standard output)",
		Long: `backup asks the running agent (GET /v1/backup) for a consistent copy of
each of its stores (regional, and global on a gateway) and writes it to
FILE, a tar archive. The agent keeps serving and committing meanwhile.

A regular FILE (or a new one) is written under a temporary name beside it
and renamed when complete, so FILE is either the old file or the whole
new backup. "-" writes the archive to standard output. An existing FILE
that is not a regular file (a device, a FIFO, or a symlink to one) is
written through as it is, never replaced.`,
		Example: `  strata backup /backups/ord-1.tar
  strata backup - | gzip > ord-1.tar.gz
  strata restore /backups/ord-1.tar --data-dir /var/lib/strata   # agent stopped, empty dir`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			n, err := writeBackup(path, cmd.OutOrStdout(), func(w io.Writer) (int64, error) {
				return f.client().Backup(cmd.Context(), w)
			})
			if err != nil {
				return err
			}
			if path == "-" {
				// The archive is on standard output: the note goes to
				// standard error.
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote the backup to standard output (%d bytes)\n", n)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes)\n", path, n)
			return nil
		},
	}
}

// writeBackup writes the archive that fetch streams to path: "-" is
// stdout; an existing path that is not a regular file (after following
// symlinks: a device, a FIFO, /dev/stdout) is opened and written through;
// anything else is written to a temporary file beside the (resolved)
// path, fsynced and renamed over it. Every write error names path.
func writeBackup(path string, stdout io.Writer, fetch func(io.Writer) (int64, error)) (int64, error) {
	if path == "-" {
		return copyNamed("standard output", stdout, fetch)
	}
	target := path
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return 0, usageError{fmt.Errorf("backup: %s is a directory: give a file name", path)}
		}
		if !fi.Mode().IsRegular() {
			out, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return 0, fmt.Errorf("backup: %w", err)
			}
			n, err := copyNamed(path, out, fetch)
			if cerr := out.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("backup: write %s: %w", path, cerr)
			}
			return n, err
		}
		// A symlink to a regular file: replace the file, keep the link.
		if target, err = filepath.EvalSymlinks(path); err != nil {
			return 0, fmt.Errorf("backup: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("backup: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), ".strata-backup-*")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := copyNamed(path, tmp, fetch)
	if err == nil {
		if err = tmp.Sync(); err != nil {
			err = fmt.Errorf("backup: write %s: %w", path, err)
		}
	}
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("backup: write %s: %w", path, cerr)
	}
	if err != nil {
		return n, err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	return n, nil
}

// copyNamed runs fetch into w; an error writing w is reported as an error
// writing name (the agent's errors are returned as they are).
func copyNamed(name string, w io.Writer, fetch func(io.Writer) (int64, error)) (int64, error) {
	ew := &errWriter{w: w}
	n, err := fetch(ew)
	if ew.err != nil {
		return n, fmt.Errorf("backup: write %s: %w", name, unwrapPath(ew.err))
	}
	return n, err
}

// errWriter remembers the first error of its writer.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// unwrapPath drops an *os.PathError's "write /resolved/name:" prefix, so
// the message names the file once, as the user gave it.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func restoreCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR",
		Short: "Restore a backup into an empty data_dir (offline)",
		Long: `restore writes the stores of a backup taken with "strata backup" into DIR,
which must be empty or not exist; start the agent on DIR afterwards. It
runs without an agent (the node is stopped). The restored node rejoins its
region and catches up on what changed since the backup.

The archive is extracted into a temporary directory (beside DIR, or inside
an existing empty DIR) and moved into place only once every file of it was
read and checked; a truncated or damaged archive leaves DIR as it was.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" {
				return usageError{fmt.Errorf("restore needs --data-dir DIR")}
			}
			in, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			files, err := restoreInto(in, dataDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s into %s\n", strings.Join(files, ", "), dataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data_dir to restore into (empty or new)")
	return cmd
}

// restoreInto restores the backup read from r into dir, which must be empty
// or not exist, all or nothing: the archive is extracted and checked in a
// temporary directory first, removed again if anything fails. A new dir
// is the temporary directory (made beside it) renamed into place; an
// existing empty dir (perhaps a mount point, or a directory systemd made
// with its owner and mode) keeps its inode, and the temporary directory is
// made inside it, so that moving the files in never crosses file systems.
func restoreInto(r io.Reader, dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	entries, err := os.ReadDir(dir)
	existed := err == nil
	// What an interrupted restore left (killed before its deferred
	// removal ran) is not data: removed, so that a retry just works.
	entries = slices.DeleteFunc(entries, func(e os.DirEntry) bool {
		if strings.HasPrefix(e.Name(), ".restoring-") && e.IsDir() {
			os.RemoveAll(filepath.Join(dir, e.Name()))
			return true
		}
		return false
	})
	switch {
	case existed && len(entries) > 0:
		return nil, fmt.Errorf("restore into %s: the directory is not empty (restore into a new data_dir, with the agent stopped)", dir)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("restore into %s: %w", dir, err)
	}
	parent := filepath.Dir(dir)
	tmpParent, pattern := parent, "."+filepath.Base(dir)+".restoring-*"
	if existed {
		tmpParent, pattern = dir, ".restoring-*"
	} else if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("restore into %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(tmpParent, pattern)
	if err != nil {
		return nil, fmt.Errorf("restore into %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp) // nothing left once renamed; everything on failure
	files, err := store.RestoreBackup(r, tmp)
	if err != nil {
		return nil, fmt.Errorf("restore into %s: nothing was restored: %w", dir, err)
	}
	if !existed {
		if err := os.Rename(tmp, dir); err != nil {
			return nil, fmt.Errorf("restore into %s: %w", dir, err)
		}
		return files, syncDir(parent)
	}
	for i, name := range files {
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(dir, name)); err != nil {
			for _, moved := range files[:i] {
				os.Remove(filepath.Join(dir, moved))
			}
			return nil, fmt.Errorf("restore into %s: nothing was restored: %w", dir, err)
		}
	}
	return files, syncDir(dir)
}

// syncDir fsyncs a directory, so the renames in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
