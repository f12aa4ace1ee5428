//go:build !race

package interrupt

const raceSlowdown = 1
