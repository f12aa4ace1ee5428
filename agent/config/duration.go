package config

import (
	"fmt"
	"strings"
	"time"
)

// Duration is a time.Duration written in agent.toml as a Go duration string,
// such as "250ms", "10s" or "1m30s". A bare TOML integer is rejected rather
// than read as nanoseconds. The embedded time.Duration is the value.
type Duration struct {
	time.Duration
}

// durationForm is the expected form, quoted in error messages.
const durationForm = `a Go duration like "250ms" or "10s"`

// parseDuration parses s as a Duration; the error names the expected form and
// is without the package prefix, for use in a Problem.
func parseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return Duration{}, fmt.Errorf("invalid duration %q (want %s)", s, durationForm)
	}
	return Duration{d}, nil
}

// UnmarshalText implements encoding.TextUnmarshaler. The error matches
// ErrInvalid.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return invalidError(err.Error())
	}
	*d = v
	return nil
}

// MarshalText implements encoding.TextMarshaler with the form String gives.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// String gives the duration in time.Duration's form with zero trailing units
// dropped: "1m" rather than "1m0s", "24h" rather than "24h0m0s".
func (d Duration) String() string {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
