// Package config reads agent.toml, the configuration of a strata agent: it
// decodes the file, fills in defaults and validates the result, reporting
// every problem with the file and line it is on.
//
// # Reading a file
//
// Load reads a file and resolves the relative paths in it against the file's
// directory; Parse does the same work on bytes and leaves paths as written;
// Default parses the embedded default file (strata.DefaultConfig). Each
// returns a *Config with all defaults filled in, or an *Error.
//
// Reading goes in three steps:
//
//  1. Parse the TOML (github.com/BurntSushi/toml) into its generic form.
//  2. Decode that form into a Config that starts from the defaults, by exact
//     key names (decode.go). A key the schema does not have, a key in the
//     wrong case, or a value of the wrong type or form is a problem. Keys
//     that are left out keep their defaults; keys that are written out are
//     taken as written, even when zero, so that `gossip_nodes = 0` is an
//     error rather than a silent 4.
//  3. Validate the Config (validate.go): required keys, names, addresses,
//     ranges and rules across keys.
//
// # Errors
//
// Problems are collected, not returned one at a time: an *Error lists all of
// them, one a line, ordered by line, such as
//
//	agent.toml:12: unknown key "gosip" in [regional]
//	agent.toml:14: regional.sync_interval: invalid duration "10 s" (want a Go duration like "250ms" or "10s")
//
// Each Problem has the file, line, key path and message, and a Kind
// (ErrSyntax, ErrUnknownKey or ErrInvalid) that errors.Is matches. A syntax
// error stops reading at once, since nothing after it can be trusted.
//
// Line numbers come from scanning the source (lines.go), because the TOML
// package does not export key positions.
//
// # Values
//
// Durations are Go duration strings ("250ms", "1m30s"), decoded to Duration.
// Sizes are strings with a unit ("64MiB", "4MB", "512KiB") or a bare number
// of bytes, decoded to Size. Addresses are host:port with a numeric port.
// Every key, its type, default and meaning is listed in docs/CONFIG.md.
//
// # Writing
//
// Config.TOML renders the effective configuration, defaults included, as
// TOML that Parse reads back to an equal Config.
package config
