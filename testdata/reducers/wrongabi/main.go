// Command wrongabi is a module that speaks a future ABI version: it exports
// strata_abi_v2 instead of strata_abi_v1. It does not use the SDK.
package main

import "unsafe"

//go:wasmexport strata_abi_v2
func abiV2() {}

var buf []byte

//go:wasmexport strata_alloc
func alloc(size uint32) uint32 {
	buf = make([]byte, size)
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
}

//go:wasmexport strata_reduce
func reduce(ptr, size uint32) uint64 { return 0 }

func main() {}
