// Command unknownfield is a reducer whose records carry a field the
// contract does not declare (field 9 of app_placements).
package main

import (
	"github.com/strata-state/strata/plugins/fleetv1"
	"github.com/strata-state/strata/sdk"
	"github.com/strata-state/strata/sdk/wire"
)

// placement is fleet.v1.AppPlacement plus a field 9 the contract lacks.
type placement struct {
	fleetv1.AppPlacement
	secret string
}

func (p *placement) StrataAppend(b []byte) []byte {
	b = p.AppPlacement.StrataAppend(b)
	b = wire.AppendTag(b, 9, wire.BytesType)
	return wire.AppendString(b, p.secret)
}

func (p *placement) StrataSize() int { return len(p.StrataAppend(nil)) }

func init() {
	sdk.Register(func(in *sdk.Input, out *sdk.Output) error {
		p := &placement{AppPlacement: fleetv1.AppPlacement{App: "web", Serving: true, Capacity: fleetv1.CapacityBand_CAPACITY_BAND_LOW}, secret: "extra"}
		out.AddAs("app_placements", "web", p)
		return nil
	})
}

func main() {}
