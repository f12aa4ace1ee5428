package wire

import (
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// TestVarintMatchesProtowire compares the unrolled varint code with
// protobuf-go's on edge cases and random values of every length.
func TestVarintMatchesProtowire(t *testing.T) {
	vals := []uint64{0, 1, 127, 128, 16383, 16384, 1<<21 - 1, 1 << 21, 1<<28 - 1, 1 << 28, 1<<35 - 1, 1 << 35,
		1<<42 - 1, 1 << 42, 1<<49 - 1, 1 << 49, 1<<56 - 1, 1 << 56, 1<<63 - 1, 1 << 63, math.MaxUint64}
	rng := rand.New(rand.NewPCG(1, 1))
	for range 10000 {
		vals = append(vals, rng.Uint64()>>rng.IntN(64))
	}
	for _, v := range vals {
		got := AppendVarint(nil, v)
		want := protowire.AppendVarint(nil, v)
		if string(got) != string(want) || SizeVarint(v) != len(want) {
			t.Fatalf("%d: AppendVarint %x, protowire %x (size %d)", v, got, want, SizeVarint(v))
		}
		dv, n, err := ConsumeVarint(got)
		if err != nil || dv != v || n != len(got) {
			t.Fatalf("%d: ConsumeVarint = %d, %d, %v", v, dv, n, err)
		}
		if len(got) > 1 {
			if _, _, err := ConsumeVarint(got[:len(got)-1]); err != ErrTruncated {
				t.Fatalf("%d truncated: %v", v, err)
			}
		}
	}
	if _, _, err := ConsumeVarint([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}); err != ErrOverflow {
		t.Fatalf("overflow: %v", err)
	}
}

func TestTagsAndZigZag(t *testing.T) {
	for _, num := range []int32{1, 15, 16, 2047, 2048, 536870911} {
		for _, typ := range []Type{VarintType, Fixed64Type, BytesType, Fixed32Type} {
			b := AppendTag(nil, num, typ)
			gn, gt, n, err := ConsumeTag(b)
			if err != nil || gn != num || gt != typ || n != len(b) || SizeTag(num) != len(b) {
				t.Fatalf("tag %d/%d: %d %d %d %v", num, typ, gn, gt, n, err)
			}
		}
	}
	if _, _, _, err := ConsumeTag([]byte{0x00}); err != ErrFieldNumber {
		t.Fatalf("field 0: %v", err)
	}
	for _, v := range []int64{0, -1, 1, math.MinInt64, math.MaxInt64} {
		if EncodeZigZag(v) != protowire.EncodeZigZag(v) || DecodeZigZag(EncodeZigZag(v)) != v {
			t.Fatalf("zigzag %d", v)
		}
	}
}

func FuzzConsume(f *testing.F) {
	f.Add([]byte{0x96, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		num, typ, n, err := ConsumeTag(b)
		pnum, ptyp, pn := protowire.ConsumeTag(b)
		// protowire accepts numbers past 2^29-1 here; ConsumeTag does not.
		pok := pn > 0 && pnum <= protowire.MaxValidNumber
		if (err == nil) != pok || (err == nil && (num != int32(pnum) || typ != Type(ptyp) || n != pn)) {
			t.Fatalf("ConsumeTag(%x) = %d, %d, %d, %v; protowire %d, %d, %d", b, num, typ, n, err, pnum, ptyp, pn)
		}
		v, n, err := ConsumeVarint(b)
		pv, pn := protowire.ConsumeVarint(b)
		if (err == nil) != (pn > 0) || (err == nil && (v != pv || n != pn)) {
			t.Fatalf("ConsumeVarint(%x) = %d, %d, %v; protowire %d, %d", b, v, n, err, pv, pn)
		}
		for _, typ := range []Type{VarintType, Fixed64Type, BytesType, Fixed32Type} {
			n, err := Skip(b, typ)
			pn := protowire.ConsumeFieldValue(1, protowire.Type(typ), b)
			if (err == nil) != (pn >= 0) || (err == nil && n != pn) {
				t.Fatalf("Skip(%x, %d) = %d, %v; protowire %d", b, typ, n, err, pn)
			}
		}
	})
}
