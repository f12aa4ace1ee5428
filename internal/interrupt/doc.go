// Package interrupt makes a WebAssembly module stoppable at low cost.
//
// wazero stops a running call on context cancellation only with
// WithCloseOnContextDone, which compiles every loop header into an exit to
// Go (~25 ns) to ask whether the module was closed. Go's wasm backend
// turns every taken jump of a function into a branch back to that
// function's one loop, so a Go guest pays the exit on most of its control
// flow and runs about 3× slower end to end, 4–8× per operation
// (docs/BENCHMARKS.md).
//
// The exits matter for more than cancellation: machine code that never
// returns to Go cannot be preempted, so a garbage collection that stops
// the world waits for it, and with it every goroutine of the process. A
// guest that loops forever without exits would hang the agent.
//
// [Instrument] rewrites a module so that it exits every [Interval] steps
// instead of at each loop iteration. It adds a mutable i32 global, the
// countdown, and at the entry of every function and the head of every
// loop the instructions
//
//	global.get $countdown
//	i32.const 1
//	i32.sub
//	global.set $countdown
//	global.get $countdown
//	i32.eqz
//	if
//	  call $tick
//	end
//
// where $tick, a function it adds, calls the host function [ImportModule].
// [ImportName] (type () -> i32), traps with unreachable when that returns
// non-zero, and resets the countdown. The host function, [Tick], yields to
// the Go scheduler (a preemption point) and returns 1 once the call's
// context has ended. Bulk memory and table instructions (memory.copy,
// memory.fill, table.grow, ...), which run as one uninterruptible copy,
// are charged by their length: one step per [BytesPerStep] bytes or
// [EntriesPerStep] table entries, and $tick runs before one that uses up
// the countdown. Every call of an imported (host) function calls $tick
// first: a WASI call may do much work (poll_oneoff over a million
// subscriptions, fd_read over millions of I/O vectors: tens of
// milliseconds each), so a guest that calls the host in a loop stops
// after the call in progress. Go guests call the host rarely in a run:
// the example reducer's figures did not move. Adding an import shifts the index of every function the
// module defines; Instrument renumbers them wherever they appear (calls,
// ref.func, exports, the start function, element segments, the name
// section).
//
// Instrument is also the host's guard in front of wazero, whose decoder
// allocates whatever a module's counts claim: it reads every section and
// instruction, and a module it refuses, for whatever reason, must not be
// given to wazero. It must read every byte as wazero does: where wazero
// reads differently from the specification (typed references, SIMD
// opcodes), Instrument accepts only what both read alike. It refuses
// modules that are not well-formed, or refer to types, functions or
// globals they do not have ([ErrMalformed]), and valid modules it cannot
// run safely: instructions or types outside wazero's core features
// (threads, exceptions, GC, typed references), tables, locals or calls
// over its limits ([MaxTableEntries], [MaxLocals], [MaxModuleLocals],
// [MaxArity], [MaxFunctionCalls], [MaxNesting]), imported
// functions in tables, or an import of the host function itself
// ([ErrUnsupported]). Errors name the section, function and byte of the
// module. Instrument does no I/O and never panics on malformed input.
//
// The package is in four files: decode.go reads the binary format as
// wazero v1.12 does; admission.go holds the limits and refuses what the
// host must not give wazero; rewrite.go inserts the countdown and renumbers
// functions (function bodies are checked against the limits as they are
// rewritten, in the same pass); host.go is the host function.
package interrupt
