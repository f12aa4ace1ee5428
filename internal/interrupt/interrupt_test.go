package interrupt

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// wasm assembles a WebAssembly binary from sections, each its id
// followed by its body.
func wasm(secs ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for _, s := range secs {
		b = append(b, s[0])
		b = appendU32(b, uint32(len(s)-1))
		b = append(b, s[1:]...)
	}
	return b
}

// vec is a section of id with the entries, counted.
func vec(id byte, entries ...[]byte) []byte {
	b := appendU32([]byte{id}, uint32(len(entries)))
	for _, e := range entries {
		b = append(b, e...)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func export(name string, kind byte, idx uint32) []byte {
	return appendU32(append(appendName(nil, name), kind), idx)
}

func importFunc(mod, name string, typ byte) []byte {
	return append(appendName(appendName(nil, mod), name), 0, typ)
}

// subsection is a subsection of the name section.
func subsection(id byte, content []byte) []byte {
	return append(appendU32([]byte{id}, uint32(len(content))), content...)
}

// body is a function body without locals.
func body(code ...byte) []byte {
	b := append([]byte{0}, code...) // no locals
	return append(appendU32(nil, uint32(len(b))), b...)
}

var (
	typeVoid   = []byte{0x60, 0, 0}              // () -> ()
	typeResI32 = []byte{0x60, 0, 1, 0x7f}        // () -> i32
	globalI32  = []byte{0x7f, 0, 0x41, 42, 0x0b} // const i32 = 42
)

// spinModule imports strata.started and exports spin, which calls it and
// then loops forever.
func spinModule() []byte {
	return wasm(
		vec(1, typeVoid),
		vec(2, importFunc("strata", "started", 0)),
		vec(3, []byte{0}),
		vec(7, export("spin", 0, 1)),
		// call $started; loop br 0 end
		vec(10, body(0x10, 0, 0x03, 0x40, 0x0c, 0, 0x0b, 0x0b)),
	)
}

// bulkModule is like spinModule, but its loop runs the bulk instruction
// op, with memory of 32 MiB and a table of MaxTableEntries: each
// iteration copies or fills 16 MiB, or fills the table (8 MiB).
func bulkModule(op ...byte) []byte {
	code := cat([]byte{0x10, 0, 0x03, 0x40}, op, []byte{0x0c, 0, 0x0b, 0x0b})
	return wasm(
		vec(1, typeVoid),
		vec(2, importFunc("strata", "started", 0)),
		vec(3, []byte{0}),
		vec(4, cat([]byte{0x70, 0x00}, appendU32(nil, MaxTableEntries))),
		vec(5, cat([]byte{0x00}, appendU32(nil, 512))),
		vec(7, export("spin", 0, 1)),
		vec(10, body(code...)),
	)
}

// i32 is i32.const v.
func i32(v int32) []byte { return appendS32([]byte{0x41}, v) }

// hostModule instantiates the host module strata on rt: tick as
// strata.tick, and the Go functions in funcs under their names.
func hostModule(t testing.TB, rt wazero.Runtime, tick api.GoModuleFunc, funcs map[string]any) {
	t.Helper()
	b := rt.NewHostModuleBuilder(ImportModule)
	for name, fn := range funcs {
		b = b.NewFunctionBuilder().WithFunc(fn).Export(name)
	}
	b = b.NewFunctionBuilder().WithGoModuleFunction(tick, nil, []api.ValueType{api.ValueTypeI32}).Export(ImportName)
	if _, err := b.Instantiate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// instantiate instruments bin and instantiates it on a runtime without
// wazero's own cancellation check, with the host functions strata.tick
// (Tick) and strata.started, which signals started.
func instantiate(t *testing.T, bin []byte, started chan<- struct{}) api.Module {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig())
	t.Cleanup(func() { rt.Close(ctx) })
	hostModule(t, rt, Tick, map[string]any{"started": func() { started <- struct{}{} }})
	return instrumented(t, rt, bin)
}

// instrumented instruments bin and instantiates it on rt.
func instrumented(t *testing.T, rt wazero.Runtime, bin []byte) api.Module {
	t.Helper()
	out, err := Instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(context.Background(), out)
	if err != nil {
		t.Fatalf("instrumented module does not instantiate: %v", err)
	}
	return mod
}

// spin instantiates bin, which imports strata.started and exports spin,
// which calls it and then runs until stopped; calls spin with ctx, waits
// until it runs, calls during and cancel and returns the call's error. The
// test fails if the call does not end within 10 s after ctx does.
func spin(t *testing.T, bin []byte, ctx context.Context, cancel func(), during func()) error {
	t.Helper()
	started := make(chan struct{}, 1)
	mod := instantiate(t, bin, started)
	done := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("spin").Call(ctx)
		done <- err
	}()
	<-started
	during()
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("spin() still runs 10 s after its context ended")
		return nil
	}
}

// TestCancelStopsALoop runs a function that never returns and cancels
// its context once it runs: the call traps.
func TestCancelStopsALoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	err := spin(t, spinModule(), ctx, cancel, func() {})
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("spin() = %v, want an unreachable trap", err)
	}
}

// TestLoopDoesNotHoldTheWorld collects garbage while the guest loops:
// stopping the world needs every goroutine at a safe point, which machine
// code that never returns to Go is not; Tick is one.
func TestLoopDoesNotHoldTheWorld(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	spin(t, spinModule(), ctx, cancel, func() {
		gc := make(chan struct{})
		go func() {
			for range 5 {
				runtime.GC()
			}
			close(gc)
		}()
		select {
		case <-gc:
		case <-time.After(10 * time.Second):
			t.Fatal("5 garbage collections did not finish in 10 s while the guest looped")
		}
	})
}

// TestBulkInstructionsStop runs loops of bulk instructions, each of
// which wazero runs as one copy that Go cannot preempt: they are charged
// by their length, so the call stops soon after its context ends, and a
// collection while they run does not wait for thousands of them (a loop
// of 32 MiB copies, each counted as one step, ran 27 s past its timeout).
func TestBulkInstructionsStop(t *testing.T) {
	const mib16 = 16 << 20
	for name, op := range map[string][]byte{
		"memory.copy": cat(i32(0), i32(mib16), i32(mib16), []byte{0xfc, 10, 0, 0}),
		"memory.fill": cat(i32(0), i32(0), i32(mib16), []byte{0xfc, 11, 0}),
		"table.fill":  cat(i32(0), []byte{0xd0, 0x70}, i32(MaxTableEntries), []byte{0xfc, 17, 0}),
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			err := spin(t, bulkModule(op...), ctx, cancel, func() {
				gc := make(chan struct{})
				go func() {
					runtime.GC()
					close(gc)
				}()
				select {
				case <-gc:
				case <-time.After(10 * time.Second):
					t.Fatal("a garbage collection did not finish in 10 s while the guest copied")
				}
			})
			if err == nil || !strings.Contains(err.Error(), "unreachable") {
				t.Fatalf("spin() = %v, want an unreachable trap", err)
			}
		})
	}
}

// tableModule exports huge, small and second, which grow its tables.
func tableModule() []byte {
	grow := func(table byte, n int32) []byte { // grow(n) -> i32
		return body(cat([]byte{0xd0, 0x70}, i32(n), []byte{0xfc, 15, table, 0x0b})...)
	}
	return wasm(
		vec(1, typeResI32, typeVoid),
		vec(2, importFunc("strata", "started", 1)),
		vec(3, []byte{0}, []byte{0}, []byte{0}),
		// funcref tables of 1 entry, no maximum: the first may grow to
		// MaxTableEntries-1, the second not at all
		vec(4, []byte{0x70, 0x00, 1}, []byte{0x70, 0x00, 1}),
		vec(7, export("huge", 0, 1), export("small", 0, 2), export("second", 0, 3)),
		vec(10, grow(0, 1<<31-1), grow(0, 10), grow(1, 1)),
	)
}

// TestTableLimit: tables get maximums that add up to MaxTableEntries, so
// table.grow fails instead of asking wazero for 2^31 references.
func TestTableLimit(t *testing.T) {
	bin := tableModule()
	mod := instantiate(t, bin, make(chan struct{}, 1))
	ctx := context.Background()
	for name, want := range map[string]uint64{"huge": 0xffffffff, "small": 1, "second": 0xffffffff} {
		if v, err := mod.ExportedFunction(name).Call(ctx); err != nil || v[0] != want {
			t.Errorf("%s() = %v, %v; want %#x", name, v, err, want)
		}
	}
}

const hostCalls = 64

// hostCallsModule exports run, which calls the imported strata.noop
// hostCalls times.
func hostCallsModule() []byte {
	code := bytes.Repeat([]byte{0x10, 0}, hostCalls) // call $noop, unrolled: no loop heads
	return wasm(
		vec(1, typeVoid),
		vec(2, importFunc("strata", "noop", 0)),
		vec(3, []byte{0}),
		vec(7, export("run", 0, 1)),
		vec(10, body(append(code, 0x0b)...)),
	)
}

// TestHostCallsAreCharged: a guest ticks before every call of a host
// function, however much work each does (a fd_write may carry millions of
// I/O vectors).
func TestHostCallsAreCharged(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	ticks := 0
	hostModule(t, rt, func(ctx context.Context, mod api.Module, stack []uint64) {
		ticks++
		Tick(ctx, mod, stack)
	}, map[string]any{"noop": func() {}})
	mod := instrumented(t, rt, hostCallsModule())
	if _, err := mod.ExportedFunction("run").Call(ctx); err != nil {
		t.Fatal(err)
	}
	if want := hostCalls; ticks < want {
		t.Fatalf("%d host calls ticked %d times, want at least %d", hostCalls, ticks, want)
	}
}

// simdModule exports simd, which returns 22 through SIMD instructions.
func simdModule() []byte {
	v128 := func(a, b, c, d byte) []byte { // v128.const, i32x4 lanes
		return cat([]byte{0xfd, 0x0c}, []byte{a, 0, 0, 0, b, 0, 0, 0, c, 0, 0, 0, d, 0, 0, 0})
	}
	load := []byte{0xfd, 0x00, 4, 0} // v128.load align=16 offset=0
	code := cat(
		i32(0), v128(1, 2, 3, 4), v128(10, 20, 30, 40),
		[]byte{0xfd, 0xae, 0x01},   // i32x4.add, an opcode over 0x7f in two bytes
		[]byte{0xfd, 0x0b, 4, 0},   // v128.store
		i32(0), load, i32(0), load, // [11 22 33 44] twice
		[]byte{0xfd, 0x0d, 4, 5, 6, 7, 0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15}, // i8x16.shuffle: [22 11 33 44]
		[]byte{0xfd, 0x1b, 0}, // i32x4.extract_lane 0
		[]byte{0x0b},
	)
	return wasm(
		vec(1, typeResI32, typeVoid),
		vec(2, importFunc("strata", "started", 1)),
		vec(3, []byte{0}),
		vec(5, []byte{0x00, 1}),
		vec(7, export("simd", 0, 1)),
		vec(10, body(code...)),
	)
}

// TestSIMD runs SIMD instructions with each kind of immediate, and an
// opcode in both encodings, through the rewrite.
func TestSIMD(t *testing.T) {
	bin := simdModule()
	mod := instantiate(t, bin, make(chan struct{}, 1))
	if v, err := mod.ExportedFunction("simd").Call(context.Background()); err != nil || v[0] != 22 {
		t.Fatalf("simd() = %v, %v; want 22", v, err)
	}
}

// renumberingModule refers to its functions in every way the rewrite renumbers.
func renumberingModule() []byte {
	return wasm(
		vec(1, typeResI32, typeVoid),
		vec(2, importFunc("strata", "started", 1)), // function 0
		vec(3, []byte{0}, []byte{0}, []byte{0}, []byte{1}, []byte{0}),
		vec(4, []byte{0x70, 0x00, 2}), // funcref table, 2 entries
		vec(6, []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}),
		vec(7, export("indirect", 0, 2), export("direct", 0, 3), export("indirect2", 0, 5), export("g", 3, 0)),
		[]byte{8, 4}, // start: function 4
		vec(9,
			[]byte{0x00, 0x41, 0x00, 0x0b, 1, 1},             // table[0] = function 1
			[]byte{0x04, 0x41, 0x01, 0x0b, 1, 0xd2, 3, 0x0b}, // table[1] = ref.func 3
		),
		vec(10,
			body(0x41, 7, 0x0b),                // 1: 7
			body(0x41, 0, 0x11, 0, 0, 0x0b),    // 2: table[0]()
			body(0x10, 1, 0x41, 1, 0x6a, 0x0b), // 3: function1() + 1
			body(0x41, 5, 0x24, 0, 0x0b),       // 4: g = 5
			body(0x41, 1, 0x11, 0, 0, 0x0b),    // 5: table[1]()
		),
		// name section: functions 1 and 3 named
		cat([]byte{0}, appendName(nil, "name"), subsection(1,
			cat(appendU32(nil, 2), []byte{1}, appendName(nil, "seven"), []byte{3}, appendName(nil, "eight")))),
	)
}

// TestRenumbering instruments a module that refers to its functions in
// every way the rewrite renumbers: calls, call_indirect through element
// segments of both encodings, exports, the start function and the name
// section.
func TestRenumbering(t *testing.T) {
	bin := renumberingModule()
	mod := instantiate(t, bin, make(chan struct{}, 1))
	ctx := context.Background()
	for name, want := range map[string]uint64{"indirect": 7, "direct": 8, "indirect2": 8} {
		if v, err := mod.ExportedFunction(name).Call(ctx); err != nil || v[0] != want {
			t.Errorf("%s() = %v, %v; want %d", name, v, err, want)
		}
	}
	if g := mod.ExportedGlobal("g").Get(); g != 5 {
		t.Errorf("g = %d, want 5: the start function did not run", g)
	}
	if name := mod.ExportedFunction("direct").Definition().Name(); name != "eight" {
		t.Errorf("direct is named %q, want \"eight\" from the name section", name)
	}
}

func TestInstrumentRefuses(t *testing.T) {
	malformed, unsupported := refusals()
	for kind, cases := range map[error][]refusal{ErrMalformed: malformed, ErrUnsupported: unsupported} {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, err := Instrument(tc.bin)
				if !errors.Is(err, kind) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Instrument = %v, want %v saying %q", err, kind, tc.want)
				}
			})
		}
	}
}

// refusals are modules Instrument refuses as malformed and as
// unsupported.
func refusals() (malformed, unsupported []refusal) {
	malformed = []refusal{
		{"not wasm", []byte("hello, world"), "not a WebAssembly binary"},
		{"version 2", []byte("\x00asm\x02\x00\x00\x00"), "version 2"},
		{"truncated section", []byte("\x00asm\x01\x00\x00\x00\x01\x10\x00"), "unexpected end"},
		{
			// wazero v1.12 allocates 2^29 element segments for this, and the
			// process dies of it (found by FuzzInstrument)
			"count over the section's size",
			[]byte("\x00asm\x01\x00\x00\x00\t\x06\x80\xff\xff\xff\x01\x00"),
			"element section at byte 0xa claims 536870784 entries in 6 bytes",
		},
		{
			"overlong LEB128",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(0x41, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0b))),
			"too long",
		},
		{
			"trailing bytes in the code section",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), cat([]byte{10, 1}, body(0x0b), []byte{0})),
			"trailing bytes",
		},
		{"unknown section", wasm([]byte{42, 0}), "unknown section id 42"},
		// wazero reads 0x63 and 0x64 as prefixes of a typed reference, with
		// a heap type after: the two readings would part ways, and wazero
		// read counts and instructions Instrument never checked (found by
		// review: a 127-byte module made wazero ask for 32 GiB, a block
		// type hid a loop from the countdown)
		{
			"typed reference in a function type",
			wasm(vec(1, cat([]byte{0x60, 1, 0x63, 0x70, 0xff, 0xff, 0xff, 0xff, 0x0f}, make([]byte, 107)))),
			"value type 0x63",
		},
		{
			"typed reference as a block type",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(5, []byte{0, 1}), vec(10, body(0x02, 0x63, 0x28, 0x03, 0x40, 0x0c, 0, 0x0b, 0x00, 0x0b, 0x1a, 0x0b))),
			"block type -29",
		},
		{
			"typed reference as a table type",
			wasm(vec(4, []byte{0x63, 0x01, 0x00, 0x05})),
			"reference type 0x63",
		},
		{
			"typed reference in an element segment",
			wasm(vec(9, cat([]byte{0x05, 0x63, 0x70, 0xbf, 0xbf, 0xbf, 0xbf, 0x0f, 0x0b}, bytes.Repeat([]byte{0x0b}, 111)))),
			"reference type 0x63",
		},
		{
			"typed reference as a global type",
			wasm(vec(6, []byte{0x63, 0x70, 0x00, 0xd0, 0x70, 0x0b})),
			"value type 0x63",
		},
		{
			"element kind other than 0",
			wasm(vec(9, []byte{0x01, 0x01, 0x00})),
			"element kind 0x1",
		},
		{
			// global.get 1 with one global: the rewrite would give it a meaning
			"reference to a missing global",
			wasm(vec(1, typeResI32), vec(3, []byte{0}), vec(6, globalI32), vec(10, body(0x23, 1, 0x0b))),
			"global 1 does not exist",
		},
		{
			"call of a missing function",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(0x10, 1, 0x0b))),
			"function 1 does not exist",
		},
		{
			// after the rewrite, function 1 is $tick
			"export of a missing function",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(7, export("f", 0, 1)), vec(10, body(0x0b))),
			`export "f": function 1 does not exist`,
		},
		{
			// after the rewrite, global 1 is the countdown
			"export of a missing global",
			wasm(vec(6, globalI32), vec(7, export("g", 3, 1))),
			`export "g": global 1 does not exist`,
		},
		{
			"global.get of a missing global in a data offset",
			wasm(vec(5, []byte{0, 1}), vec(11, []byte{0, 0x23, 0, 0x0b, 0})),
			"data segment 0: global 0 does not exist",
		},
		{
			// types 0 and 1 are the ones the rewrite adds
			"function of a missing type",
			wasm(vec(3, []byte{0}), vec(10, body(0x0b))),
			"function 0: type 0 does not exist",
		},
		{
			"block of a missing type",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(0x02, 1, 0x0b, 0x0b))),
			"type 1 does not exist",
		},
		{
			"call_indirect of a missing type",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(4, []byte{0x70, 0, 1}), vec(10, body(0x41, 0, 0x11, 2, 0, 0x0b))),
			"type 2 does not exist",
		},
		{
			"fewer bodies than functions",
			wasm(vec(1, typeVoid), vec(3, []byte{0}, []byte{0}), vec(10, body(0x0b))),
			"1 function bodies for 2 functions",
		},
	}
	unsupported = []refusal{
		{
			"too many locals",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(10, []byte{7, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f, 0x0b})),
			"4294967295 locals, over the limit of 50000",
		},
		{
			"table over the limit",
			wasm(vec(4, cat([]byte{0x70, 0}, appendU32(nil, MaxTableEntries+1)))),
			"tables of 1048577 entries in all, over the limit of 1048576",
		},
		{
			// each under the limit: instantiating allocates them all
			"tables over the limit in all",
			wasm(vec(4, cat([]byte{0x70, 0}, appendU32(nil, MaxTableEntries/2+1)), cat([]byte{0x70, 0}, appendU32(nil, MaxTableEntries/2+1)))),
			"tables of 1048578 entries in all",
		},
		{
			// wazero keeps ~8 bytes per declared local
			"locals over the limit in all",
			func() []byte {
				var funcs, bodies [][]byte
				for range MaxModuleLocals/MaxLocals + 1 {
					funcs = append(funcs, []byte{0})
					b := append(appendU32([]byte{1}, MaxLocals), 0x7f, 0x0b)
					bodies = append(bodies, append(appendU32(nil, uint32(len(b))), b...))
				}
				return wasm(vec(1, typeVoid), vec(3, funcs...), vec(10, bodies...))
			}(),
			"2100000 locals in all functions so far, over the limit of 2097152",
		},
		{
			"type with too many parameters",
			wasm(vec(1, cat([]byte{0x60}, appendU32(nil, MaxArity+1), bytes.Repeat([]byte{0x7f}, MaxArity+1), []byte{0}))),
			"type 0: 1001 parameters, over the limit of 1000",
		},
		{
			// wazero's compiler keeps 600-700 bytes per value a call passes
			"calls passing too many values",
			wasm(
				vec(1, cat([]byte{0x60}, appendU32(nil, MaxArity), bytes.Repeat([]byte{0x7f}, MaxArity), []byte{0}), typeVoid),
				vec(3, []byte{0}, []byte{1}),
				vec(10, body(0x00, 0x0b), body(append(bytes.Repeat([]byte{0x10, 0}, MaxFunctionCalls/(MaxArity+1)+1), 0x0b)...)),
			),
			"function 1: at byte 0x615: the function's calls weigh 262262 (one per call, plus the values passed), over the limit of 262144",
		},
		{
			// compile time grows with body size times nesting
			"loops nested too deep",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(cat(bytes.Repeat([]byte{0x03, 0x40}, MaxLoopNesting+1), bytes.Repeat([]byte{0x0b}, MaxLoopNesting+2))...))),
			"loops nest 65 deep, over the limit of 64",
		},
		{
			"blocks nested too deep",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(cat(bytes.Repeat([]byte{0x02, 0x40}, MaxNesting+1), bytes.Repeat([]byte{0x0b}, MaxNesting+2))...))),
			"blocks nest 4097 deep, over the limit of 4096",
		},
		{
			// calls through the table would not be charged as host calls
			"imported function in a table",
			wasm(vec(1, typeVoid), vec(2, importFunc("strata", "started", 0)), vec(4, []byte{0x70, 0, 1}), vec(9, []byte{0x00, 0x41, 0x00, 0x0b, 1, 0})),
			"element segment 0: imported function 0 is referenced from a table or ref.func",
		},
		{
			"ref.func of an imported function",
			wasm(vec(1, typeVoid), vec(2, importFunc("strata", "started", 0)), vec(3, []byte{0}), vec(10, body(0xd2, 0, 0x1a, 0x0b))),
			"imported function 0 is referenced",
		},
		{
			"threads",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(5, []byte{0, 1}), vec(10, body(0x41, 0, 0xfe, 0x10, 2, 0, 0x1a, 0x0b))),
			"threads are not supported",
		},
		{
			// wazero reads 0x8c as the opcode, the specification 0x0c
			// (v128.const, 16 bytes of immediates): the two would part ways
			"SIMD opcode in an encoding wazero reads otherwise",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(0xfd, 0x8c, 0x00, 0x0b))),
			"SIMD instruction 0xfd 0x8c 0x0: encoding not supported",
		},
		{
			"exceptions",
			wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(0x06, 0x40, 0x0b, 0x0b))),
			"instruction 0x6 is not supported",
		},
		{"tag section", wasm(vec(13)), "exception handling is not supported"},
		{
			"imports the host function",
			wasm(vec(1, typeResI32), vec(2, importFunc(ImportModule, ImportName, 0))),
			"imports strata.tick itself",
		},
		{
			// was given to wazero unchecked: the first body was refused as
			// unsupported, and the second claims 2^32 locals
			"unsupported, then over the limits",
			wasm(vec(1, typeVoid), vec(3, []byte{0}, []byte{0}), vec(10,
				body(0xfe, 0x03, 0x00, 0x0b),
				[]byte{7, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f, 0x0b})),
			"threads are not supported",
		},
	}
	return malformed, unsupported
}

// refusal is a module Instrument refuses, and what its error says.
type refusal struct {
	name string
	bin  []byte
	want string
}

// FuzzInstrument checks that Instrument never panics, that what it returns
// is instrumented once (a second pass refuses it), that a module wazero
// accepts stays acceptable after instrumentation, and that wazero
// survives every module Instrument accepts, as the reducer host gives it
// those and only those: it compiles them and instantiates them (start
// function included) under a deadline and a memory limit, with the host
// function.
func FuzzInstrument(f *testing.F) {
	f.Add(spinModule())
	f.Add(wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(0x03, 0x40, 0x0b, 0x0b))))
	f.Add(wasm(vec(1, typeResI32), vec(3, []byte{0}), vec(6, globalI32), vec(10, body(0x23, 0, 0x0b))))
	f.Add(bulkModule(cat(i32(0), i32(0), i32(1), []byte{0xfc, 11, 0})...))
	f.Add(simdModule())
	f.Add(renumberingModule())
	f.Add(tableModule())
	f.Add(hostCallsModule())
	malformed, unsupported := refusals()
	for _, r := range append(malformed, unsupported...) {
		f.Add(r.bin)
	}
	f.Fuzz(func(t *testing.T, bin []byte) {
		out, err := Instrument(bin)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error wraps neither ErrMalformed nor ErrUnsupported: %v", err)
			}
			return
		}
		if _, err := Instrument(out); err == nil || !strings.Contains(err.Error(), "imports strata.tick itself") {
			t.Fatalf("second Instrument = %v, want a refusal of the import", err)
		}
		ctx := context.Background()
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithMemoryLimitPages(64))
		defer rt.Close(ctx)
		compiled, outErr := rt.CompileModule(ctx, out)
		if _, err := rt.CompileModule(ctx, bin); err == nil && outErr != nil {
			t.Fatalf("wazero accepts the module but not its instrumented copy: %v", outErr)
		}
		if outErr != nil {
			return
		}
		hostModule(t, rt, Tick, nil)
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig()) // most fail: imports, traps
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("instantiation ran %v, past its deadline of 1 s", d)
		}
	})
}

// BenchmarkStop measures how long a call takes to stop after its context
// is cancelled 2 ms into the call (the metric µs-to-stop; ns/op includes
// instantiating the module for each call, as a trapped instance is not
// reused): a loop, and loops of the bulk instructions of
// TestBulkInstructionsStop.
func BenchmarkStop(b *testing.B) {
	const mib16 = 16 << 20
	for _, bc := range []struct {
		name string
		bin  []byte
	}{
		{"loop", spinModule()},
		{"memory.copy", bulkModule(cat(i32(0), i32(mib16), i32(mib16), []byte{0xfc, 10, 0, 0})...)},
		{"memory.fill", bulkModule(cat(i32(0), i32(0), i32(mib16), []byte{0xfc, 11, 0})...)},
		{"table.fill", bulkModule(cat(i32(0), []byte{0xd0, 0x70}, i32(MaxTableEntries), []byte{0xfc, 17, 0})...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig())
			defer rt.Close(ctx)
			started := make(chan struct{}, 1)
			hostModule(b, rt, Tick, map[string]any{"started": func() { started <- struct{}{} }})
			out, err := Instrument(bc.bin)
			if err != nil {
				b.Fatal(err)
			}
			compiled, err := rt.CompileModule(ctx, out)
			if err != nil {
				b.Fatal(err)
			}
			var stopping time.Duration
			for b.Loop() {
				mod, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
				if err != nil {
					b.Fatal(err)
				}
				callCtx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() {
					_, err := mod.ExportedFunction("spin").Call(callCtx)
					done <- err
				}()
				<-started
				// The workload, not a synchronisation: cancel the call
				// 2 ms into it, in the middle of its copies.
				time.Sleep(2 * time.Millisecond)
				t0 := time.Now()
				cancel()
				if err := <-done; err == nil {
					b.Fatal("spin() returned without a trap")
				}
				stopping += time.Since(t0)
				mod.Close(ctx)
			}
			b.ReportMetric(float64(stopping.Microseconds())/float64(b.N), "µs-to-stop")
		})
	}
}
