package reducer_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/reducer"
)

// Hand-made modules, for misbehaviour a Go guest cannot express.

func u32(b []byte, v uint32) []byte {
	for ; v >= 0x80; v >>= 7 {
		b = append(b, byte(v)|0x80)
	}
	return append(b, byte(v))
}

func s64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func wname(b []byte, s string) []byte { return append(u32(b, uint32(len(s))), s...) }

func wsection(id byte, entries ...[]byte) []byte {
	body := u32(nil, uint32(len(entries)))
	for _, e := range entries {
		body = append(body, e...)
	}
	return append(u32([]byte{id}, uint32(len(body))), body...)
}

func wcode(c ...byte) []byte { return append(u32(nil, uint32(len(c))), c...) }

func wexport(n string, kind byte, idx uint32) []byte { return u32(append(wname(nil, n), kind), idx) }

// handmade is a module of ABI v1 that imports one function, of type
// importType, as function 0, has pages of memory, and whose _initialize
// (function 4) is init (locals included); its alloc and reduce do
// nothing.
func handmade(importType, imp []byte, pages uint32, init []byte) []byte {
	bin := []byte("\x00asm\x01\x00\x00\x00")
	bin = append(bin, wsection(1, []byte{0x60, 0, 0}, []byte{0x60, 1, 0x7f, 1, 0x7f},
		[]byte{0x60, 2, 0x7f, 0x7f, 1, 0x7e}, importType)...)
	bin = append(bin, wsection(2, imp)...)
	bin = append(bin, wsection(3, []byte{0}, []byte{1}, []byte{2}, []byte{0})...)
	bin = append(bin, wsection(5, u32([]byte{0}, pages))...)
	bin = append(bin, wsection(7, wexport("strata_abi_v1", 0, 1), wexport("strata_alloc", 0, 2),
		wexport("strata_reduce", 0, 3), wexport("memory", 2, 0), wexport("_initialize", 0, 4))...)
	return append(bin, wsection(10, wcode(0, 0x0b), wcode(0, 0x41, 0, 0x0b), wcode(0, 0x42, 0, 0x0b), wcode(init...))...)
}

// TestInitLogsAreBounded: _initialize that logs in a loop is held to the
// same limit of logs as a call (found by review: it was not limited, and
// flooded the agent's log until its timeout).
func TestInitLogsAreBounded(t *testing.T) {
	// loop: strata.log(0, 0, 1024); br 0
	init := []byte{0, 0x03, 0x40, 0x41, 0, 0x41, 0, 0x41, 0x80, 0x08, 0x10, 0, 0x0c, 0, 0x0b, 0x0b}
	bin := handmade([]byte{0x60, 3, 0x7f, 0x7f, 0x7f, 0}, append(wname(wname(nil, "strata"), "log"), 0, 3), 1, init)
	var logs bytes.Buffer
	w := &syncWriter{w: &logs}
	h, err := reducer.NewHost(reducer.HostOptions{Logger: slog.New(slog.NewTextHandler(w, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	_, err = h.Load(context.Background(), reducer.Config{Name: "logs", Module: bin,
		Inputs: []string{"machines"}, Outputs: []string{"app_placements"}, Timeout: 300 * time.Millisecond})
	checkErr(t, err, "logs", reducer.ErrTimeout, "_initialize")
	w.mu.Lock()
	n := strings.Count(logs.String(), "guest=true")
	w.mu.Unlock()
	if n == 0 || n > 100 {
		t.Fatalf("_initialize logged %d records, want 1 to 100 (the limit of a call)", n)
	}
}

// TestStderrFlood loads a module whose _initialize calls fd_write on
// stderr in a loop, each call with 8 million I/O vectors of 64 MiB: one
// call takes most of a second, and the countdown sees one step per loop.
// It must stop soon after its timeout (found by review: it still ran 5
// minutes later, when it was killed).
// Each host call is charged interrupt.HostCallSteps, and the host's stderr
// refuses writes once the call has ended.
func TestStderrFlood(t *testing.T) {
	const mem = 64 << 20
	// Fill memory with I/O vectors (offset 0, length 64 MiB), then call
	// fd_write(2, iovs=0, count=mem/8-1, nwritten=mem-8) forever.
	init := []byte{1, 1, 0x7f}                              // one i32 local: the address
	init = append(init, 0x03, 0x40, 0x20, 0)                // loop; local.get 0
	init = s64(append(init, 0x42), int64(mem)<<32)          // i64.const length<<32
	init = append(init, 0x37, 3, 0, 0x20, 0, 0x41, 8, 0x6a) // i64.store; local.get 0; i32.const 8; i32.add
	init = append(init, 0x22, 0)                            // local.tee 0
	init = s64(append(init, 0x41), mem-8)                   // i32.const mem-8
	init = append(init, 0x49, 0x0d, 0, 0x0b)                // i32.lt_u; br_if 0; end
	init = append(init, 0x03, 0x40, 0x41, 2, 0x41, 0, 0x41) // loop; i32.const 2; i32.const 0; i32.const
	init = s64(init, mem/8-1)
	init = s64(append(init, 0x41), mem-8)
	init = append(init, 0x10, 0, 0x1a, 0x0c, 0, 0x0b, 0x0b) // call fd_write; drop; br 0; end; end

	bin := handmade(
		[]byte{0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f},
		append(wname(wname(nil, "wasi_snapshot_preview1"), "fd_write"), 0, 3),
		mem>>16, init)

	h := newHost(t)
	done := make(chan error, 1)
	go func() {
		_, err := h.Load(context.Background(), reducer.Config{Name: "flood", Module: bin,
			Inputs: []string{"machines"}, Outputs: []string{"app_placements"}, Timeout: 200 * time.Millisecond})
		done <- err
	}()
	select {
	case err := <-done:
		checkErr(t, err, "flood", reducer.ErrTimeout, "_initialize")
	case <-time.After(30 * time.Second):
		t.Fatal("Load with a timeout of 200ms still runs after 30 s")
	}
}
