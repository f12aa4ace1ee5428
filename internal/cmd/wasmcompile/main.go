// Command wasmcompile fills a reducer host's compilation cache with
// modules, the way the host compiles them (reducer.Host.Precompile):
//
//	go run ./internal/cmd/wasmcompile -cache DIR [-interrupt inline|wazero] FILE.wasm...
//
// DIR is a reducer.HostOptions.CacheDir. Tests built with -race use it
// through internal/reducertest: wazero's compiler under the race detector
// takes ~10 s a module, a native process well under one, and the
// instrumented tests then load machine code from the cache.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/strata-state/strata/agent/reducer"
)

func main() {
	dir := flag.String("cache", "", "reducer host cache directory (required)")
	mode := flag.String("interrupt", reducer.InterruptInline, "the host's interrupt mode (HostOptions.Interrupt)")
	flag.Parse()
	if *dir == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: wasmcompile -cache DIR [-interrupt inline|wazero] FILE.wasm...")
		os.Exit(2)
	}
	ctx := context.Background()
	h, err := reducer.NewHost(reducer.HostOptions{CacheDir: *dir, Interrupt: *mode})
	if err != nil {
		fmt.Fprintln(os.Stderr, "wasmcompile:", err)
		os.Exit(1)
	}
	for _, path := range flag.Args() {
		bin, err := os.ReadFile(path)
		if err == nil {
			err = h.Precompile(ctx, bin)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "wasmcompile: %s: %v\n", path, err)
			os.Exit(1)
		}
	}
	if err := h.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "wasmcompile:", err)
		os.Exit(1)
	}
}
