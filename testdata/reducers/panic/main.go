// Command panic is a reducer that panics.
package main

import "github.com/strata-state/strata/sdk"

func init() {
	sdk.Register(func(in *sdk.Input, out *sdk.Output) error {
		panic("boom: reducer fixture panics on purpose")
	})
}

func main() {}
