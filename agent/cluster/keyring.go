package cluster

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// ErrKeyringMode is returned by LoadKeyring for a keyring file that users
// other than its owner may read or write.
var ErrKeyringMode = errors.New("cluster: keyring file is accessible to group or others")

// privateFile refuses a file whose mode grants group or others any access.
// Windows has no such mode bits.
func privateFile(f *os.File) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if mode := st.Mode().Perm(); mode&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o; run chmod 600 %s", ErrKeyringMode, f.Name(), mode, f.Name())
	}
	return nil
}

// LoadKeyring reads a tier's key file: one base64-encoded AES key (16, 24
// or 32 bytes) per line, the first being the primary key used to encrypt;
// the others are accepted for decryption, which is how keys rotate (add
// the new key second, deploy, move it first, deploy, remove the old one).
// Blank lines and lines starting with # are ignored. An empty path means
// no encryption.
//
// The keys are secrets: as ssh does with private keys, a file that group
// or others may read or write is refused with an error naming the chmod
// that fixes it.
func LoadKeyring(path string) ([][]byte, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	defer f.Close()
	if err := privateFile(f); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("keyring %s:%d: not base64: %v", path, line, err)
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("keyring %s:%d: key is %d bytes, want 16, 24 or 32 (AES-128/192/256)", path, line, n)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("keyring %s: no keys (remove the keyring setting to run unencrypted)", path)
	}
	return keys, nil
}
