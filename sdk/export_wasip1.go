//go:build wasip1

package sdk

import (
	"runtime"
	"unsafe"
)

// The exports and imports of ABI v1 (see ABI.md); only in the wasip1 build.

//go:wasmexport strata_abi_v1
func strataABIv1() {}

var (
	input  []byte // the buffer handed out by the last strata_alloc
	output []byte // the last response, read by the host after strata_reduce

	sinceYield int    // calls since the last yield
	lastSize   uint32 // size of the last request
)

// strata_alloc returns a new buffer of size bytes for the next request.
// It is never reused: decoded rows alias it (see Input), and the GC frees it
// once nothing refers to it.
//
//go:wasmexport strata_alloc
func strataAlloc(size uint32) uint32 {
	// A Go reactor runs no other goroutine between calls: yield so that
	// the garbage collector's workers run and the heap does not grow from
	// call to call. Yielding costs a few microseconds, so small calls
	// yield every 16th time.
	if sinceYield++; sinceYield >= 16 || lastSize >= 64<<10 {
		runtime.Gosched()
		sinceYield = 0
	}
	lastSize = size
	input = make([]byte, size, max(size, 1))
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(input[:cap(input)]))))
}

// strata_reduce runs the reducer on the request in the buffer of the last
// strata_alloc and returns the response's address and length, packed as
// address<<32 | length; the response stays valid until the next call.
//
//go:wasmexport strata_reduce
func strataReduce(ptr, size uint32) uint64 {
	in := input
	input = nil
	if in == nil || size > uint32(len(in)) || ptr != uint32(uintptr(unsafe.Pointer(unsafe.SliceData(in[:cap(in)])))) {
		output = errorResponse(nil, "sdk: strata_reduce called without the buffer of the last strata_alloc")
	} else {
		// The previous response has been read by now: reuse its buffer,
		// unless it is large.
		if cap(output) > 1<<20 {
			output = nil
		}
		output = handle(output, nil, in[:size])
	}
	if len(output) == 0 {
		return 0
	}
	p := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(output))))
	return p<<32 | uint64(len(output))
}

//go:wasmimport strata log
func strataLog(level int32, ptr unsafe.Pointer, size uint32)

func hostLog(level int, msg string) {
	if msg == "" {
		return
	}
	strataLog(int32(level), unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}
