package store

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/strata-state/strata/agent/hlc"
)

// replica is a model of one node's copy of a single row, driven by the same
// local-write rules as Store.applyLocal, without I/O.
type replica struct {
	node  NodeID
	clock uint64
	row   Row
}

// history runs random operations on a few replicas of one row, with random
// exchanges of whole states between them, and returns every delta produced
// and the final states. Time is a logical counter per replica that jumps
// forward on receipt, like a hybrid clock.
func history(t *rapid.T) (deltas []Row, states []Row) {
	n := rapid.IntRange(1, 4).Draw(t, "replicas")
	reps := make([]*replica, n)
	for i := range reps {
		reps[i] = &replica{node: NodeID(i + 1)}
	}
	steps := rapid.IntRange(0, 30).Draw(t, "steps")
	for s := 0; s < steps; s++ {
		r := reps[rapid.IntRange(0, n-1).Draw(t, "replica")]
		r.clock++
		now := Stamp{HLC: hlc.Timestamp(r.clock), Node: r.node}
		var delta Row
		switch op := rapid.IntRange(0, 3).Draw(t, "op"); {
		case op <= 1: // put or patch some fields (put re-inserts if dead)
			if !r.row.Alive() {
				delta = Row{CL: r.row.CL + 1, Stamp: now}
			} else {
				delta = Row{CL: r.row.CL, Stamp: r.row.Stamp}
			}
			nums := rapid.SliceOfNDistinct(rapid.Uint32Range(1, 5), 1, 5, rapid.ID[uint32]).Draw(t, "fields")
			slices.Sort(nums)
			for _, num := range nums {
				v := rapid.SliceOfN(rapid.Byte(), 0, 3).Draw(t, "value")
				delta.Fields = append(delta.Fields, Field{Num: num, Stamp: now, Value: v})
			}
		case op == 2: // delete
			if !r.row.Alive() {
				continue
			}
			delta = Row{CL: r.row.CL + 1, Stamp: now}
		case op == 3: // receive another replica's state
			o := reps[rapid.IntRange(0, n-1).Draw(t, "from")]
			if latest := uint64(o.row.Latest().HLC); latest > r.clock {
				r.clock = latest
			}
			r.row = Merge(r.row, o.row)
			continue
		}
		deltas = append(deltas, delta)
		r.row = Merge(r.row, delta)
	}
	for _, r := range reps {
		states = append(states, r.row)
	}
	return deltas, states
}

func drawState(t *rapid.T, label string) Row {
	_, states := history(t)
	return states[rapid.IntRange(0, len(states)-1).Draw(t, label)]
}

// rowsEqual compares rows by their canonical encoding, which also checks
// that Merge keeps the encoding's invariants.
func rowsEqual(a, b Row) bool {
	return string(AppendRow(nil, a)) == string(AppendRow(nil, b))
}

func TestMergeCommutative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		_, states := history(t)
		a := states[rapid.IntRange(0, len(states)-1).Draw(t, "a")]
		b := states[rapid.IntRange(0, len(states)-1).Draw(t, "b")]
		if ab, ba := Merge(a, b), Merge(b, a); !rowsEqual(ab, ba) {
			t.Fatalf("Merge(a,b) = %+v\nMerge(b,a) = %+v", ab, ba)
		}
	})
}

func TestMergeAssociative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		deltas, states := history(t)
		pool := append(deltas, states...)
		if len(pool) == 0 {
			return
		}
		pick := func(l string) Row { return pool[rapid.IntRange(0, len(pool)-1).Draw(t, l)] }
		a, b, c := pick("a"), pick("b"), pick("c")
		l, r := Merge(Merge(a, b), c), Merge(a, Merge(b, c))
		if !rowsEqual(l, r) {
			t.Fatalf("(a∨b)∨c = %+v\na∨(b∨c) = %+v", l, r)
		}
	})
}

func TestMergeIdempotent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := drawState(t, "a")
		if aa := Merge(a, a); !rowsEqual(aa, a) {
			t.Fatalf("Merge(a,a) = %+v, want %+v", aa, a)
		}
	})
}

// TestMergeConvergesInAnyOrder delivers every delta of a history to fresh
// replicas in different random orders, with duplicates, and checks they end
// identical: the property replication relies on.
func TestMergeConvergesInAnyOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		deltas, _ := history(t)
		var want Row
		for _, d := range deltas {
			want = Merge(want, d)
		}
		for k := 0; k < 3; k++ {
			order := rapid.Permutation(deltas).Draw(t, fmt.Sprintf("order%d", k))
			dups := rapid.SliceOfN(rapid.IntRange(0, max(len(deltas)-1, 0)), 0, 5).Draw(t, "dups")
			var got Row
			for _, d := range order {
				got = Merge(got, d)
			}
			for _, i := range dups {
				if i < len(deltas) {
					got = Merge(got, deltas[i])
				}
			}
			if !rowsEqual(got, want) {
				t.Fatalf("order %d: got %+v\nwant %+v", k, got, want)
			}
		}
	})
}

func TestMergeSemantics(t *testing.T) {
	s := func(h uint64, n NodeID) Stamp { return Stamp{HLC: hlc.Timestamp(h), Node: n} }
	alive := Row{CL: 1, Stamp: s(1, 1), Fields: []Field{{Num: 1, Stamp: s(1, 1), Value: []byte("a")}, {Num: 2, Stamp: s(1, 1), Value: []byte("x")}}}
	tests := []struct {
		name  string
		a, b  Row
		check func(t *testing.T, r Row)
	}{
		{"later field write wins", alive, Row{CL: 1, Stamp: s(1, 1), Fields: []Field{{Num: 1, Stamp: s(5, 2), Value: []byte("b")}}},
			func(t *testing.T, r Row) {
				if f, _ := r.Field(1); string(f.Value) != "b" {
					t.Fatalf("field 1 = %q", f.Value)
				}
				if f, _ := r.Field(2); string(f.Value) != "x" {
					t.Fatalf("untouched field 2 = %q", f.Value)
				}
			}},
		{"same time, higher node wins", Row{CL: 1, Fields: []Field{{Num: 1, Stamp: s(5, 1), Value: []byte("z")}}}, Row{CL: 1, Fields: []Field{{Num: 1, Stamp: s(5, 2), Value: []byte("a")}}},
			func(t *testing.T, r Row) {
				if f, _ := r.Field(1); string(f.Value) != "a" {
					t.Fatalf("field 1 = %q", f.Value)
				}
			}},
		{"delete beats concurrent update", Row{CL: 2, Stamp: s(2, 1)}, Row{CL: 1, Stamp: s(1, 1), Fields: []Field{{Num: 1, Stamp: s(9, 2), Value: []byte("late")}}},
			func(t *testing.T, r Row) {
				if r.Alive() || len(r.Fields) != 0 {
					t.Fatalf("got %+v, want tombstone", r)
				}
			}},
		{"re-insert beats delete and drops old fields", Row{CL: 2, Stamp: s(2, 1)}, Row{CL: 3, Stamp: s(3, 2), Fields: []Field{{Num: 2, Stamp: s(3, 2), Value: []byte("new")}}},
			func(t *testing.T, r Row) {
				if !r.Alive() || len(r.Fields) != 1 || string(r.Fields[0].Value) != "new" {
					t.Fatalf("got %+v", r)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, Merge(tc.a, tc.b))
			tc.check(t, Merge(tc.b, tc.a))
		})
	}
}

func TestRowEncodingRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := drawState(t, "row")
		if r.CL == 0 {
			return
		}
		enc := AppendRow(nil, r)
		got, err := DecodeRow(enc)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !got.Equal(r) {
			t.Fatalf("round trip: got %+v want %+v", got, r)
		}
	})
}

func FuzzDecodeRow(f *testing.F) {
	f.Add(AppendRow(nil, Row{CL: 1, Stamp: Stamp{HLC: 5, Node: 9}, Fields: []Field{{Num: 1, Stamp: Stamp{HLC: 5, Node: 9}, Value: []byte("abc")}}}))
	f.Add(AppendRow(nil, Row{CL: 2, Stamp: Stamp{HLC: 7, Node: 1}}))
	f.Add([]byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRow(b)
		if err != nil {
			return
		}
		// Whatever decodes must survive a canonical re-encoding intact.
		again, err := DecodeRow(AppendRow(nil, r))
		if err != nil || !again.Equal(r) {
			t.Fatalf("re-encoding of %x: %+v, %v", b, again, err)
		}
	})
}
