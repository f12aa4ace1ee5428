//go:build race

package tierbench

// raceEnabled reports whether the race detector is on: the smoke tests
// start reducer hosts, which wazero compiles far slower under it, so they
// skip then and .ci/run runs them without it.
const raceEnabled = true
