//go:build race

package reducertest

const raceEnabled = true
