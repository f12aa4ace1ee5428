//go:build race

package cluster_test

// raceEnabled: the convergence checker's timing assumes code at full
// speed; under the race detector it runs 4× longer, so .ci/run runs it in
// its own step without -race.
const raceEnabled = true
