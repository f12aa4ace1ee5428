package abi

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// FuzzResponseOutput decodes a reducer's output, bytes a guest wrote, as
// the host does. Beyond FuzzDecodeResponse's survival and re-decoding, it
// checks that a refusal wraps ErrMalformed, that decoding allocates within
// a bound of the input's size, that an accepted output re-encodes to the
// same records, byte for byte, and that what the host accepts, protobuf
// accepts too under sdk/abi/v1/abi.proto with as many records (the ABI
// is normative for guests in other languages).
func FuzzResponseOutput(f *testing.F) {
	desc := abiProto(f, "strata.abi.v1.Response")
	f.Add(AppendResponse(nil, &Response{Records: []Record{{Name: "app_placements", Key: "web", Value: []byte{0x0a, 0x03, 'w', 'e', 'b'}}, {Name: "a", Key: "b"}}}))
	f.Add(AppendResponse(nil, &Response{Error: "boom", Panic: true}))
	f.Add([]byte{0x0a, 0x80, 0x80, 0x80, 0x80, 0x08})
	f.Add([]byte{0x12, 0x00, 0x18, 0x02})
	f.Add([]byte("\x12\x04000\x9c")) // an error string that is not UTF-8 (found by this target; refused since)
	f.Fuzz(func(t *testing.T, b []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r, err := DecodeResponse(b)
		runtime.ReadMemStats(&after)
		if alloc, limit := after.TotalAlloc-before.TotalAlloc, uint64(16<<10+64*len(b)); alloc > limit {
			t.Fatalf("decoding %d bytes allocated %d, over the bound of %d", len(b), alloc, limit)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := DecodeResponse(AppendResponse(nil, r))
		if err != nil {
			t.Fatalf("re-encoded output does not decode: %v", err)
		}
		if again.Error != r.Error || again.Panic != r.Panic || len(again.Records) != len(r.Records) {
			t.Fatalf("round trip: %+v, want %+v", again, r)
		}
		for i, rec := range r.Records {
			g := again.Records[i]
			if g.Name != rec.Name || g.Key != rec.Key || !bytes.Equal(g.Value, rec.Value) {
				t.Fatalf("record %d: %+v after a round trip, want %+v", i, g, rec)
			}
		}
		m := dynamicpb.NewMessage(desc)
		if err := proto.Unmarshal(b, m); err != nil {
			t.Fatalf("the host accepts output that protobuf refuses under abi.proto: %v", err)
		}
		if n := m.Get(desc.Fields().ByName("records")).List().Len(); n != len(r.Records) {
			t.Fatalf("protobuf reads %d records, the host %d", n, len(r.Records))
		}
	})
}

// TestResponseStringsMustBeUTF8: an error, record name or record key that
// is not UTF-8 is malformed output, as abi.proto's string fields make it
// (FuzzResponseOutput found the host accepting them).
func TestResponseStringsMustBeUTF8(t *testing.T) {
	bad := string([]byte{'w', 0xff})
	for name, out := range map[string][]byte{
		"error": AppendResponse(nil, &Response{Error: bad}),
		"name":  AppendResponse(nil, &Response{Records: []Record{{Name: bad, Key: "k"}}}),
		"key":   AppendResponse(nil, &Response{Records: []Record{{Name: "app_placements", Key: bad}}}),
	} {
		if _, err := DecodeResponse(out); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("%s not UTF-8: err = %v, want a malformed response naming UTF-8", name, err)
		}
	}
}
