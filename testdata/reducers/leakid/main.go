// Command leakid is a reducer that publishes a machine's id, a
// regional_only field, as an app name. The value passes app_placements'
// rules, so it is the leak guard that must reject it.
package main

import (
	"github.com/strata-state/strata/plugins/fleetv1"
	"github.com/strata-state/strata/sdk"
)

func init() {
	sdk.Register(func(in *sdk.Input, out *sdk.Output) error {
		return sdk.Each(in, "machines", func(m *fleetv1.Machine) error {
			if out.Len() == 0 {
				out.Add(&fleetv1.AppPlacement{App: m.Id, Serving: true})
			}
			return nil
		})
	})
}

func main() {}
