package upgradetest

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestNewerDataFormatRefused starts each build on a regional.db that
// records data format 2, newer than both read: each refuses to start with
// the error docs/UPGRADING.md quotes for a rollback, and leaves the file
// as it was.
func TestNewerDataFormatRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two agents and starts processes")
	}
	for _, c := range []struct {
		name, bin, want string
	}{
		{"previous", oldBinary(t), "unsupported data format 2 (this strata reads format 1)"},
		{"this build", newBinary(t), "data format 2 is newer than this strata's (format 1)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newAgent(t, "n0", nil)
			db := filepath.Join(a.dir, "data", "regional.db")
			writeFormat(t, db, 2)
			before, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(a.dir, "agent.toml"), []byte(a.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(c.bin, "agent", "--config", filepath.Join(a.dir, "agent.toml"))
			done := make(chan []byte, 1)
			go func() {
				out, _ := cmd.CombinedOutput()
				done <- out
			}()
			var out []byte
			select {
			case out = <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("%s started on a format 2 file (still running after 30s)", c.name)
			}
			if cmd.ProcessState.Success() {
				t.Fatalf("%s exited 0 on a format 2 file:\n%s", c.name, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Fatalf("%s on a format 2 file said:\n%s\nwant it to say %q", c.name, out, c.want)
			}
			after, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(before) {
				t.Errorf("%s changed the format 2 file it refused", c.name)
			}
		})
	}
}

// writeFormat writes an empty store file at path recording data format v.
func writeFormat(t *testing.T, path string, v uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{"rows", "feed", "digest"} {
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return meta.Put([]byte("format"), binary.AppendUvarint(nil, v))
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}
