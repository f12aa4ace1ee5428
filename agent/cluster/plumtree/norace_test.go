//go:build !race

package plumtree

const raceEnabled = false
