//go:build race

package main

// raceEnabled reports whether the race detector is on: tests that start
// many reducer hosts skip then, as wazero compiles far slower under it.
const raceEnabled = true
