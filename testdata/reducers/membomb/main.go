// Command membomb is a reducer that allocates until memory runs out.
package main

import "github.com/strata-state/strata/sdk"

var hoard [][]byte

func init() {
	sdk.Register(func(in *sdk.Input, out *sdk.Output) error {
		for {
			b := make([]byte, 1<<20)
			b[0] = 1
			hoard = append(hoard, b)
		}
	})
}

func main() {}
