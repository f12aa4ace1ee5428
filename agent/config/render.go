package config

import (
	"bytes"
	"fmt"

	"github.com/BurntSushi/toml"
)

// TOML renders c as agent.toml, with every key written out, defaults
// included, so that `strata agent --check` can show the effective
// configuration. Parse reads the result back to an equal Config. Empty lists
// and an absent [global] are left out.
func (c *Config) TOML() ([]byte, error) {
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	enc.Indent = ""
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("config: render: %w", err)
	}
	return b.Bytes(), nil
}
