package sdk_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/strata-state/strata/internal/abi"
	"github.com/strata-state/strata/plugins/fleetv1"
	"github.com/strata-state/strata/sdk"
	"github.com/strata-state/strata/sdk/wkt"
)

func request(version uint32, tables ...abi.Table) []byte {
	return abi.AppendRequest(nil, &abi.Request{Version: version, Reducer: "test", Region: "ord", Tables: tables})
}

func machines(ms ...*fleetv1.Machine) abi.Table {
	t := abi.Table{Name: "machines"}
	for _, m := range ms {
		t.Rows = append(t.Rows, m.StrataAppend(nil))
	}
	return t
}

func response(t *testing.T, r sdk.Reducer, req []byte) *abi.Response {
	t.Helper()
	resp, err := abi.DecodeResponse(sdk.Handle(r, req))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestHandle(t *testing.T) {
	req := request(abi.Version, machines(
		&fleetv1.Machine{Id: "b", App: "web", UpdatedAt: &wkt.Timestamp{Seconds: 5}},
		&fleetv1.Machine{Id: "a", App: "api"},
	))
	var seen []string
	resp := response(t, func(in *sdk.Input, out *sdk.Output) error {
		if in.Region != "ord" || in.Reducer != "test" || in.Len("machines") != 2 {
			t.Errorf("input %+v", in)
		}
		err := sdk.Each(in, "machines", func(m *fleetv1.Machine) error {
			seen = append(seen, m.Id) // strings may be kept
			out.Add(&fleetv1.AppPlacement{App: m.App, Serving: true})
			return nil
		})
		if err != nil {
			return err
		}
		rows, err := sdk.Rows[fleetv1.Machine](in, "machines")
		if err != nil || len(rows) != 2 || rows[0].UpdatedAt == nil || rows[0].UpdatedAt.Seconds != 5 || rows[1].UpdatedAt != nil {
			t.Errorf("Rows = %+v, %v", rows, err)
		}
		return nil
	}, req)
	if resp.Error != "" || len(resp.Records) != 2 {
		t.Fatalf("response %+v", resp)
	}
	if resp.Records[0].Key != "api" || resp.Records[1].Key != "web" || resp.Records[0].Name != "app_placements" {
		t.Errorf("records not sorted by key: %+v", resp.Records)
	}
	if strings.Join(seen, ",") != "b,a" {
		t.Errorf("rows seen in order %v", seen)
	}
}

func TestHandleFailures(t *testing.T) {
	ok := func(in *sdk.Input, out *sdk.Output) error { return nil }
	cases := []struct {
		name  string
		r     sdk.Reducer
		req   []byte
		msg   string
		panic bool
	}{
		{"version", ok, request(2), "request has ABI version 2, this SDK speaks version 1", false},
		{"malformed", ok, []byte{0x22, 0x05}, "sdk: abi: malformed request", false},
		{"error", func(*sdk.Input, *sdk.Output) error { return errors.New("no luck") }, request(1), "no luck", false},
		{"panic", func(*sdk.Input, *sdk.Output) error { panic("boom") }, request(1), "panic: boom", true},
		{"twice", func(_ *sdk.Input, out *sdk.Output) error {
			out.Add(&fleetv1.AppPlacement{App: "web"})
			out.Add(&fleetv1.AppPlacement{App: "web"})
			return nil
		}, request(1), "record app_placements/web added twice", false},
		{"not an input", func(in *sdk.Input, _ *sdk.Output) error {
			_, err := sdk.Rows[fleetv1.Machine](in, "volumes")
			return err
		}, request(1, machines()), `table "volumes" is not an input of reducer "test" (inputs: machines)`, false},
		{"bad row", func(in *sdk.Input, _ *sdk.Output) error {
			return sdk.Each(in, "machines", func(*fleetv1.Machine) error { return nil })
		}, request(1, abi.Table{Name: "machines", Rows: [][]byte{{0x0a, 0x09}}}), "sdk: table machines, row 0: fleet.v1.Machine field 1: wire: truncated input", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := response(t, tc.r, tc.req)
			if !strings.Contains(resp.Error, tc.msg) || resp.Panic != tc.panic || len(resp.Records) != 0 {
				t.Errorf("response %+v, want error %q", resp, tc.msg)
			}
		})
	}
}

// TestEachReusesNested checks that a row without a nested message does not
// show the previous row's.
func TestEachReusesNested(t *testing.T) {
	req := request(1, machines(
		&fleetv1.Machine{Id: "a", UpdatedAt: &wkt.Timestamp{Seconds: 1}},
		&fleetv1.Machine{Id: "b"},
		&fleetv1.Machine{Id: "c", UpdatedAt: &wkt.Timestamp{Nanos: 3}},
	))
	var got []string
	response(t, func(in *sdk.Input, _ *sdk.Output) error {
		return sdk.Each(in, "machines", func(m *fleetv1.Machine) error {
			if m.UpdatedAt == nil {
				got = append(got, m.Id+":nil")
			} else {
				got = append(got, m.Id+":"+string(rune('0'+m.UpdatedAt.Seconds))+string(rune('0'+m.UpdatedAt.Nanos)))
			}
			return nil
		})
	}, req)
	if strings.Join(got, " ") != "a:10 b:nil c:03" {
		t.Errorf("got %v", got)
	}
}
