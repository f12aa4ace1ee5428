package contracts

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzDecodeBinary feeds outside bytes to the strict binary decoder of a
// table with nesting, lists, maps and recursion. It must never panic, and
// whatever it accepts must survive Validate, KeyOf and a Split/Join round
// trip.
func FuzzDecodeBinary(f *testing.F) {
	s := table(f, shop(f), "stock")
	m, err := s.DecodeJSON([]byte(`{"shop": "paris", "aisle": 3, "kind": "KIND_BOOK", "serial": "9",
		"outer": {"inner": {"value": "v", "back": {"note": "n"}}},
		"outers": [{"note": "a"}, {}], "byName": {"k": {"note": "b"}}, "tags": ["x", "y"], "secret": "s"}`))
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := proto.Marshal(m)
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x32, 0x04, 0x0a, 0x02, 0xa0, 0x06}) // outer.inner with an unknown varint
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := s.DecodeBinary(b)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is %T, want *DecodeError", err, err)
			}
			return
		}
		_ = s.Validate(m)
		_, _ = s.KeyOf(m)
		fields, err := s.Split(m)
		if err != nil {
			t.Fatalf("Split of a decoded message: %v", err)
		}
		back, err := s.Join(fields)
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		if !proto.Equal(back, m) {
			t.Fatalf("round trip changed the message:\n%v\n%v", m, back)
		}
	})
}

// FuzzDecodeJSON feeds outside JSON to DecodeJSON and JSONFieldNumbers. They
// must never panic, and an accepted message must encode and decode back to
// itself.
func FuzzDecodeJSON(f *testing.F) {
	s := table(f, example(f), "machines")
	for _, seed := range []string{
		machineJSON,
		`{"healthy": false}`,
		`{"id": "m", "colour": 1}`,
		`{"updatedAt": "1970-01-01T00:00:00Z", "state": 3}`,
		`{"state": "MACHINE_STATE_NOPE"}`,
		`[]`, `null`, `{"id": "\ud800"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = s.JSONFieldNumbers(b)
		m, err := s.DecodeJSON(b)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is %T, want *DecodeError", err, err)
			}
			return
		}
		_ = s.Validate(m)
		out, err := s.EncodeJSON(m)
		if err != nil {
			t.Fatalf("EncodeJSON of a decoded message: %v", err)
		}
		back, err := s.DecodeJSON(out)
		if err != nil {
			t.Fatalf("DecodeJSON(EncodeJSON(m)): %v\n%s", err, out)
		}
		if !proto.Equal(back, m) {
			t.Fatalf("round trip changed the message:\n%v\n%v", m, back)
		}
	})
}
