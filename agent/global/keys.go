package global

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MaxKeysPerRegion is how many public keys trusted_regions may list for one
// region: the current key and the next during a rotation.
const MaxKeysPerRegion = 2

// ErrKeyFile is matched by errors about a region key file or a trusted
// regions file.
var ErrKeyFile = errors.New("global: bad key file")

// Signer is a region's signing key.
type Signer struct {
	// Region is the region the key signs for.
	Region string
	key    ed25519.PrivateKey
}

// Public returns the signer's public key.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// NewSigner returns a signer for region with a new random key.
func NewSigner(region string) (*Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Signer{Region: region, key: priv}, nil
}

// PrivateKeyFile returns the key file of s: one line "REGION base64-seed".
func (s *Signer) PrivateKeyFile() []byte {
	return fmt.Appendf(nil, "%s %s\n", s.Region, base64.StdEncoding.EncodeToString(s.key.Seed()))
}

// TrustLine returns the line of trusted_regions for s: "REGION base64-public-key".
func (s *Signer) TrustLine() string {
	return s.Region + " " + base64.StdEncoding.EncodeToString(s.Public())
}

// LoadSigner reads a region key file written by `strata keys gen-region`.
func LoadSigner(path string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	region, key, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok || region == "" {
		return nil, fmt.Errorf("%w: %s: want one line \"REGION base64-key\" (strata keys gen-region REGION -o FILE)", ErrKeyFile, path)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(key))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: %s: the key is not %d base64-encoded bytes", ErrKeyFile, path, ed25519.SeedSize)
	}
	return &Signer{Region: region, key: ed25519.NewKeyFromSeed(seed)}, nil
}

// Trust is the public keys of the regions, from the trusted_regions file.
// It is read-only once built and safe for concurrent use.
type Trust struct {
	keys   map[string][]ed25519.PublicKey // region → keys
	region map[string]string              // string(key) → region
}

// NewTrust returns an empty Trust; Add fills it.
func NewTrust() *Trust {
	return &Trust{keys: map[string][]ed25519.PublicKey{}, region: map[string]string{}}
}

// Add trusts key for region. A key may be trusted for one region only, and
// a region has at most MaxKeysPerRegion keys.
func (t *Trust) Add(region string, key ed25519.PublicKey) error {
	if prev, ok := t.region[string(key)]; ok {
		if prev == region {
			return nil
		}
		return fmt.Errorf("%w: the same key is listed for regions %s and %s", ErrKeyFile, prev, region)
	}
	if len(t.keys[region]) >= MaxKeysPerRegion {
		return fmt.Errorf("%w: region %s has more than %d keys (one current, one next during a rotation)", ErrKeyFile, region, MaxKeysPerRegion)
	}
	t.keys[region] = append(t.keys[region], key)
	t.region[string(key)] = region
	return nil
}

// RegionOf returns the region key is trusted for.
func (t *Trust) RegionOf(key []byte) (string, bool) {
	r, ok := t.region[string(key)]
	return r, ok
}

// Regions returns how many regions have keys.
func (t *Trust) Regions() int { return len(t.keys) }

// ParseTrust reads trusted_regions: lines "REGION base64-public-key";
// blank lines and lines starting with "#" are skipped. name is for errors.
func ParseTrust(b []byte, name string) (*Trust, error) {
	t := NewTrust()
	sc := bufio.NewScanner(bytes.NewReader(b))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: %s:%d: want \"REGION base64-public-key\"", ErrKeyFile, name, line)
		}
		key, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil || len(key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: %s:%d: the key of region %s is not %d base64-encoded bytes", ErrKeyFile, name, line, f[0], ed25519.PublicKeySize)
		}
		if err := t.Add(f[0], key); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}

// LoadTrust reads a trusted_regions file.
func LoadTrust(path string) (*Trust, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTrust(b, path)
}
