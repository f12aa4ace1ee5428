package contracts

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

func TestDecodeJSON(t *testing.T) {
	s := table(t, example(t), "machines")
	m, err := s.DecodeJSON([]byte(machineJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(m); err != nil {
		t.Fatalf("valid row: %v", err)
	}
	f := s.Desc.Fields()
	if got := m.Get(f.ByName("private_ip")).String(); got != "fdaa:0:1::2" {
		t.Errorf("private_ip = %q", got)
	}
	if got := m.Get(f.ByName("state")).Enum(); got != 1 {
		t.Errorf("state = %d, want 1 (STARTED)", got)
	}
	// Proto names are accepted too.
	if _, err := s.DecodeJSON([]byte(`{"id": "m-1", "private_ip": "10.0.0.1"}`)); err != nil {
		t.Errorf("proto names: %v", err)
	}
}

func TestDecodeJSONErrors(t *testing.T) {
	s := table(t, example(t), "machines")
	for _, tc := range []struct {
		name, json, field string
		unknown           bool
	}{
		{"unknown top-level", `{"id": "m-1", "colour": "red"}`, "colour", true},
		{"unknown nested", `{"id": "m-1", "updatedAt": {"seconds": 1}}`, "", false},
		{"bad enum", `{"state": "RUNNING"}`, "state", false},
		{"wrong type", `{"healthy": "yes"}`, "healthy", false},
		{"duplicate", `{"id": "a", "id": "b"}`, "id", false},
		{"not an object", `[1]`, "", false},
		{"truncated", `{"id": `, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.DecodeJSON([]byte(tc.json))
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error = %v (%T), want *DecodeError", err, err)
			}
			if de.Schema != "machines" || de.Field != tc.field {
				t.Errorf("Schema, Field = %q, %q; want machines, %q (%v)", de.Schema, de.Field, tc.field, err)
			}
			if tc.field != "" && !strings.Contains(err.Error(), `field "`+tc.field+`"`) {
				t.Errorf("message %q does not name the field", err)
			}
			if !strings.HasPrefix(err.Error(), "contracts: decode machines: ") {
				t.Errorf("message %q", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	c := example(t)
	s := table(t, c, "machines")
	m, err := s.DecodeJSON([]byte(`{"id": "m-1", "app": "web", "state": "MACHINE_STATE_STARTED", "privateIp": "10.0.0.300"}`))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Validate(m)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v (%T), want *ValidationError", err, err)
	}
	want := []Violation{{Field: "private_ip", Rule: "string.ip", Message: "must be a valid IP address"}}
	if !reflect.DeepEqual(ve.Violations, want) {
		t.Errorf("violations = %+v, want %+v", ve.Violations, want)
	}
	if got := err.Error(); got != "contracts: machines: invalid: private_ip: must be a valid IP address [string.ip]" {
		t.Errorf("Error() = %q", got)
	}

	// Every violation is reported.
	m, _ = s.DecodeJSON([]byte(`{"id": "Bad ID", "app": "", "state": "MACHINE_STATE_UNSPECIFIED"}`))
	if !errors.As(s.Validate(m), &ve) {
		t.Fatal("no *ValidationError")
	}
	var got []string
	for _, v := range ve.Violations {
		got = append(got, v.Field+" "+v.Rule)
	}
	if want := []string{"id string.pattern", "app string.min_len", "app string.pattern", "state enum.not_in"}; !slices.Equal(got, want) {
		t.Errorf("violations = %q, want %q", got, want)
	}

	// A message-level CEL rule has no field; "required" is its own rule.
	ts := record(t, shop(t), "tallies")
	tm, _ := ts.DecodeJSON([]byte(`{"low": 5, "high": 1}`))
	if !errors.As(ts.Validate(tm), &ve) {
		t.Fatal("no *ValidationError")
	}
	got = got[:0]
	for _, v := range ve.Violations {
		got = append(got, v.Field+"|"+v.Rule)
	}
	if want := []string{"|tally.bounds", "shop|required"}; !slices.Equal(got, want) {
		t.Errorf("violations = %q, want %q", got, want)
	}

	// A message of another type is refused.
	r := record(t, c, "app_placements")
	if err := r.Validate(m); !errors.Is(err, ErrWrongType) {
		t.Errorf("Validate(Machine) as record = %v, want ErrWrongType", err)
	}
	if err := r.Validate(nil); !errors.Is(err, ErrWrongType) {
		t.Errorf("Validate(nil) = %v, want ErrWrongType", err)
	}
}

func TestDecodeBinaryStrict(t *testing.T) {
	s := table(t, shop(t), "stock")
	inner := protowire.AppendTag(nil, 1, protowire.BytesType)
	inner = protowire.AppendString(inner, "v")
	unknown := protowire.AppendTag(nil, 99, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 7)

	// outer(6) { inner(1) { value: "v", #99: 7 } }
	nested := func(innerBody []byte) []byte {
		outer := protowire.AppendTag(nil, 1, protowire.BytesType)
		outer = protowire.AppendBytes(outer, innerBody)
		b := protowire.AppendTag(nil, 6, protowire.BytesType)
		return protowire.AppendBytes(b, outer)
	}
	ok := nested(inner)
	if _, err := s.DecodeBinary(ok); err != nil {
		t.Fatalf("clean message: %v", err)
	}

	// The same unknown field at several depths and through a list and a map.
	mapEntry := func(v []byte) []byte {
		e := protowire.AppendTag(nil, 1, protowire.BytesType)
		e = protowire.AppendString(e, "k")
		e = protowire.AppendTag(e, 2, protowire.BytesType)
		e = protowire.AppendBytes(e, v)
		b := protowire.AppendTag(nil, 8, protowire.BytesType)
		return protowire.AppendBytes(b, e)
	}
	innerUnknown := append(slices.Clone(inner), unknown...)
	outerWith := func(body []byte) []byte {
		o := protowire.AppendTag(nil, 1, protowire.BytesType)
		return protowire.AppendBytes(o, body)
	}
	list := protowire.AppendTag(nil, 7, protowire.BytesType)
	list = protowire.AppendBytes(list, outerWith(innerUnknown))
	for _, tc := range []struct {
		name  string
		b     []byte
		field string
		msg   string
	}{
		{"top level", append(slices.Clone(ok), unknown...), "", "shop.v1.Stock"},
		{"two levels deep", nested(innerUnknown), "outer.inner", "shop.v1.Inner"},
		{"in a list", list, "outers.inner", "shop.v1.Inner"},
		{"in a map value", mapEntry(outerWith(innerUnknown)), "by_name.inner", "shop.v1.Inner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.DecodeBinary(tc.b)
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrUnknownField) {
				t.Fatalf("error = %v, want *DecodeError wrapping ErrUnknownField", err)
			}
			if de.Field != tc.field {
				t.Errorf("Field = %q, want %q", de.Field, tc.field)
			}
			if !strings.Contains(err.Error(), "unknown field number 99 in "+tc.msg) {
				t.Errorf("message %q", err)
			}
		})
	}

	if _, err := s.DecodeBinary([]byte{0xff}); err == nil {
		t.Error("garbage decoded")
	}
}

func TestKeyOf(t *testing.T) {
	machines := table(t, example(t), "machines")
	m, _ := machines.DecodeJSON([]byte(machineJSON))
	if k, err := machines.KeyOf(m); err != nil || k != "m-1" {
		t.Errorf("KeyOf = %q, %v; want m-1", k, err)
	}
	// A single key may contain the separator: it is one part.
	set(t, m, "id", "a/b")
	if k, err := machines.KeyOf(m); err != nil || k != "a/b" {
		t.Errorf("KeyOf = %q, %v; want a/b", k, err)
	}
	set(t, m, "id", "")
	var ke *KeyError
	if _, err := machines.KeyOf(m); !errors.As(err, &ke) || ke.Field != "id" {
		t.Errorf("empty key: error = %v, want *KeyError on id", err)
	}

	stock := table(t, shop(t), "stock")
	sm := dynamicpb.NewMessage(stock.Desc)
	set(t, sm, "shop", "paris")
	set(t, sm, "aisle", int32(-3))
	set(t, sm, "kind", protoreflect.EnumNumber(2))
	set(t, sm, "serial", uint64(18446744073709551615))
	if k, err := stock.KeyOf(sm); err != nil || k != "paris/-3/KIND_TOOL/false/18446744073709551615" {
		t.Errorf("KeyOf = %q, %v", k, err)
	}
	set(t, sm, "kind", protoreflect.EnumNumber(9)) // no name: by number
	set(t, sm, "open", true)
	if k, err := stock.KeyOf(sm); err != nil || k != "paris/-3/9/true/18446744073709551615" {
		t.Errorf("KeyOf = %q, %v", k, err)
	}
	set(t, sm, "shop", "a/b")
	if _, err := stock.KeyOf(sm); !errors.As(err, &ke) || ke.Field != "shop" {
		t.Errorf("part with separator: error = %v, want *KeyError on shop", err)
	}
	set(t, sm, "shop", "")
	if _, err := stock.KeyOf(sm); !errors.As(err, &ke) || ke.Field != "shop" {
		t.Errorf("empty part: error = %v, want *KeyError on shop", err)
	}

	if _, err := machines.KeyOf(sm.ProtoReflect()); !errors.Is(err, ErrWrongType) {
		t.Errorf("KeyOf(Stock) as machines = %v, want ErrWrongType", err)
	}
}

func TestCheckKey(t *testing.T) {
	machines := table(t, example(t), "machines")
	m, _ := machines.DecodeJSON([]byte(machineJSON))
	if err := machines.CheckKey(m, "m-1"); err != nil {
		t.Errorf("CheckKey(m-1) = %v", err)
	}
	err := machines.CheckKey(m, "m-2")
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Field != "id" {
		t.Fatalf("error = %v, want *KeyError on id", err)
	}
	if got := err.Error(); got != `contracts: machines: key field "id": message has "m-1", key is "m-2"` {
		t.Errorf("Error() = %q", got)
	}

	stock := table(t, shop(t), "stock")
	sm := dynamicpb.NewMessage(stock.Desc)
	set(t, sm, "shop", "paris")
	set(t, sm, "aisle", int32(4))
	for key, field := range map[string]string{
		"paris/4/KIND_UNSPECIFIED/false/0":  "-",
		"paris/5/KIND_UNSPECIFIED/false/0":  "aisle",
		"paris/4/KIND_BOOK/false/0":         "kind",
		"paris/4/KIND_UNSPECIFIED/false":    "",
		"paris/4/KIND_UNSPECIFIED/false/0/": "",
	} {
		err := stock.CheckKey(sm, key)
		if field == "-" {
			if err != nil {
				t.Errorf("CheckKey(%q) = %v", key, err)
			}
			continue
		}
		if !errors.As(err, &ke) || ke.Field != field {
			t.Errorf("CheckKey(%q) = %v, want *KeyError on %q", key, err, field)
		}
	}
}

func TestJSONFieldNumbers(t *testing.T) {
	s := table(t, example(t), "machines")
	for _, tc := range []struct {
		json  string
		want  []protowire.Number
		field string // of the error; "-" for no error
	}{
		{`{"healthy": false}`, []protowire.Number{4}, "-"},
		{`{"private_ip": null, "privateIp": "x", "id": "m", "updatedAt": {"a": [1, {"b": 2}]}}`, []protowire.Number{1, 6, 7}, "-"},
		{`{}`, nil, "-"},
		{` {"state": 1} `, []protowire.Number{3}, "-"},
		{`{"healthy": false, "colour": "red"}`, nil, "colour"},
		{`{"healthy": }`, nil, "healthy"},
		{`["healthy"]`, nil, ""},
		{`{"healthy": true} {}`, nil, ""},
		{``, nil, ""},
	} {
		got, err := s.JSONFieldNumbers([]byte(tc.json))
		if tc.field == "-" {
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("JSONFieldNumbers(%s) = %v, %v; want %v", tc.json, got, err, tc.want)
			}
			continue
		}
		var de *DecodeError
		if !errors.As(err, &de) || de.Field != tc.field {
			t.Errorf("JSONFieldNumbers(%s) error = %v, want *DecodeError on %q", tc.json, err, tc.field)
		}
	}
	_, err := s.JSONFieldNumbers([]byte(`{"colour": 1}`))
	if !errors.Is(err, ErrUnknownField) || err.Error() != `contracts: decode machines: field "colour": unknown field` {
		t.Errorf("unknown key: %v", err)
	}
}

func TestEncodeJSON(t *testing.T) {
	s := table(t, example(t), "machines")
	m, _ := s.DecodeJSON([]byte(`{"id": "m-1"}`))
	b, err := s.EncodeJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": "m-1", "app": "", "state": "MACHINE_STATE_UNSPECIFIED", "healthy": false,
		"host": "", "privateIp": "", "updatedAt": nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EncodeJSON = %s, want %v", b, want)
	}
	back, err := s.DecodeJSON(b)
	if err != nil || !proto.Equal(back, m) {
		t.Errorf("round trip = %v, %v", back, err)
	}
	if _, err := record(t, example(t), "app_placements").EncodeJSON(m); !errors.Is(err, ErrWrongType) {
		t.Errorf("EncodeJSON(Machine) as record = %v, want ErrWrongType", err)
	}
}
