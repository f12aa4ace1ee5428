//go:build race

package plumtree

// raceEnabled shortens the simulation under the race detector, which slows
// it about tenfold; the full search runs without it.
const raceEnabled = true
