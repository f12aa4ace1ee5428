// Package strata holds the files embedded in the strata binary that live at
// the repository root, such as the default agent.toml.
package strata

import _ "embed"

// DefaultConfig is the root agent.toml: a one-node deployment on loopback
// that `strata agent` runs when no --config is given.
//
//go:embed agent.toml
var DefaultConfig []byte
