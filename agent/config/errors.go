package config

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every Problem has one of them as its Kind, so a caller can
// test any error from Parse, Load or Validate with errors.Is, for example
// errors.Is(err, config.ErrUnknownKey).
var (
	// ErrSyntax marks a file that is not valid TOML.
	ErrSyntax = errors.New("config: syntax error")

	// ErrUnknownKey marks a key or table the schema does not have: a typo,
	// a key in the wrong table, or a key in the wrong case (keys are
	// case-sensitive).
	ErrUnknownKey = errors.New("config: unknown key")

	// ErrInvalid marks a bad value: the wrong TOML type, a malformed
	// duration, size, address or name, a required key that is missing, or
	// keys that contradict each other.
	ErrInvalid = errors.New("config: invalid value")
)

// Error is the error Parse, Load and Validate return for a configuration
// with problems. It holds all of them, not just the first, in line order, so
// that one run of `strata agent --check` shows everything to fix.
type Error struct {
	// Problems are the problems found, at least one, ordered by line.
	Problems []Problem
}

// Error lists the problems, one a line.
func (e *Error) Error() string {
	var b strings.Builder
	for i := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Problems[i].Error())
	}
	return b.String()
}

// Unwrap returns the problems, each a *Problem, so that errors.Is and
// errors.As see through an *Error.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i := range e.Problems {
		errs[i] = &e.Problems[i]
	}
	return errs
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	// File is the file name given to Parse or Load; empty from Validate.
	File string

	// Line is the 1-based line of the key, or of its table when the key is
	// missing; 0 when unknown.
	Line int

	// Key is the path of the key the problem is about, such as
	// "regional.sync_interval", "reducers[1].timeout" (array indices count
	// from 0) or "contracts.files[2]"; empty for a syntax error.
	Key string

	// Msg says what is wrong and, where it helps, the expected form, such as
	// `invalid duration "10 s" (want a Go duration like "250ms" or "10s")`.
	Msg string

	// Kind is ErrSyntax, ErrUnknownKey or ErrInvalid.
	Kind error
}

// Error formats the problem as `file:line: key: message`, for example
//
//	agent.toml:14: regional.sync_interval: invalid duration "10 s" (want a Go duration like "250ms" or "10s")
//	agent.toml:12: unknown key "gosip" in [regional]
//
// An unknown key's message already names it, so the key is not repeated.
// Without a file the prefix is "config:".
func (p *Problem) Error() string {
	var b strings.Builder
	switch {
	case p.File != "" && p.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", p.File, p.Line)
	case p.File != "":
		b.WriteString(p.File + ": ")
	default:
		b.WriteString("config: ")
	}
	if p.Key != "" && p.Kind != ErrUnknownKey {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Unwrap returns Kind.
func (p *Problem) Unwrap() error { return p.Kind }

// invalidError is the error of Duration.UnmarshalText and Size.UnmarshalText
// used outside a file; it matches ErrInvalid.
type invalidError string

func (e invalidError) Error() string { return "config: " + string(e) }

func (e invalidError) Is(target error) bool { return target == ErrInvalid }
