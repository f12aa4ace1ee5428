// Package waitfor is the tests' one way to wait for a condition: poll it
// with a deadline, and fail with what did not converge. Tests never
// synchronise with sleeps.
package waitfor

import (
	"testing"
	"time"
)

// Interval is the time between two checks.
const Interval = 10 * time.Millisecond

// Until calls cond until it returns nil, and fails the test with what, the
// timeout and cond's last error if it has not by then.
func Until(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(Interval)
	}
}
