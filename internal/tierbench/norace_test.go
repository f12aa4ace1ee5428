//go:build !race

package tierbench

const raceEnabled = false
