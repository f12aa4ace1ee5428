// Package reducer is strata's reducer host: it loads reducer modules
// (WebAssembly, WASI reactors speaking the ABI of sdk/ABI.md) and runs them
// in a sandbox with wazero.
//
// A [Host] owns what reducers share: wazero's compilation cache on disk
// (an agent passes data_dir/wazero-cache, so that a restart loads machine
// code instead of compiling), the cache of modules built from Go source
// (keyed by [SourceHash]), and single-flight locks, so that one module is
// built and compiled once at a time (concurrent compiles of one module
// sharing a cache have crashed wazero, #2547). [Host.Load] returns a
// [Reducer]: the compiled module, its own wazero runtime (with the
// reducer's memory limit) and a pool of instances, one already started.
//
// [Reducer.Run] encodes the region's rows straight into an instance's
// memory, calls the guest, copies the response out (wazero's Memory.Read is
// a view) and checks the records' names and keys. Each call has a timeout
// (context cancellation, see below), the module's memory is capped, and the input and output sizes are bounded. A trap,
// timeout, guest panic, ABI mismatch or malformed output fails that run
// only, with a [*Error] naming the reducer and the [Kind] of failure, and the
// instance is discarded. [Reducer.Status] reports runs for GET
// /v1/reducers ([Status], with the publisher's counters filled in by package publish).
//
// The records are not checked against the contract here: the agent's
// global-write pipeline (contracts.Contract.CheckWrite) does that, as
// internal/recordcheck does for `strata reducer test`.
//
// # Sandbox
//
// An instance gets no file system, environment, arguments or network;
// wazero's fake clocks (a fixed start, 1 ms per read, sleeps that return at
// once) and a random source of zeros; stdout and stderr go to a buffer
// shown when the guest traps. Only wasi_snapshot_preview1 and strata.log
// may be imported.
//
// # Timeouts
//
// wazero stops a call on context cancellation only with
// WithCloseOnContextDone, which makes every loop header of the guest's
// machine code exit to Go to check (about 25 ns). Go compiles nearly every
// taken branch of a function to a jump to its one loop, so Go guests pay it
// on most control flow: about 3x slower end to end, a map lookup ~450 ns
// instead of ~90. So Load instruments the module instead
// (internal/interrupt): a countdown at every loop header and function
// entry, and every interrupt.Interval of them a call of the host function
// strata.tick (interrupt.Tick), which yields to the Go scheduler and tells
// the guest to trap once the run's context has ended; the instance is then
// discarded. The yield matters as much as the check: machine code that
// never returns to Go cannot be preempted, and a garbage collection's
// stop-the-world would wait for it, with every goroutine of the agent.
// _initialize runs under the same check. Bulk memory and table
// instructions, one uninterruptible copy each, are charged by their
// length, and every call of a host function ticks first; the
// guest's stdout and stderr refuse writes once the call has ended, which
// ends an fd_write of millions of I/O vectors. Instrumenting also guards wazero, which allocates what a
// module's counts claim before reading them: a module Instrument refuses
// (malformed, over its limits, or using features outside wazero's core
// set) fails to load and never reaches wazero. [HostOptions].Interrupt can
// run accepted modules uninstrumented with wazero's check
// ([InterruptWazero]); the benchmarks compare both (docs/BENCHMARKS.md).
//
// # Files
//
//   - host.go: Host, Load, compiling (instrumented or not), the ABI check
//     of a compiled module;
//   - reducer.go: Reducer, Run, the call protocol, error classification;
//   - pool.go: the instance pool; tail.go: the guest's captured output;
//   - build.go: building Go sources (Build, BuildCached, SourceHash);
//     build_rust.go: building Rust crates with cargo (FindRust, the
//     crate's source hash);
//   - status.go: Status, the one status type of a reducer; checkhost.go: the host of
//     `strata contract check`'s conformance step;
//   - config.go: Config and ConfigFrom (agent.toml's [[reducers]]);
//   - errors.go: Error, Kind and the sentinel errors.
package reducer
