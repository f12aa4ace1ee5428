package contracts

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"pgregory.net/rapid"
)

// genMachine draws a random fleet.v1.Machine, valid or not, with any subset
// of fields set (enum values outside the enum included).
func genMachine(s *Schema) *rapid.Generator[*dynamicpb.Message] {
	return rapid.Custom(func(t *rapid.T) *dynamicpb.Message {
		m := dynamicpb.NewMessage(s.Desc)
		f := s.Desc.Fields()
		str := func(name string) {
			if rapid.Bool().Draw(t, name+"?") {
				m.Set(f.ByName(protoreflect.Name(name)), protoreflect.ValueOfString(rapid.String().Draw(t, name)))
			}
		}
		str("id")
		str("app")
		m.Set(f.ByName("state"), protoreflect.ValueOfEnum(protoreflect.EnumNumber(rapid.Int32Range(-1, 6).Draw(t, "state"))))
		m.Set(f.ByName("healthy"), protoreflect.ValueOfBool(rapid.Bool().Draw(t, "healthy")))
		str("host")
		str("private_ip")
		if rapid.Bool().Draw(t, "updated_at?") {
			ufd := f.ByName("updated_at")
			ts := m.NewField(ufd).Message()
			tf := ts.Descriptor().Fields()
			ts.Set(tf.ByName("seconds"), protoreflect.ValueOfInt64(rapid.Int64().Draw(t, "seconds")))
			ts.Set(tf.ByName("nanos"), protoreflect.ValueOfInt32(rapid.Int32().Draw(t, "nanos")))
			m.Set(ufd, protoreflect.ValueOfMessage(ts))
		}
		return m
	})
}

// genStock draws a random shop.v1.Stock with nesting, lists and maps.
func genStock(s *Schema) *rapid.Generator[*dynamicpb.Message] {
	return rapid.Custom(func(t *rapid.T) *dynamicpb.Message {
		m := dynamicpb.NewMessage(s.Desc)
		f := s.Desc.Fields()
		m.Set(f.ByName("shop"), protoreflect.ValueOfString(rapid.String().Draw(t, "shop")))
		m.Set(f.ByName("aisle"), protoreflect.ValueOfInt32(rapid.Int32().Draw(t, "aisle")))
		outer := func(label string) protoreflect.Value {
			o := dynamicpb.NewMessage(f.ByName("outer").Message())
			of := o.Descriptor().Fields()
			o.Set(of.ByName("note"), protoreflect.ValueOfString(rapid.String().Draw(t, label+".note")))
			if rapid.Bool().Draw(t, label+".inner?") {
				in := dynamicpb.NewMessage(of.ByName("inner").Message())
				in.Set(in.Descriptor().Fields().ByName("value"), protoreflect.ValueOfString(rapid.String().Draw(t, label+".value")))
				o.Set(of.ByName("inner"), protoreflect.ValueOfMessage(in))
			}
			return protoreflect.ValueOfMessage(o)
		}
		if rapid.Bool().Draw(t, "outer?") {
			m.Set(f.ByName("outer"), outer("outer"))
		}
		list := m.Mutable(f.ByName("outers")).List()
		for range rapid.IntRange(0, 3).Draw(t, "outers") {
			list.Append(outer("outers"))
		}
		mp := m.Mutable(f.ByName("by_name")).Map()
		for _, k := range rapid.SliceOfDistinct(rapid.String(), func(s string) string { return s }).Draw(t, "keys") {
			mp.Set(protoreflect.ValueOfString(k).MapKey(), outer("by_name"))
		}
		tags := m.Mutable(f.ByName("tags")).List()
		for _, tag := range rapid.SliceOf(rapid.String()).Draw(t, "tags") {
			tags.Append(protoreflect.ValueOfString(tag))
		}
		return m
	})
}

// TestSplitJoinRoundTrip checks the laws the store relies on: Join inverts
// Split whatever the order of the fields; Split returns known fields, sorted,
// once each; Split is deterministic.
func TestSplitJoinRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *Schema
		gen  func(*Schema) *rapid.Generator[*dynamicpb.Message]
	}{
		{"machines", table(t, example(t), "machines"), genMachine},
		{"stock", table(t, shop(t), "stock"), genStock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				m := tc.gen(tc.s).Draw(rt, "m")
				fields, err := tc.s.Split(m)
				if err != nil {
					rt.Fatal(err)
				}
				all := tc.s.FieldNumbers()
				for i, fv := range fields {
					if i > 0 && fields[i-1].Num >= fv.Num {
						rt.Fatalf("fields not sorted and unique: %v then %v", fields[i-1].Num, fv.Num)
					}
					if _, ok := slices.BinarySearch(all, fv.Num); !ok {
						rt.Fatalf("field %d not in FieldNumbers", fv.Num)
					}
				}
				shuffled := rapid.Permutation(fields).Draw(rt, "order")
				back, err := tc.s.Join(shuffled)
				if err != nil {
					rt.Fatal(err)
				}
				if !proto.Equal(back, m) {
					rt.Fatalf("Join(Split(m)) = %v, want %v", back, m)
				}
				again, err := tc.s.Split(back)
				if err != nil {
					rt.Fatal(err)
				}
				if !equalFields(again, fields) {
					rt.Fatalf("Split not deterministic: %v then %v", fields, again)
				}
			})
		})
	}
}

func equalFields(a, b []FieldValue) bool {
	return slices.EqualFunc(a, b, func(x, y FieldValue) bool {
		return x.Num == y.Num && bytes.Equal(x.Value, y.Value)
	})
}

func TestSplitPresence(t *testing.T) {
	s := table(t, example(t), "machines")
	m, _ := s.DecodeJSON([]byte(`{"id": "m-1", "healthy": false, "host": "h"}`))
	fields, err := s.Split(m)
	if err != nil {
		t.Fatal(err)
	}
	var nums []protowire.Number
	for _, fv := range fields {
		nums = append(nums, fv.Num)
	}
	// healthy=false is the default: not on the wire, so not present.
	if want := []protowire.Number{1, 5}; !slices.Equal(nums, want) {
		t.Errorf("Split numbers = %v, want %v", nums, want)
	}
	// Appending to one value must not clobber the next.
	before := slices.Clone(fields[1].Value)
	_ = append(fields[0].Value, 0xff, 0xff, 0xff)
	if !bytes.Equal(fields[1].Value, before) {
		t.Error("values share capacity")
	}
	// An empty value stands for the default.
	back, err := s.Join(append(fields, FieldValue{Num: 4}))
	if err != nil || !proto.Equal(back, m) {
		t.Errorf("Join with empty value = %v, %v", back, err)
	}

	// Split refuses unknown fields.
	m.SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 50, protowire.VarintType), 1))
	if _, err := s.Split(m); !errors.Is(err, ErrUnknownField) {
		t.Errorf("Split with unknown field = %v, want ErrUnknownField", err)
	}
}

func TestJoinErrors(t *testing.T) {
	s := table(t, example(t), "machines")
	id := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "m-1")
	host := protowire.AppendString(protowire.AppendTag(nil, 5, protowire.BytesType), "h")
	for _, tc := range []struct {
		name   string
		fields []FieldValue
		field  string
	}{
		{"unknown number", []FieldValue{{Num: 50, Value: nil}}, ""},
		{"twice", []FieldValue{{Num: 1, Value: id}, {Num: 1, Value: id}}, "id"},
		{"value of another field", []FieldValue{{Num: 1, Value: host}}, "id"},
		{"truncated", []FieldValue{{Num: 1, Value: id[:len(id)-1]}}, "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Join(tc.fields)
			var de *DecodeError
			if !errors.As(err, &de) || de.Field != tc.field {
				t.Errorf("error = %v, want *DecodeError on %q", err, tc.field)
			}
		})
	}
}

func TestValidRowWithoutIP(t *testing.T) {
	s := table(t, example(t), "machines")
	m, err := s.DecodeJSON([]byte(`{"id": "m-1", "app": "web", "state": "MACHINE_STATE_STOPPED"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(m); err != nil {
		t.Errorf("row without private_ip: %v", err)
	}
}
