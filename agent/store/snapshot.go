package store

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Backups.
//
// A backup is a tar stream: a manifest (backupManifest, as JSON) and then
// one consistent copy of each store file, under the name the file has in
// data_dir ("regional.db", "global.db"). Each copy is one bbolt read
// transaction's view of its file. The transaction only copies the file to
// a temporary file beside it, on the local disk; the copy is then streamed
// to the client with no transaction open, so a slow reader of the backup
// never holds up the store's commits (see DESIGN.md, "Staying up").

// backupManifest is the first entry of a backup.
type backupManifest struct {
	// Format is the store format of the files.
	Format int `json:"format"`
	// Files are the store files that follow, in order.
	Files []string `json:"files"`
	// Created is when the backup was taken.
	Created time.Time `json:"created"`
}

const manifestName = "MANIFEST.json"

// ErrBackup is returned for a backup stream that cannot be restored.
var ErrBackup = errors.New("store: not a strata backup")

// snapshotFile writes a consistent copy of the store's file to a new
// temporary file in the store's directory and returns it, positioned at
// its start; the caller closes and removes it.
func (s *Store) snapshotFile() (*os.File, int64, error) {
	f, err := os.CreateTemp(filepath.Dir(s.path), "."+filepath.Base(s.path)+".backup-*")
	if err != nil {
		return nil, 0, fmt.Errorf("store: backup of %s: %w", s.path, err)
	}
	var n int64
	err = s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(f)
		return err
	})
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, fmt.Errorf("store: backup of %s: %w", s.path, err)
	}
	return f, n, nil
}

// WriteBackup writes a backup of the given stores (file name in data_dir
// → store) to w. Each store's copy is consistent; the copies of different
// stores are taken one after the other.
func WriteBackup(w io.Writer, stores map[string]*Store) error {
	names := make([]string, 0, len(stores))
	for name := range stores {
		names = append(names, name)
	}
	slices.Sort(names)
	tw := tar.NewWriter(w)
	man, _ := json.Marshal(backupManifest{Format: storeFormat, Files: names, Created: time.Now().UTC()})
	if err := tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(len(man)), ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := tw.Write(man); err != nil {
		return err
	}
	for _, name := range names {
		if err := writeBackupFile(tw, name, stores[name]); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeBackupFile(tw *tar.Writer, name string, s *Store) error {
	f, n, err := s.snapshotFile()
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: n, ModTime: time.Now()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// RestoreBackup writes the store files of a backup read from r into dir,
// which must be empty or not exist: restore is for a stopped node, into a
// fresh data_dir. Each file is written to a temporary name, synced,
// checked by opening it as a store, and renamed into place; the directory
// is synced last. It returns the names of the files restored.
func RestoreBackup(r io.Reader, dir string) ([]string, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("store: restore into %s: the directory is not empty (restore into a new data_dir, with the agent stopped)", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("store: restore into %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: restore: %w", err)
	}
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != manifestName || hdr.Size > 1<<20 {
		return nil, fmt.Errorf("%w: no %s at its start", ErrBackup, manifestName)
	}
	var man backupManifest
	if err := json.NewDecoder(tr).Decode(&man); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBackup, manifestName, err)
	}
	if man.Format > storeFormat {
		return nil, fmt.Errorf("store: the backup holds data format %d, newer than this strata's (format %d): restore it with a newer release", man.Format, storeFormat)
	}
	var done []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return done, fmt.Errorf("%w: %v", ErrBackup, err)
		}
		if !slices.Contains(man.Files, hdr.Name) || hdr.Name != filepath.Base(hdr.Name) || slices.Contains(done, hdr.Name) {
			return done, fmt.Errorf("%w: unexpected entry %q", ErrBackup, hdr.Name)
		}
		if err := restoreFile(tr, dir, hdr.Name); err != nil {
			return done, err
		}
		done = append(done, hdr.Name)
	}
	if len(done) != len(man.Files) {
		return done, fmt.Errorf("%w: the manifest lists %v, the stream holds %v (truncated?)", ErrBackup, man.Files, done)
	}
	if err := syncDir(dir); err != nil {
		return done, err
	}
	return done, nil
}

// restoreFile writes one store file of a backup and checks it opens.
func restoreFile(r io.Reader, dir, name string) error {
	final := filepath.Join(dir, name)
	tmp := final + ".restoring"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store: restore %s: %w", name, err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = checkFile(tmp)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: restore %s: %w", name, err)
	}
	return os.Rename(tmp, final)
}

// checkFile opens a store file read-only through guard and reads its
// format, so a damaged or foreign file is refused before it is used.
func checkFile(path string) error {
	db, err := openBolt(path, Options{InitialMmapSize: -1}, true)
	if err != nil {
		return err
	}
	defer db.Close()
	return guard(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta == nil || tx.Bucket(bucketRows) == nil {
				return fmt.Errorf("%w: %s holds no strata store", ErrBackup, filepath.Base(path))
			}
			return nil
		})
	})
}

// syncDir makes the directory entries of renamed files durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
