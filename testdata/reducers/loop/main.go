// Command loop is a reducer that never returns.
package main

import "github.com/strata-state/strata/sdk"

var n int

func init() {
	sdk.Register(func(in *sdk.Input, out *sdk.Output) error {
		for {
			n++
		}
	})
}

func main() {}
