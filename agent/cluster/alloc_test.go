package cluster

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/strata-state/strata/agent/store"
)

// allocated returns the bytes allocated while fn runs, the least of three
// runs: TotalAlloc counts every goroutine, and one left over from an
// earlier test may allocate meanwhile.
func allocated(fn func()) uint64 {
	least := uint64(math.MaxUint64)
	for range 3 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		fn()
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}

// TestDecodingAllocatesAFewTimesItsInput crafts 3 MiB messages that once
// made the decoder allocate 84 MB before refusing them, and checks what
// decoding costs now, as a multiple of the input.
func TestDecodingAllocatesAFewTimesItsInput(t *testing.T) {
	const size = 3 << 20
	hdr := func(typ msgType) []byte {
		e := &encoder{}
		e.header(header{Type: typ, Sender: "evil"})
		return e.b
	}
	// claim builds a message of prefix, a list count claiming the most
	// items of minSize bytes that the message can hold, and zeros: items
	// with empty names and rows that do not decode.
	claim := func(prefix []byte, minSize int) []byte {
		body := size - len(prefix) - 4
		b := binary.AppendUvarint(prefix, uint64(min(body/minSize, maxChanges)))
		return append(b, make([]byte, size-len(b))...)
	}
	lie := claim(hdr(msgChanges), 3)
	wantLie := claim(append(binary.AppendUvarint(hdr(msgSyncRows), 1), 0), 2)
	// A valid message of 3 MiB of the smallest rows.
	var small []store.Change
	for i := 0; len(small)*30 < size; i++ {
		c := liveChange("evil", "t", fmt.Sprint(i), "")
		c.Row.Fields = nil
		small = append(small, c)
	}
	smallRows := encodeMessage(&changesMsg{header: header{Type: msgChanges, Sender: "evil"}, Changes: small})
	// A valid message of 3 MiB of rows with the most fields, all empty:
	// 3 bytes on the wire each, a 48-byte store.Field decoded.
	var dense []store.Change
	for i := 0; len(dense)*4096*3 < size; i++ {
		c := liveChange("evil", "t", fmt.Sprint(i), "")
		f := c.Row.Fields[0]
		c.Row.Fields = nil
		for n := uint32(1); n <= 4096; n++ {
			f.Num = n
			c.Row.Fields = append(c.Row.Fields, f)
		}
		dense = append(dense, c)
	}
	denseRows := encodeMessage(&changesMsg{header: header{Type: msgChanges, Sender: "evil"}, Changes: dense})
	// A valid message of 3 MiB: rows with long keys.
	var rows []store.Change
	key := strings.Repeat("k", 4000)
	for i := 0; len(rows)*4100 < size; i++ {
		rows = append(rows, liveChange("evil", "machines", key[:3990]+string(rune('a'+i%26))+string(rune('a'+i/26%26)), "v"))
	}
	valid := encodeMessage(&changesMsg{header: header{Type: msgChanges, Sender: "evil"}, Changes: rows})
	// The same number of rows, each with a key one byte over the limit:
	// every item refused, each skipped without being copied.
	for i := range rows {
		rows[i].Key = strings.Repeat("k", store.MaxKeyLen+1)
	}
	overlong := encodeMessage(&changesMsg{header: header{Type: msgChanges, Sender: "evil"}, Changes: rows})

	for _, tc := range []struct {
		name  string
		msg   []byte
		ok    bool
		ratio float64
	}{
		{"changes count lie", lie, false, 0.1},
		{"wanted keys count lie", wantLie, false, 0.1},
		{"valid rows, long keys", valid, true, 3},
		{"valid rows, smallest", smallRows, true, 4},
		// The one case above a few times: store.DecodeRow's Field is
		// 48 bytes for 3 bytes of wire.
		{"valid rows, most empty fields", denseRows, true, 17},
		{"overlong keys", overlong, true, 0.5},
	} {
		var err error
		n := allocated(func() { _, err = decodeMessage(tc.msg) })
		if (err == nil) != tc.ok {
			t.Fatalf("%s: err = %v", tc.name, err)
		}
		ratio := float64(n) / float64(len(tc.msg))
		t.Logf("%s: %d bytes in, %d allocated (%.2fx)", tc.name, len(tc.msg), n, ratio)
		if ratio > tc.ratio {
			t.Errorf("%s: decoding %d bytes allocated %d (%.1fx), want at most %.1fx", tc.name, len(tc.msg), n, ratio, tc.ratio)
		}
	}
}
