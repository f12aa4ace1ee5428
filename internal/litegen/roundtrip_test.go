package litegen_test

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/litegen"
	"github.com/strata-state/strata/internal/litegen/internal/allkinds"
)

// TestRoundTrip encodes random messages with protobuf-go, decodes them with
// the generated lite type, encodes that again, and checks that protobuf-go
// reads back an equal message: the lite codec agrees with protobuf on every
// kind of field.
func TestRoundTrip(t *testing.T) {
	c, err := contracts.Compile(context.Background(), os.DirFS("testdata"), []string{"all.proto"})
	if err != nil {
		t.Fatal(err)
	}
	md := c.Files()
	d, err := md.FindDescriptorByName("litegen.test.All")
	if err != nil {
		t.Fatal(err)
	}
	desc := d.(protoreflect.MessageDescriptor)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		want := dynamicpb.NewMessage(desc)
		fill(rng, want, 0)
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var lite allkinds.All
		if err := lite.StrataUnmarshal(b); err != nil {
			t.Fatalf("message %d: lite decode: %v", i, err)
		}
		enc := lite.StrataAppend(nil)
		if len(enc) != lite.StrataSize() {
			t.Fatalf("message %d: StrataSize %d, encoded %d bytes", i, lite.StrataSize(), len(enc))
		}
		got := dynamicpb.NewMessage(desc)
		if err := proto.Unmarshal(enc, got); err != nil {
			t.Fatalf("message %d: protobuf decode of the lite encoding: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("message %d differs after the round trip:\n got %v\nwant %v", i, got, want)
		}
		// protobuf-go's deterministic encoding orders fields and map
		// entries as the lite encoding does.
		if string(enc) != string(b) {
			t.Fatalf("message %d: encodings differ:\n lite %x\nproto %x", i, enc, b)
		}
	}
}

// TestUnknownFieldsSkipped checks that a field the lite type does not know
// is skipped, not an error.
func TestUnknownFieldsSkipped(t *testing.T) {
	// Field 501 = 1 (unknown), then field 1 (an int32) as bytes: wrong type.
	b := []byte{0xa8, 0x1f, 0x01, 0x0a, 0x01, 'x'}
	var m allkinds.All
	if err := m.StrataUnmarshal(b); err != nil {
		t.Fatal(err)
	}
}

// TestTruncatedInput checks that truncated input is an error, not a panic.
func TestTruncatedInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	c, err := contracts.Compile(context.Background(), os.DirFS("testdata"), []string{"all.proto"})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := c.Files().FindDescriptorByName("litegen.test.All")
	for range 200 {
		m := dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))
		fill(rng, m, 0)
		b, _ := proto.Marshal(m)
		for cut := range len(b) {
			var lite allkinds.All
			_ = lite.StrataUnmarshal(b[:cut]) // must not panic
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte{0x08, 0x96, 0x01})
	f.Add([]byte{0x8a, 0x02, 0x03, 0x0a, 0x01, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m allkinds.All
		if m.StrataUnmarshal(b) != nil {
			return
		}
		enc := m.StrataAppend(nil)
		var again allkinds.All
		if err := again.StrataUnmarshal(enc); err != nil {
			t.Fatalf("re-decoding the encoding of a decoded message: %v", err)
		}
	})
}

var _ = litegen.WKTFiles

// fill sets random values in m's fields.
func fill(rng *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if rng.IntN(3) == 0 {
			continue
		}
		switch {
		case fd.IsMap():
			if depth > 1 {
				continue
			}
			mp := m.Mutable(fd).Map()
			for range rng.IntN(4) {
				k := value(rng, fd.MapKey(), m, depth).MapKey()
				if fd.MapValue().Message() != nil {
					v := mp.NewValue()
					fill(rng, v.Message(), depth+1)
					mp.Set(k, v)
				} else {
					mp.Set(k, value(rng, fd.MapValue(), m, depth))
				}
			}
		case fd.IsList():
			if fd.Message() != nil && depth > 1 {
				continue
			}
			l := m.Mutable(fd).List()
			for range rng.IntN(4) {
				if fd.Message() != nil {
					v := l.NewElement()
					fill(rng, v.Message(), depth+1)
					l.Append(v)
				} else {
					l.Append(value(rng, fd, m, depth))
				}
			}
		case fd.Message() != nil:
			if depth > 1 {
				continue
			}
			fill(rng, m.Mutable(fd).Message(), depth+1)
		default:
			m.Set(fd, value(rng, fd, m, depth))
		}
	}
}

func value(rng *rand.Rand, fd protoreflect.FieldDescriptor, _ protoreflect.Message, _ int) protoreflect.Value {
	edge := func(vals ...int64) int64 {
		if rng.IntN(2) == 0 {
			return vals[rng.IntN(len(vals))]
		}
		return rng.Int64() >> rng.IntN(64)
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rng.IntN(2) == 0)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(rng.IntN(4)))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(edge(0, -1, math.MinInt32, math.MaxInt32, 127, 128)))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(edge(0, -1, math.MinInt64, math.MaxInt64, 1<<35))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(edge(0, 1, math.MaxUint32, 128)))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(edge(0, 1, -1, 1<<63-1)))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(rng.NormFloat64()) * float32(rng.IntN(3)))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(rng.NormFloat64() * float64(rng.IntN(3)))
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(randString(rng))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(randString(rng)))
	}
	panic(fd.Kind())
}

func randString(rng *rand.Rand) string {
	n := rng.IntN(4)
	if n == 3 {
		n = 100 + rng.IntN(200) // lengths of two bytes
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(rng.IntN(26))
	}
	return string(b)
}
