//go:build race

package agent

// raceEnabled reports whether the race detector is on: tests that start
// many reducer hosts skip then, as wazero compiles far slower under it;
// .ci/run runs them without it.
const raceEnabled = true
