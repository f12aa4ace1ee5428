// Command leakip is a reducer that copies a machine's private_ip, a
// regional_only field, into a global record: the leak guard must reject it.
package main

import (
	"github.com/strata-state/strata/plugins/fleetv1"
	"github.com/strata-state/strata/sdk"
)

func init() {
	sdk.Register(func(in *sdk.Input, out *sdk.Output) error {
		machines, err := sdk.Rows[fleetv1.Machine](in, "machines")
		if err != nil {
			return err
		}
		for _, m := range machines {
			if m.PrivateIp != "" {
				out.Add(&fleetv1.AppPlacement{App: m.PrivateIp, Serving: true})
				return nil
			}
		}
		return nil
	})
}

func main() {}
