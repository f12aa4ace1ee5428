//go:build race

package interrupt

// raceSlowdown scales time bounds: the race detector slows wazero's
// compiler several times over.
const raceSlowdown = 6
