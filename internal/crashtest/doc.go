// Package crashtest holds the crash rounds (crash_test.go): the real
// strata agent binary, written to over HTTP by several clients at once,
// killed with SIGKILL at random moments and restarted, and checked against
// a record of the operations it acknowledged. It has no code of its own;
// docs/RELIABILITY.md says how to run the long form.
package crashtest
