// Command hugeoutput is a reducer that writes 6 MB of records, over the
// default max_output of 4 MiB.
package main

import (
	"strconv"
	"strings"

	"github.com/strata-state/strata/plugins/fleetv1"
	"github.com/strata-state/strata/sdk"
)

func init() {
	sdk.Register(func(in *sdk.Input, out *sdk.Output) error {
		p := &fleetv1.AppPlacement{App: strings.Repeat("x", 1000), Serving: true}
		for i := range 6000 {
			out.AddAs("app_placements", "app-"+strconv.Itoa(i), p)
		}
		return nil
	})
}

func main() {}
