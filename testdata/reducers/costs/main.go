// Command costs is a reducer for measuring what Go code costs in the
// reducer host (timeouts on): the region is "OP:N", an operation and how
// many times to run it (the decoding ops run once per input row).
// agent/reducer's BenchmarkGuest reports the cost of each.
package main

import (
	"strconv"
	"strings"

	"github.com/strata-state/strata/plugins/fleetv1"
	"github.com/strata-state/strata/sdk"
)

var (
	sink  int
	kept  *fleetv1.AppPlacement
	table = map[string]int{"web": 1, "api": 2, "db": 3, "app-12": 4}
)

//go:noinline
func leaf(i int) int { return i*7 + 1 }

func init() {
	sdk.Register(func(in *sdk.Input, out *sdk.Output) error {
		op, count, _ := strings.Cut(in.Region, ":")
		n, _ := strconv.Atoi(count)
		switch op {
		case "none": // the fixed cost of a call
		case "loop": // one iteration of an empty loop
			for i := range n {
				sink += i
			}
		case "call": // a call of a small function, in a loop
			for i := range n {
				sink += leaf(i)
			}
		case "map": // a map lookup with a string key, in a loop
			for range n {
				sink += table["app-12"]
			}
		case "alloc": // an allocation of a small struct, in a loop
			for range n {
				kept = &fleetv1.AppPlacement{App: "x"}
			}
		case "each": // decoding a row with sdk.Each
			return sdk.Each(in, "machines", func(m *fleetv1.Machine) error {
				sink += len(m.App)
				return nil
			})
		case "rows": // decoding a row with sdk.Rows
			rows, err := sdk.Rows[fleetv1.Machine](in, "machines")
			sink += len(rows)
			return err
		}
		return nil
	})
}

func main() {}
