package reducer

import (
	"errors"
	"strings"
)

// Kind classifies why a reducer failed to load or to run.
type Kind int

// The kinds of failure. Each has a sentinel error (ErrTimeout for KindTimeout,
// …) that a *Error matches with errors.Is.
const (
	// KindLoad: the module is not WebAssembly, or wazero cannot compile it.
	KindLoad Kind = iota + 1
	// KindBuild: the reducer's Go source does not build.
	KindBuild
	// KindABI: the module does not have strata's exports, or speaks another
	// version of the ABI.
	KindABI
	// KindInput: the input is too large or names a table that is not an input.
	KindInput
	// KindTimeout: the run took longer than the reducer's timeout.
	KindTimeout
	// KindCanceled: the caller's context ended the run.
	KindCanceled
	// KindMemory: the module ran out of memory (memory_limit).
	KindMemory
	// KindTrap: the module trapped or exited (a Go runtime fatal error, an
	// unrecovered panic in a goroutine, an out-of-bounds access).
	KindTrap
	// KindPanic: the reducer function panicked (the SDK recovered it).
	KindPanic
	// KindGuest: the reducer returned an error.
	KindGuest
	// KindOutput: the output is malformed, too large, or holds a record the
	// reducer may not write.
	KindOutput
	// KindClosed: the reducer or its host is closed.
	KindClosed
)

var kindNames = map[Kind]string{
	KindLoad: "load", KindBuild: "build", KindABI: "abi", KindInput: "input", KindTimeout: "timeout",
	KindCanceled: "canceled", KindMemory: "memory", KindTrap: "trap", KindPanic: "panic",
	KindGuest: "guest", KindOutput: "output", KindClosed: "closed",
}

// String returns the kind's name as used in status and metrics, e.g.
// "timeout".
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "unknown"
}

// Sentinel errors, one per Kind: errors.Is(err, reducer.ErrTimeout) is
// true for a *Error of kind KindTimeout.
var (
	ErrLoad     = errors.New("reducer: cannot load module")
	ErrBuild    = errors.New("reducer: build failed")
	ErrABI      = errors.New("reducer: ABI mismatch")
	ErrInput    = errors.New("reducer: bad input")
	ErrTimeout  = errors.New("reducer: timeout")
	ErrCanceled = errors.New("reducer: canceled")
	ErrMemory   = errors.New("reducer: out of memory")
	ErrTrap     = errors.New("reducer: trap")
	ErrPanic    = errors.New("reducer: panic")
	ErrGuest    = errors.New("reducer: reducer failed")
	ErrOutput   = errors.New("reducer: bad output")
	ErrClosed   = errors.New("reducer: closed")
)

var sentinels = map[Kind]error{
	KindLoad: ErrLoad, KindBuild: ErrBuild, KindABI: ErrABI, KindInput: ErrInput, KindTimeout: ErrTimeout,
	KindCanceled: ErrCanceled, KindMemory: ErrMemory, KindTrap: ErrTrap, KindPanic: ErrPanic,
	KindGuest: ErrGuest, KindOutput: ErrOutput, KindClosed: ErrClosed,
}

// Error is a failure of one reducer: loading it or one run. It names the
// reducer and the cause. A failed run leaves the reducer usable.
type Error struct {
	// Reducer is the reducer's name.
	Reducer string
	// Kind classifies the failure.
	Kind Kind
	// Err is the cause, with detail (the guest's message, its stderr, the
	// offending record).
	Err error
}

// Error returns e.g. "reducer app-regions: timeout: run exceeded 2s".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("reducer ")
	b.WriteString(e.Reducer)
	b.WriteString(": ")
	b.WriteString(e.Kind.String())
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's kind.
func (e *Error) Is(target error) bool { return target != nil && sentinels[e.Kind] == target }

func (r *Reducer) fail(kind Kind, err error) *Error {
	return &Error{Reducer: r.cfg.Name, Kind: kind, Err: err}
}
