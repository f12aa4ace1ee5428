package cluster

import (
	"testing"

	"github.com/strata-state/strata/agent/store"
)

// FuzzDecodeMessage feeds arbitrary bytes to the decoder of every message a
// peer can send: it must never panic, and what decodes must re-encode to
// a message that decodes to the same thing.
func FuzzDecodeMessage(f *testing.F) {
	st := store.Stamp{HLC: 1 << 20, Node: 7}
	row := store.Row{CL: 1, Stamp: st, Fields: []store.Field{{Num: 1, Stamp: st, Value: []byte("\x0a\x02m1")}}}
	seeds := []any{
		&changesMsg{header: header{Type: msgChanges, Sender: "n1"}, Changes: []store.Change{{Table: "machines", Key: "m1", Row: row}}},
		&syncDigestMsg{header: header{Type: msgSyncDigest, Sender: "n1"}, Session: 9, Branches: make([]store.Hash, store.Branches)},
		&syncLeavesMsg{header: header{Type: msgSyncLeaves, Sender: "n2"}, Session: 9, Branch: []uint16{3}, Leaves: make([]store.Hash, store.BranchFanout)},
		&syncKeysMsg{header: header{Type: msgSyncKeys, Sender: "n1"}, Session: 9, Leaves: []uint16{200}, Keys: []store.KeyHash{{Table: "machines", Key: "m1"}}},
		&syncRowsMsg{header: header{Type: msgSyncRows, Sender: "n2"}, Session: 9, Rows: []store.Change{{Table: "machines", Key: "m1", Row: row}}, Want: []store.KeyHash{{Table: "machines", Key: "m2"}}, Final: true},
		&transferRequestMsg{header: header{Type: msgTransferRequest, Sender: "n1"}, Session: 4},
		&transferRowsMsg{header: header{Type: msgTransferRows, Sender: "n2"}, Session: 4, Rows: []store.Change{{Table: "machines", Key: "m1", Row: row}}, Final: true},
	}
	for _, s := range seeds {
		f.Add(encodeMessage(s))
	}
	f.Add([]byte{})
	f.Add([]byte{byte(msgChanges), 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		again, err := decodeMessage(encodeMessage(m))
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if string(encodeMessage(again)) != string(encodeMessage(m)) {
			t.Fatal("decode/encode is not stable")
		}
	})
}

func TestMessagesRoundTrip(t *testing.T) {
	st := store.Stamp{HLC: 1 << 20, Node: 7}
	m := &changesMsg{header: header{Type: msgChanges, Sender: "n1"}, Changes: []store.Change{
		{Table: "machines", Key: "m1", Row: store.Row{CL: 2, Stamp: st}},
	}}
	got, err := decodeMessage(encodeMessage(m))
	if err != nil {
		t.Fatal(err)
	}
	cm := got.(*changesMsg)
	if cm.Sender != "n1" || len(cm.Changes) != 1 || cm.Changes[0].Row.CL != 2 || cm.Changes[0].Row.Stamp != st {
		t.Fatalf("round trip: %+v", cm)
	}
}
