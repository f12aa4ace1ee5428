package cluster

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
)

// opsLog records file operations, as "sync NAME" and "rename OLD NEW"
// (base names), from whichever goroutine makes them.
type opsLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *opsLog) add(op string) {
	l.mu.Lock()
	l.ops = append(l.ops, op)
	l.mu.Unlock()
}

// take returns the operations recorded so far and forgets them.
func (l *opsLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ops := l.ops
	l.ops = nil
	return ops
}

// recordFileOps replaces the file operations for the test with recorders.
func recordFileOps(t *testing.T) *opsLog {
	log := &opsLog{}
	saved := currentFileOps.Load()
	t.Cleanup(func() { currentFileOps.Store(saved) })
	currentFileOps.Store(&fileOps{
		sync: func(f *os.File) error {
			log.add("sync " + filepath.Base(f.Name()))
			return f.Sync()
		},
		rename: func(a, b string) error {
			log.add("rename " + filepath.Base(a) + " " + filepath.Base(b))
			return os.Rename(a, b)
		},
	})
	return log
}

// checkDurableReplace checks that ops hold, in this order, an fsync of a
// temporary file, its rename over name, and an fsync of dir. Operations
// of other saves running in the background may come in between.
func checkDurableReplace(t *testing.T, ops []string, dir, name string) {
	t.Helper()
	fail := func() {
		t.Helper()
		t.Fatalf("replacing %s did %q, want fsync of a temporary file, rename over %s, fsync of %s", name, ops, name, filepath.Base(dir))
	}
	i := slices.IndexFunc(ops, func(op string) bool { return strings.HasPrefix(op, "sync ."+name+".tmp") })
	if i < 0 {
		fail()
	}
	tmp := strings.TrimPrefix(ops[i], "sync ")
	j := slices.Index(ops[i:], "rename "+tmp+" "+name)
	if j < 0 {
		fail()
	}
	if slices.Index(ops[i+j:], "sync "+filepath.Base(dir)) < 0 {
		fail()
	}
}

// TestKeyringAndPeersFilesAreReplacedDurably: the keyring rewritten by a
// key change and the peers file are each written to a temporary file,
// fsynced, renamed over the old one, and the directory fsynced.
func TestKeyringAndPeersFilesAreReplacedDurably(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	key := []byte("0123456789abcdef")
	a := c.add("a", func(cfg *Config) { cfg.Keys = [][]byte{key}; cfg.KeyringFile = filepath.Join(dir, "a.key") })
	b := c.add("b", func(cfg *Config) { cfg.Keys = [][]byte{key} })
	waitFor(t, 10*time.Second, membersSee(2, a, b))

	// The save that follows the join, in the background, is done.
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, err := os.Stat(a.cfg.PeersFile)
		return err == nil && !a.tier.savePending.Load(), fmt.Sprintf("peers file: %v", err)
	})
	ops := recordFileOps(t)
	if err := a.tier.ChangeKey("add", []byte("fedcba9876543210")); err != nil {
		t.Fatal(err)
	}
	checkDurableReplace(t, ops.take(), dir, "a.key")
	if st, err := os.Stat(filepath.Join(dir, "a.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file: %v, %v; want mode 0600", st.Mode(), err)
	}

	a.tier.savePeers()
	checkDurableReplace(t, ops.take(), a.dir, "peers.json")
	if entries, _ := os.ReadDir(a.dir); slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.Contains(e.Name(), ".tmp") }) {
		t.Fatalf("temporary file left in %s", a.dir)
	}
}

// TestKeyringReadableByOthersIsRefused: like ssh with a private key, a
// keyring file that group or others can read is an error naming the
// chmod that fixes it; mode 0600 loads.
func TestKeyringReadableByOthersIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regional.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeyring(path)
		if !errors.Is(err, ErrKeyringMode) || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: err = %v, want ErrKeyringMode naming chmod 600 %s", mode, err, path)
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if keys, err := LoadKeyring(path); err != nil || len(keys) != 1 {
		t.Fatalf("mode 0600: %d keys, %v", len(keys), err)
	}
}

// TestUnencryptedGossipOnAllInterfacesWarns: a tier that binds a
// non-loopback address without a keyring warns at start, naming the key
// to set; on loopback, or with a keyring, it does not.
func TestUnencryptedGossipOnAllInterfacesWarns(t *testing.T) {
	for _, tc := range []struct {
		name string
		bind string
		keys [][]byte
		warn bool
	}{
		{"all interfaces, no keyring", "0.0.0.0:0", nil, true},
		{"all interfaces, keyring", "0.0.0.0:0", [][]byte{[]byte("0123456789abcdef")}, false},
		{"loopback, no keyring", "127.0.0.1:0", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			st, err := store.Open(filepath.Join(t.TempDir(), "r.db"), store.Options{Node: "n", Clock: hlc.NewClock(nil, 0), NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			cfg := fastConfig("n")
			cfg.Bind, cfg.Keys = tc.bind, tc.keys
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			tier, err := New(cfg, st)
			if err != nil {
				t.Fatal(err)
			}
			tier.Close()
			if got := strings.Contains(logs.String(), "[regional].keyring"); got != tc.warn {
				t.Fatalf("warning naming [regional].keyring: %v, want %v; logs:\n%s", got, tc.warn, logs.String())
			}
		})
	}
}
