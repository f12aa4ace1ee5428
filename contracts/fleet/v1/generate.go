// Package fleetv1 holds the Go types of strata's example contract
// (regional.proto: table "machines"; global.proto: record "app_placements"),
// for reducers and Go clients. The .pb.go files are generated; do not edit
// them.
package fleetv1

//go:generate go run ../../../internal/cmd/protogen -dir ../.. -include strata/v1/options.proto fleet/v1/regional.proto fleet/v1/global.proto
