// Command wasmcompile fills a wazero compilation cache with modules, the
// way the reducer host compiles them (timeouts on):
//
//	go run ./internal/cmd/wasmcompile -cache DIR FILE.wasm...
//
// Tests built with -race use it through internal/reducertest: wazero's
// compiler under the race detector takes ~10 s a module, a native process
// well under one, and the instrumented tests then load machine code from
// the cache.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/tetratelabs/wazero"
)

func main() {
	dir := flag.String("cache", "", "compilation cache directory (required)")
	flag.Parse()
	if *dir == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: wasmcompile -cache DIR FILE.wasm...")
		os.Exit(2)
	}
	ctx := context.Background()
	cache, err := wazero.NewCompilationCacheWithDir(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wasmcompile:", err)
		os.Exit(1)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache).WithCloseOnContextDone(true))
	for _, path := range flag.Args() {
		bin, err := os.ReadFile(path)
		if err == nil {
			_, err = rt.CompileModule(ctx, bin)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "wasmcompile: %s: %v\n", path, err)
			os.Exit(1)
		}
	}
}
