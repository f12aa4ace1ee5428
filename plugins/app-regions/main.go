// Command app-regions is strata's example reducer. From the region's
// machines it publishes one app_placements record per app that has at least
// one started machine in the region: serving is true when at least one of
// those machines is healthy, and capacity says roughly how many are, in the
// contract's fixed bands (fleet.v1.CapacityBand), so that a health flip
// changes the record only when it crosses a band.
//
// Build it with
//
//	strata reducer build ./plugins/app-regions -o app-regions.wasm
//
// or let the agent build it from source (source = "plugins/app-regions").
package main

import (
	"github.com/strata-state/strata/plugins/fleetv1"
	"github.com/strata-state/strata/sdk"
)

func init() { sdk.Register(Reduce) }

// Reduce projects machines (fleet.v1.Machine) to app_placements
// (fleet.v1.AppPlacement).
func Reduce(in *sdk.Input, out *sdk.Output) error {
	apps := map[string]*fleetv1.AppPlacement{}
	healthy := map[string]int{}
	err := sdk.Each(in, "machines", func(m *fleetv1.Machine) error {
		if m.State != fleetv1.MachineState_MACHINE_STATE_STARTED {
			return nil
		}
		p := apps[m.App]
		if p == nil {
			// m.App may be kept: strings stay valid after the callback.
			p = &fleetv1.AppPlacement{App: m.App}
			apps[m.App] = p
		}
		if m.Healthy {
			p.Serving = true
			healthy[m.App]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	for app, p := range apps {
		p.Capacity = band(healthy[app])
		out.Add(p)
	}
	return nil
}

// band is the capacity band of n started, healthy machines, with the
// bounds fleet.v1.CapacityBand documents.
func band(n int) fleetv1.CapacityBand {
	switch {
	case n == 0:
		return fleetv1.CapacityBand_CAPACITY_BAND_NONE
	case n <= 3:
		return fleetv1.CapacityBand_CAPACITY_BAND_LOW
	case n <= 19:
		return fleetv1.CapacityBand_CAPACITY_BAND_NORMAL
	default:
		return fleetv1.CapacityBand_CAPACITY_BAND_HIGH
	}
}

// main is not called: the module is a reactor, and the host calls Reduce
// through the SDK's exports.
func main() {}
