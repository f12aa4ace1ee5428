package interrupt

import (
	"context"
	"runtime"

	"github.com/tetratelabs/wazero/api"
)

const (
	// ImportModule and ImportName name the host function that instrumented
	// code calls every Interval steps: () -> i32, non-zero to stop the
	// call.
	ImportModule = "strata"
	ImportName   = "tick"
	// Interval is how many steps (loop iterations, function calls, bulk
	// copies by their length) the guest runs between calls of the host
	// function: the bound on how late a call stops, and on how long the
	// guest delays a stop-the-world pause. A guest spinning in a loop
	// stopped 9-34 µs after its context was cancelled (measured
	// 2026-11-26).
	Interval = 1 << 14
)

// Tick is the host function ImportModule.ImportName, for
// api.GoModuleFunc: it yields to the Go scheduler, so that a stop-the-world
// pause or another goroutine need not wait for the guest, and returns 1
// once ctx, the context of the call into the guest, has ended, or the
// module was closed.
func Tick(ctx context.Context, mod api.Module, stack []uint64) {
	runtime.Gosched()
	stack[0] = 0
	if ctx.Err() != nil || mod.IsClosed() {
		stack[0] = 1
	}
}
