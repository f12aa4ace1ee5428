// Package sdk is the Go SDK for strata reducers: the guest side of strata's
// reducer ABI (see ABI.md beside this file).
//
// A reducer turns the rows of a region's input tables into that region's
// complete set of global records. It is a plain Go function, registered in
// init and built as a WASI reactor:
//
//	package main
//
//	import (
//		"github.com/strata-state/strata/sdk"
//		fleetv1 "github.com/strata-state/strata/contracts/fleet/v1"
//	)
//
//	func init() { sdk.Register(Reduce) }
//
//	func Reduce(in *sdk.Input, out *sdk.Output) error {
//		machines, err := sdk.Rows[*fleetv1.Machine](in, "machines")
//		if err != nil {
//			return err
//		}
//		// ... compute, then for each record:
//		return out.Add(&fleetv1.AppPlacement{App: "web", Serving: true})
//	}
//
//	func main() {}
//
// Build it with `strata reducer build DIR -o FILE.wasm`, which runs
// `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`. The SDK provides the
// module's exports (strata_abi_v1, strata_alloc, strata_reduce), manages the
// buffers the host writes to and reads from, and encodes the records. The
// same function runs natively in `go test` through package sdktest.
//
// # What a reducer may do
//
// A reducer is a pure function of its input: the host gives it no file
// system, no network, no wall clock (time.Now is a fixed, fake clock) and no
// randomness (crypto/rand reads zeros), so every gateway computes the same
// records from the same rows. Its memory and run time are limited by the
// agent's configuration (memory_limit, timeout), and so is the size of its
// output (max_output). It may log through Log, which the host rate-limits.
//
// # Concurrency
//
// The host calls a module instance once at a time; a reducer needs no
// locking. It may keep caches in package variables between calls, but must
// not rely on them: the host may discard an instance and start another at
// any time.
package sdk
