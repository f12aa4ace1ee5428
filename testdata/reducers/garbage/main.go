// Command garbage speaks ABI v1 without the SDK and answers every request
// with bytes that are not a Response.
package main

import "unsafe"

//go:wasmexport strata_abi_v1
func abiV1() {}

var in, out []byte

//go:wasmexport strata_alloc
func alloc(size uint32) uint32 {
	in = make([]byte, max(size, 1))
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(in))))
}

//go:wasmexport strata_reduce
func reduce(ptr, size uint32) uint64 {
	// Field 1 (records), length 200, then 3 bytes: truncated.
	out = []byte{0x0a, 0xc8, 0x01, 'b', 'a', 'd'}
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(out))))<<32 | uint64(len(out))
}

func main() {}
