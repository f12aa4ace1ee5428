// Command initloop is a reducer whose package initialization never ends:
// the host runs it in _initialize, when an instance starts.
package main

import "github.com/strata-state/strata/sdk"

var n int

func init() {
	sdk.Register(func(in *sdk.Input, out *sdk.Output) error { return nil })
	for {
		n++
	}
}

func main() {}
