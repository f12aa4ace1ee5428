package config

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"

	"github.com/BurntSushi/toml"

	"github.com/strata-state/strata"
)

// DefaultFilename is the file name that problems in the embedded default
// configuration are reported against.
const DefaultFilename = "agent.toml (embedded default)"

// Parse decodes, defaults and validates one agent.toml. filename is used
// only in error messages. Relative paths are left as written; see Load and
// Resolve.
//
// On any problem, Parse returns a nil Config and an *Error listing every
// problem found: TOML syntax (then nothing else is checked), unknown keys,
// values of the wrong type or form, and failed validation.
func Parse(data []byte, filename string) (*Config, error) {
	raw, err := decodeTOML(data)
	if err != nil {
		return nil, &Error{Problems: []Problem{syntaxProblem(err, filename)}}
	}
	d := &decoder{lines: scanLines(data), bad: map[string]bool{}}
	c := new(Config)
	c.setDefaults()
	d.table(raw, reflect.ValueOf(c).Elem(), "")

	problems := d.problems
	for _, f := range validate(c) {
		if d.bad[f.Key] {
			continue // already reported: the value did not decode
		}
		for _, k := range f.at {
			if f.Line = d.lines.lineOf(k); f.Line > 0 {
				break
			}
		}
		problems = append(problems, f.Problem)
	}
	if len(problems) > 0 {
		for i := range problems {
			problems[i].File = filename
		}
		slices.SortStableFunc(problems, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
		return nil, &Error{Problems: problems}
	}
	return c, nil
}

// syntaxProblem turns an error of the TOML parser into a Problem with the
// line of the error.
func syntaxProblem(err error, filename string) Problem {
	p := Problem{File: filename, Msg: err.Error(), Kind: ErrSyntax}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		p.Line = pe.Position.Line // not pe.Line, which is deprecated and sometimes wrong
		p.Msg = pe.Message
	}
	return p
}

// Load reads, parses and validates the agent.toml at path, then resolves its
// relative paths against the file's directory (see Resolve). Problems are
// reported against path as given.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	c.Resolve(filepath.Dir(path))
	return c, nil
}

// Default parses the embedded default agent.toml (strata.DefaultConfig), the
// one-node deployment `strata agent` runs without --config. Its relative
// paths are left relative to the working directory.
func Default() (*Config, error) {
	return Parse(strata.DefaultConfig, DefaultFilename)
}
