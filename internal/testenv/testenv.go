// Package testenv reads the settings of the long forms of the project's
// harnesses (crash rounds, convergence checkers) from the environment.
package testenv

import (
	"os"
	"strconv"
	"testing"
)

// Int returns the integer in environment variable name, or def when it is
// unset; a value that is not a number fails t naming the variable.
func Int(t testing.TB, name string, def int64) int64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: not a number", name, v)
	}
	return n
}
