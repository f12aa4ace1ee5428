package reducer

import (
	"errors"
	"path/filepath"
	"time"

	"github.com/strata-state/strata/agent/config"
)

// Defaults for Config fields left zero.
const (
	DefaultTimeout     = 2 * time.Second
	DefaultMemoryLimit = 64 << 20
	DefaultMaxOutput   = 4 << 20
	DefaultMaxInput    = 256 << 20
	DefaultInstances   = 1
)

// Config describes one reducer.
type Config struct {
	// Name identifies the reducer in errors, logs and status. Required.
	Name string
	// Wasm is the path of a .wasm module. Exactly one of Wasm, Source and
	// Module is set.
	Wasm string
	// Source is a Go main package directory, built with the Go toolchain
	// to a wasip1 reactor and cached by content hash (see Build).
	Source string
	// Module is the module's bytes, for callers that hold them already.
	Module []byte
	// Inputs are the regional tables the reducer reads, in the order the
	// guest sees them. Required.
	Inputs []string
	// Outputs are the global records the reducer may write. Required.
	Outputs []string
	// Timeout bounds one run, and the start of an instance. Default 2s.
	Timeout time.Duration
	// MemoryLimit bounds the module's linear memory, in bytes, rounded
	// down to 64 KiB pages. Default 64 MiB.
	MemoryLimit int64
	// MaxOutput bounds the encoded response of one run, in bytes. Default
	// 4 MiB.
	MaxOutput int64
	// MaxInput bounds the encoded request of one run, in bytes. Default
	// 256 MiB (and never more than MemoryLimit).
	MaxInput int64
	// Instances is how many module instances may run at once; each holds
	// up to MemoryLimit of memory. Default 1.
	Instances int
}

// ConfigFrom converts an agent.toml [[reducers]] entry. Relative wasm and
// source paths are resolved against baseDir (config.Load already makes
// them relative to the config file; pass "" to keep them as they are).
func ConfigFrom(r config.Reducer, baseDir string) Config {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) || baseDir == "" {
			return p
		}
		return filepath.Join(baseDir, p)
	}
	return Config{
		Name:        r.Name,
		Wasm:        abs(r.Wasm),
		Source:      abs(r.Source),
		Inputs:      r.Inputs,
		Outputs:     r.Outputs,
		Timeout:     r.Timeout.Duration,
		MemoryLimit: int64(r.MemoryLimit),
		MaxOutput:   int64(r.MaxOutput),
	}
}

// withDefaults returns c with zero fields defaulted, or an error naming
// the first bad field.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Name == "":
		return c, errors.New("no name")
	case len(c.Inputs) == 0:
		return c, errors.New("no inputs")
	case len(c.Outputs) == 0:
		return c, errors.New("no outputs")
	}
	n := 0
	for _, set := range []bool{c.Wasm != "", c.Source != "", c.Module != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return c, errors.New("set exactly one of wasm and source")
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MemoryLimit <= 0 {
		c.MemoryLimit = DefaultMemoryLimit
	}
	if c.MaxOutput <= 0 {
		c.MaxOutput = DefaultMaxOutput
	}
	if c.MaxInput <= 0 {
		c.MaxInput = DefaultMaxInput
	}
	c.MaxInput = min(c.MaxInput, c.MemoryLimit)
	if c.Instances <= 0 {
		c.Instances = DefaultInstances
	}
	return c, nil
}
