package store

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-state/strata/agent/hlc"
)

// setFormat rewrites a closed store file's format version; nil deletes it
// (a file from before versions were recorded).
func setFormat(t *testing.T, path string, v []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		if v == nil {
			return tx.Bucket(bucketMeta).Delete(metaFormat)
		}
		return tx.Bucket(bucketMeta).Put(metaFormat, v)
	}); err != nil {
		t.Fatal(err)
	}
}

func formatOf(t *testing.T, path string) (uint64, bool) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v uint64
	var ok bool
	db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(metaFormat); b != nil {
			v, _ = binary.Uvarint(b)
			ok = true
		}
		return nil
	})
	return v, ok
}

// An older file is migrated in place after a copy of it is written beside
// it; the rows survive and the file records the current format.
func TestOlderFormatMigratesWithBackup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regional.db")
	fillAndClose(t, path, 100)
	setFormat(t, path, nil) // format 0: no version recorded
	s, err := Open(path, Options{Node: "test-1", Clock: hlc.NewClock(nil, time.Minute)})
	if err != nil {
		t.Fatalf("open of a format-0 file: %v", err)
	}
	if _, err := s.Get("machines", "m-00042"); err != nil {
		t.Errorf("row after migration: %v", err)
	}
	if n := s.Stats().Rows["machines"]; n != 100 {
		t.Errorf("%d rows after migration, want 100", n)
	}
	s.Close()
	if v, ok := formatOf(t, path); !ok || v != storeFormat {
		t.Errorf("format after migration: %d (recorded %v), want %d", v, ok, storeFormat)
	}
	bak := path + ".format0.bak"
	if _, ok := formatOf(t, bak); ok {
		t.Errorf("the backup copy %s is not the file as it was before migrating", bak)
	}
}

// A newer file is refused with an error naming both versions, and left
// untouched.
func TestNewerFormatRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regional.db")
	fillAndClose(t, path, 10)
	setFormat(t, path, binary.AppendUvarint(nil, storeFormat+6))
	_, err := Open(path, Options{Node: "test-1", Clock: hlc.NewClock(nil, time.Minute)})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("format %d", storeFormat+6)) || !strings.Contains(err.Error(), fmt.Sprintf("format %d", storeFormat)) {
		t.Fatalf("open of a newer file: %v, want an error naming formats %d and %d", err, storeFormat+6, storeFormat)
	}
	if v, _ := formatOf(t, path); v != storeFormat+6 {
		t.Errorf("the newer file was changed: format %d", v)
	}
}
