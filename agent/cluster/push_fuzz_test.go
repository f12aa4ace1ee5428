package cluster

import (
	"reflect"
	"testing"

	"github.com/strata-state/strata/agent/cluster/plumtree"
	"github.com/strata-state/strata/agent/store"
)

func samplePlum() []plumtree.Message {
	st := store.Stamp{HLC: 1 << 20, Node: 7}
	row := store.Row{CL: 1, Stamp: st, Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte("\x0a\x02m1")}}}
	p := encodePayload(store.Change{Table: "machines", Key: "m1", Row: row})
	return []plumtree.Message{
		{Kind: plumtree.Push, Items: []plumtree.Item{
			{ID: plumtree.ID{Origin: "n1", Epoch: 5, Seq: 1}, Payload: p},
			{ID: plumtree.ID{Origin: "n1", Epoch: 5, Seq: 2}, Payload: p},
			{ID: plumtree.ID{Origin: "n2", Epoch: 9, Seq: 7}, Payload: p},
		}},
		{Kind: plumtree.Push, Repair: true, Items: []plumtree.Item{{ID: plumtree.ID{Origin: "n3", Epoch: 1, Seq: 40}, Payload: p}}},
		{Kind: plumtree.IHave, Hello: true, Heads: []plumtree.Head{{Origin: "n1", Epoch: 5, Seq: 2}}},
		{Kind: plumtree.Graft, Ranges: []plumtree.Range{{Origin: "n1", Epoch: 5, From: 1, To: 2}}},
		{Kind: plumtree.Gone, Ranges: []plumtree.Range{{Origin: "n1", Epoch: 5, From: 3, To: 9}}},
		{Kind: plumtree.Prune},
		{Kind: plumtree.Prune, Heads: []plumtree.Head{{Origin: "n1"}, {Origin: "n2"}}},
	}
}

func TestPlumMessagesRoundTrip(t *testing.T) {
	msgs := samplePlum()
	got, err := decodePlum(encodePlum("n4", msgs))
	if err != nil {
		t.Fatal(err)
	}
	if got.Sender != "n4" || !reflect.DeepEqual(got.Msgs, msgs) {
		t.Fatalf("round trip:\n got %v\nwant %v", got.Msgs, msgs)
	}
	c, err := decodePayload(got.Msgs[0].Items[0].Payload)
	if err != nil || c.Table != "machines" || c.Key != "m1" || c.Row.CL != 1 {
		t.Fatalf("payload: %+v, %v", c, err)
	}
}

func TestPlumDecodeRefusesBadInput(t *testing.T) {
	good := encodePlum("n4", samplePlum())
	for name, b := range map[string][]byte{
		"empty":          {},
		"other type":     {byte(msgChanges)},
		"truncated":      good[:len(good)-3],
		"trailing":       append(append([]byte(nil), good...), 0),
		"unknown kind":   {byte(msgPlum), 1, 'x', 1, 99},
		"huge count":     {byte(msgPlum), 1, 'x', 0xff, 0xff, 0xff, 0xff, 0x0f},
		"zero seq":       encodePlum("x", []plumtree.Message{{Kind: plumtree.Push, Items: []plumtree.Item{{ID: plumtree.ID{Origin: "o", Seq: 0}, Payload: []byte("p")}}}}),
		"inverted range": encodePlum("x", []plumtree.Message{{Kind: plumtree.Graft, Ranges: []plumtree.Range{{Origin: "o", From: 9, To: 3}}}}),
		"huge range":     encodePlum("x", []plumtree.Message{{Kind: plumtree.Graft, Ranges: []plumtree.Range{{Origin: "o", From: 1, To: 1 << 40}}}}),
		"bad flags":      {byte(msgPlum), 1, 'x', 1, byte(plumtree.Push), 7, 0},
	} {
		if _, err := decodePlum(b); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	for name, p := range map[string][]byte{
		"empty":   {},
		"no key":  {8, 'm', 'a', 'c', 'h', 'i', 'n', 'e', 's', 0},
		"bad row": {1, 't', 1, 'k', 0xff},
	} {
		if _, err := decodePayload(p); err == nil {
			t.Errorf("payload %s: decoded without error", name)
		}
	}
}

// FuzzDecodePlum: the push decoder never panics, and what decodes
// re-encodes to the same messages.
func FuzzDecodePlum(f *testing.F) {
	f.Add(encodePlum("n4", samplePlum()))
	f.Add([]byte{byte(msgPlum), 1, 'x', 1, byte(plumtree.Push), 0, 1, 1, 'o', 1, 1, 2, 1, 'p', 1, 'q'})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodePlum(b)
		if err != nil {
			return
		}
		again, err := decodePlum(encodePlum(m.Sender, m.Msgs))
		if err != nil {
			t.Fatalf("re-encoded bundle does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatal("decode/encode is not stable")
		}
		for _, msg := range m.Msgs {
			for _, it := range msg.Items {
				decodePayload(it.Payload) // must not panic
			}
		}
	})
}
