package abi

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/strata-state/strata/contracts"
)

// abiProto compiles sdk/abi/v1/abi.proto, the normative description.
func abiProto(t testing.TB, name protoreflect.FullName) protoreflect.MessageDescriptor {
	t.Helper()
	c, err := contracts.Compile(context.Background(), os.DirFS("../../sdk/abi/v1"), []string{"abi.proto"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Files().FindDescriptorByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return d.(protoreflect.MessageDescriptor)
}

// TestRequestMatchesProto checks the hand encoding against abi.proto.
func TestRequestMatchesProto(t *testing.T) {
	req := &Request{Version: 1, Reducer: "app-regions", Region: "ord", Tables: []Table{
		{Name: "machines", Rows: [][]byte{{0x0a, 0x01, 'a'}, bytes.Repeat([]byte{0x20, 0x01}, 100), {}}},
		{Name: "volumes"},
	}}
	enc := AppendRequest(nil, req)
	if len(enc) != RequestSize(req) {
		t.Fatalf("RequestSize %d, encoded %d", RequestSize(req), len(enc))
	}
	m := dynamicpb.NewMessage(abiProto(t, "strata.abi.v1.Request"))
	if err := proto.Unmarshal(enc, m); err != nil {
		t.Fatal(err)
	}
	again, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil || !bytes.Equal(again, enc) {
		t.Fatalf("protobuf re-encodes differently: %v\n%x\n%x", err, again, enc)
	}
	got, err := DecodeRequest(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || got.Reducer != "app-regions" || got.Region != "ord" || len(got.Tables) != 2 ||
		len(got.Tables[0].Rows) != 3 || !bytes.Equal(got.Tables[0].Rows[1], req.Tables[0].Rows[1]) || got.Tables[1].Name != "volumes" {
		t.Fatalf("decoded %+v", got)
	}
	raw, err := DecodeRequestRaw(enc, new(Request), nil)
	if err != nil || len(raw) != 2 || raw[0].Name != "machines" {
		t.Fatalf("raw: %+v, %v", raw, err)
	}
	var rows [][]byte
	for b := raw[0].Data; ; {
		row, rest, ok, err := NextRow(b)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		rows = append(rows, row)
		b = rest
	}
	if len(rows) != 3 || !bytes.Equal(rows[1], req.Tables[0].Rows[1]) {
		t.Fatalf("NextRow: %d rows", len(rows))
	}
}

func TestResponseMatchesProto(t *testing.T) {
	resp := &Response{Records: []Record{{Name: "app_placements", Key: "web", Value: []byte{0x0a, 0x03, 'w', 'e', 'b'}}, {Name: "x", Key: "y"}}, Error: "e", Panic: true}
	enc := AppendResponse(nil, resp)
	m := dynamicpb.NewMessage(abiProto(t, "strata.abi.v1.Response"))
	if err := proto.Unmarshal(enc, m); err != nil {
		t.Fatal(err)
	}
	if len(m.GetUnknown()) != 0 {
		t.Fatal("unknown fields")
	}
	got, err := DecodeResponse(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Records) != 2 || got.Records[0].Key != "web" || !bytes.Equal(got.Records[0].Value, resp.Records[0].Value) || !got.Panic || got.Error != "e" {
		t.Fatalf("decoded %+v", got)
	}
}

func TestDecodeResponseStrict(t *testing.T) {
	for name, b := range map[string][]byte{
		"unknown field":  protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1),
		"wrong type":     protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1),
		"fixed32":        protowire.AppendFixed32(protowire.AppendTag(nil, 2, protowire.Fixed32Type), 1),
		"truncated":      {0x0a, 0x05, 'a'},
		"record unknown": {0x0a, 0x02, 0x20, 0x01},
	} {
		if _, err := DecodeResponse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(AppendResponse(nil, &Response{Records: []Record{{Name: "a", Key: "b", Value: []byte("c")}}}))
	f.Add([]byte{0x0a, 0xc8, 0x01, 'b'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResponse(b)
		if err != nil {
			return
		}
		again, err := DecodeResponse(AppendResponse(nil, r))
		if err != nil || len(again.Records) != len(r.Records) || again.Error != r.Error || again.Panic != r.Panic {
			t.Fatalf("re-decoding: %v", err)
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(AppendRequest(nil, &Request{Version: 1, Region: "ord", Tables: []Table{{Name: "t", Rows: [][]byte{{1}}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeRequest(b)
		raw, err := DecodeRequestRaw(b, new(Request), nil)
		if err != nil {
			return
		}
		for _, tb := range raw {
			for data := tb.Data; ; {
				_, rest, ok, err := NextRow(data)
				if err != nil || !ok {
					break
				}
				data = rest
			}
		}
	})
}
