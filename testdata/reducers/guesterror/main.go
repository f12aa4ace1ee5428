// Command guesterror is a reducer that fails with an error.
package main

import (
	"errors"

	"github.com/strata-state/strata/sdk"
)

func init() {
	sdk.Register(func(in *sdk.Input, out *sdk.Output) error {
		return errors.New("no machines in region " + in.Region + ": refusing to publish nothing")
	})
}

func main() {}
