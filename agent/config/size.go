package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes, written in agent.toml as a string with a unit,
// such as "64MiB", "4MB", "512KiB", "1GiB" or "100B", or as a bare integer
// number of bytes. Binary units (KiB, MiB, GiB, TiB) are powers of 1024,
// decimal units (KB, MB, GB, TB) powers of 1000. Units are case-sensitive and
// follow the number without a space.
type Size uint64

// Units for Size values.
const (
	B   Size = 1
	KB  Size = 1000 * B
	MB  Size = 1000 * KB
	GB  Size = 1000 * MB
	TB  Size = 1000 * GB
	KiB Size = 1024 * B
	MiB Size = 1024 * KiB
	GiB Size = 1024 * MiB
	TiB Size = 1024 * GiB
)

// sizeUnits are the units parseSize accepts and String chooses from.
var sizeUnits = []struct {
	name string
	size Size
}{
	{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB},
	{"TB", TB}, {"GB", GB}, {"MB", MB}, {"KB", KB},
	{"B", B},
}

// sizeForm is the expected form, quoted in error messages.
const sizeForm = `a size like "64MiB", "4MB" or "512KiB", or a number of bytes`

// parseSize parses s as a Size; the error names the expected form and is
// without the package prefix, for use in a Problem.
func parseSize(s string) (Size, error) {
	bad := fmt.Errorf("invalid size %q (want %s)", s, sizeForm)
	digits := len(s) - len(strings.TrimLeft(s, "0123456789"))
	if digits == 0 {
		return 0, bad
	}
	n, err := strconv.ParseUint(s[:digits], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q (too large)", s)
	}
	unit := s[digits:]
	if unit == "" {
		return Size(n), nil
	}
	for _, u := range sizeUnits {
		if u.name != unit {
			continue
		}
		if n > math.MaxUint64/uint64(u.size) {
			return 0, fmt.Errorf("invalid size %q (too large)", s)
		}
		return Size(n) * u.size, nil
	}
	return 0, bad
}

// UnmarshalText implements encoding.TextUnmarshaler. The error matches
// ErrInvalid.
func (s *Size) UnmarshalText(text []byte) error {
	v, err := parseSize(string(text))
	if err != nil {
		return invalidError(err.Error())
	}
	*s = v
	return nil
}

// MarshalText implements encoding.TextMarshaler with the form String gives.
func (s Size) MarshalText() ([]byte, error) {
	return []byte(s.String()), nil
}

// String gives the size in its canonical form, the smallest whole number of
// any unit, such as "64MiB", "4MB", "1000KiB" or "100B"; zero is "0B".
func (s Size) String() string {
	if s == 0 {
		return "0B"
	}
	best := sizeUnits[len(sizeUnits)-1] // B divides every size
	for _, u := range sizeUnits {
		if s%u.size == 0 && s/u.size < s/best.size {
			best = u
		}
	}
	return strconv.FormatUint(uint64(s/best.size), 10) + best.name
}
