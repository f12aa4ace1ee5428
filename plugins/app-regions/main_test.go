package main

import (
	"testing"

	"github.com/strata-state/strata/plugins/fleetv1"
	"github.com/strata-state/strata/sdk/sdktest"
)

// The golden fixture is shared with `strata reducer test`:
//
//	strata reducer test app-regions.wasm --contract contracts \
//	    --rows testdata/app-regions/machines.jsonl --region ord \
//	    --golden testdata/app-regions/golden.json
func TestGolden(t *testing.T) {
	c := sdktest.Contract(t, "../../contracts")
	rows := sdktest.Rows(t, c, "machines", "../../testdata/app-regions/machines.jsonl")
	recs := sdktest.Run(t, c, Reduce, "ord", map[string][][]byte{"machines": rows})
	sdktest.Golden(t, c, "../../testdata/app-regions/golden.json", recs)
}

func TestReduce(t *testing.T) {
	started, stopped := fleetv1.MachineState_MACHINE_STATE_STARTED, fleetv1.MachineState_MACHINE_STATE_STOPPED
	cases := []struct {
		name     string
		machines []*fleetv1.Machine
		want     map[string]fleetv1.AppPlacement
	}{
		{name: "no machines", want: map[string]fleetv1.AppPlacement{}},
		{
			name: "healthy and unhealthy",
			machines: []*fleetv1.Machine{
				{Id: "m1", App: "web", State: started, Healthy: true},
				{Id: "m2", App: "web", State: started, Healthy: false},
				{Id: "m3", App: "web", State: started, Healthy: true},
			},
			want: map[string]fleetv1.AppPlacement{"web": {App: "web", Serving: true, HealthyMachines: 2}},
		},
		{
			name: "started but none healthy",
			machines: []*fleetv1.Machine{
				{Id: "m1", App: "api", State: started},
			},
			want: map[string]fleetv1.AppPlacement{"api": {App: "api"}},
		},
		{
			name: "only stopped machines publish nothing",
			machines: []*fleetv1.Machine{
				{Id: "m1", App: "db", State: stopped, Healthy: true},
			},
			want: map[string]fleetv1.AppPlacement{},
		},
	}
	c := sdktest.Contract(t, "../../contracts")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs := sdktest.Run(t, c, Reduce, "ord", map[string][][]byte{"machines": sdktest.Encode(tc.machines...)})
			if len(recs) != len(tc.want) {
				t.Fatalf("got %d records, want %d", len(recs), len(tc.want))
			}
			for _, rec := range recs {
				got := sdktest.Decode[fleetv1.AppPlacement](t, rec)
				if want, ok := tc.want[rec.Key]; !ok || *got != want {
					t.Errorf("record %s = %+v, want %+v", rec.Key, got, want)
				}
			}
		})
	}
}
