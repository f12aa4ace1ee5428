package store

import (
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Format versions.
//
// Every store file records the version of its layout under meta/format
// (a uvarint). Open reads it before anything else:
//
//   - the current version opens as is;
//   - an older one is migrated: a copy of the file is first written beside
//     it (regional.db.format<N>.bak), then every migration step from that
//     version to the current one runs in one transaction with the new
//     version, so a crash leaves the file whole in its old format;
//   - a newer one is refused, naming both versions: a downgraded agent
//     must not write a layout it does not know.
//
// History:
//
//	0  files from before the version was recorded (no meta/format key;
//	   same layout as 1)
//	1  buckets rows (a bucket per table), feed, digest, meta; rows as
//	   encoded by AppendRow (rowFormat 1)

// storeFormat is the version of the on-disk layout this release writes.
const storeFormat = 1

// migrations[v] moves a file from version v to v+1, inside the
// transaction that records the new version.
var migrations = map[uint64]func(tx *bolt.Tx) error{
	// 0 → 1: the layout did not change; the version is recorded.
	0: func(*bolt.Tx) error { return nil },
}

// migrate runs every step from version from to storeFormat.
func migrate(tx *bolt.Tx, from uint64) error {
	for v := from; v < storeFormat; v++ {
		step, ok := migrations[v]
		if !ok {
			return fmt.Errorf("no migration from data format %d (this strata reads formats 0 to %d)", v, storeFormat)
		}
		if err := step(tx); err != nil {
			return fmt.Errorf("migrating data format %d to %d: %w", v, v+1, err)
		}
	}
	return nil
}

// backupPath is where the copy taken before migrating from version v
// goes.
func (s *Store) backupPath(v uint64) string { return fmt.Sprintf("%s.format%d.bak", s.path, v) }

// backupBeforeMigration writes a consistent copy of the file beside it,
// synced, before a migration changes it. An existing copy (from an
// earlier attempt that failed) is kept, not overwritten.
func (s *Store) backupBeforeMigration(from uint64) error {
	path := s.backupPath(from)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp := path + ".tmp"
	err := s.view(func(tx *bolt.Tx) error { return tx.CopyFile(tmp, 0o600) })
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path)) // the rename survives a crash before the migration commits
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backing up %s before migrating it from data format %d: %w", s.path, from, err)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
