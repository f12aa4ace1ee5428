// Package allkinds is the lite generator's output for testdata/all.proto,
// which has a field of every supported kind; the round-trip test of
// package litegen uses it.
package allkinds

//go:generate go run ../../../cmd/protogen -lite -package allkinds -dir ../../testdata -out . all.proto
