package main

import (
	"bytes"
	"fmt"
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
			want: map[string]fleetv1.AppPlacement{"web": {App: "web", Serving: true, Capacity: fleetv1.CapacityBand_CAPACITY_BAND_LOW}},
		},
		{
			name: "started but none healthy",
			machines: []*fleetv1.Machine{
				{Id: "m1", App: "api", State: started},
			},
			want: map[string]fleetv1.AppPlacement{"api": {App: "api", Capacity: fleetv1.CapacityBand_CAPACITY_BAND_NONE}},
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

// TestCapacityBands checks the band of each count at and around the bounds
// that fleet.v1.CapacityBand documents, through Reduce.
func TestCapacityBands(t *testing.T) {
	c := sdktest.Contract(t, "../../contracts")
	for _, tc := range []struct {
		healthy int
		want    fleetv1.CapacityBand
	}{
		{0, fleetv1.CapacityBand_CAPACITY_BAND_NONE},
		{1, fleetv1.CapacityBand_CAPACITY_BAND_LOW},
		{3, fleetv1.CapacityBand_CAPACITY_BAND_LOW},
		{4, fleetv1.CapacityBand_CAPACITY_BAND_NORMAL},
		{19, fleetv1.CapacityBand_CAPACITY_BAND_NORMAL},
		{20, fleetv1.CapacityBand_CAPACITY_BAND_HIGH},
		{500, fleetv1.CapacityBand_CAPACITY_BAND_HIGH},
	} {
		// One unhealthy started machine besides, so that 0 healthy still
		// publishes a record.
		ms := []*fleetv1.Machine{{Id: "sick", App: "web", State: fleetv1.MachineState_MACHINE_STATE_STARTED}}
		for i := range tc.healthy {
			ms = append(ms, &fleetv1.Machine{Id: fmt.Sprintf("m%d", i), App: "web", State: fleetv1.MachineState_MACHINE_STATE_STARTED, Healthy: true})
		}
		recs := sdktest.Run(t, c, Reduce, "ord", map[string][][]byte{"machines": sdktest.Encode(ms...)})
		if len(recs) != 1 {
			t.Fatalf("%d healthy: %d records, want 1", tc.healthy, len(recs))
		}
		got := sdktest.Decode[fleetv1.AppPlacement](t, recs[0])
		if got.Capacity != tc.want || got.Serving != (tc.healthy > 0) {
			t.Errorf("%d healthy: capacity %v serving %v, want %v and %v", tc.healthy, got.Capacity, got.Serving, tc.want, tc.healthy > 0)
		}
	}
}

// TestHealthFlipInsideBand: a health flip that stays inside a band leaves
// the record byte for byte the same, so the publisher writes nothing
// global for it; one that crosses a bound changes it.
func TestHealthFlipInsideBand(t *testing.T) {
	c := sdktest.Contract(t, "../../contracts")
	fleet := func(healthy int) []byte {
		var ms []*fleetv1.Machine
		for i := range 30 {
			ms = append(ms, &fleetv1.Machine{Id: fmt.Sprintf("m%d", i), App: "web", State: fleetv1.MachineState_MACHINE_STATE_STARTED, Healthy: i < healthy})
		}
		recs := sdktest.Run(t, c, Reduce, "ord", map[string][][]byte{"machines": sdktest.Encode(ms...)})
		if len(recs) != 1 {
			t.Fatalf("%d healthy: %d records, want 1", healthy, len(recs))
		}
		return recs[0].Value
	}
	if a, b := fleet(25), fleet(24); !bytes.Equal(a, b) {
		t.Errorf("25 → 24 healthy changed the record: %x → %x", a, b)
	}
	if a, b := fleet(20), fleet(19); bytes.Equal(a, b) {
		t.Errorf("20 → 19 healthy (HIGH → NORMAL) left the record as it was: %x", a)
	}
}
