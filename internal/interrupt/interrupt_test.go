package interrupt

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// module assembles a WebAssembly binary from (id, body) sections.
func module(secs ...[]byte) []byte {
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
// then loops forever, and value, which returns a defined global (42).
func spinModule() []byte {
	return module(
		vec(1, typeVoid, typeResI32),
		vec(2, cat(appendName(nil, "strata"), appendName(nil, "started"), []byte{0, 0})),
		vec(3, []byte{0}, []byte{1}),
		vec(6, globalI32),
		vec(7, export("spin", 0, 1), export("value", 0, 2)),
		vec(10,
			// call $started; loop br 0 end
			body(0x10, 0, 0x03, 0x40, 0x0c, 0, 0x0b, 0x0b),
			// global.get 0
			body(0x23, 0, 0x0b),
		),
	)
}

func runtime(t *testing.T) (context.Context, wazero.Runtime) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig()) // no WithCloseOnContextDone
	t.Cleanup(func() { rt.Close(ctx) })
	return ctx, rt
}

// TestInterruptStopsALoop runs a function that never returns and sets the
// interrupt flag once it runs: the call traps.
func TestInterruptStopsALoop(t *testing.T) {
	ctx, rt := runtime(t)
	started := make(chan struct{}, 1)
	_, err := rt.NewHostModuleBuilder("strata").NewFunctionBuilder().
		WithFunc(func() { started <- struct{}{} }).Export("started").Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := Instrument(spinModule())
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	flag, ok := mod.ExportedGlobal(Export).(api.MutableGlobal)
	if !ok {
		t.Fatalf("%s is not exported as a mutable global", Export)
	}
	if v, err := mod.ExportedFunction("value").Call(ctx); err != nil || v[0] != 42 {
		t.Fatalf("value() = %v, %v; want 42: the module's own global moved", v, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("spin").Call(ctx)
		done <- err
	}()
	<-started
	flag.Set(1)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("spin() = %v, want an unreachable trap", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("spin() still runs 10 s after the interrupt was set")
	}
	// The flag stays set: the next call traps at function entry.
	if _, err := mod.ExportedFunction("value").Call(ctx); err == nil {
		t.Fatal("value() ran with the interrupt set")
	}
}

func TestInstrumentAddsSectionsWhereMissing(t *testing.T) {
	ctx, rt := runtime(t)
	// No global or export section at all; one function that loops once.
	bin := module(
		vec(1, typeVoid),
		vec(3, []byte{0}),
		vec(10, body(0x03, 0x40, 0x0b, 0x0b)),
	)
	out, err := Instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(ctx, out)
	if err != nil {
		t.Fatalf("instrumented module does not instantiate: %v", err)
	}
	if g := mod.ExportedGlobal(Export); g == nil || g.Get() != 0 {
		t.Fatalf("global %s = %v, want 0", Export, g)
	}
}

func TestInstrumentRefuses(t *testing.T) {
	malformed := []struct {
		name string
		bin  []byte
		want string
	}{
		{"not wasm", []byte("hello, world"), "not a WebAssembly binary"},
		{"version 2", []byte("\x00asm\x02\x00\x00\x00"), "version 2"},
		{"truncated section", []byte("\x00asm\x01\x00\x00\x00\x01\x10\x00"), "unexpected end"},
		{
			// wazero v1.12 allocates 2^31 element segments for this, and the
			// process dies of it (found by FuzzInstrument)
			"count over the section's size",
			[]byte("\x00asm\x01\x00\x00\x00\t\x06\x80\xff\xff\xff\x01\x00"),
			"section 9 claims 536870784 entries in 6 bytes",
		},
		{
			"too many locals",
			module(vec(1, typeVoid), vec(3, []byte{0}), vec(10, []byte{7, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f, 0x0b})),
			"4294967295 locals, over the limit of 50000",
		},
		{
			"overlong LEB128",
			module(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(0x41, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0b))),
			"too long",
		},
		{
			"trailing bytes in the code section",
			module(vec(1, typeVoid), vec(3, []byte{0}), cat([]byte{10, 1}, body(0x0b), []byte{0})),
			"trailing bytes",
		},
	}
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Instrument(tc.bin)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Instrument = %v, want ErrMalformed saying %q", err, tc.want)
			}
		})
	}
	unsupported := []struct {
		name string
		bin  []byte
		want string
	}{
		{"unknown section", module([]byte{42, 0}), "unknown section id 42"},
		{
			// global.get 1 with one global: the rewrite would give it a meaning
			"reference to a missing global",
			module(vec(1, typeResI32), vec(3, []byte{0}), vec(6, globalI32), vec(10, body(0x23, 1, 0x0b))),
			"global 1 does not exist",
		},
		{
			"SIMD",
			module(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(0xfd, 0x0c, 0x0b))),
			"instruction 0xfd",
		},
		{
			"exceptions",
			module(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(0x06, 0x40, 0x0b, 0x0b))),
			"instruction 0x6",
		},
		{
			"name taken",
			module(vec(1, typeVoid), vec(3, []byte{0}), vec(6, globalI32), vec(7, export(Export, 3, 0)), vec(10, body(0x0b))),
			"already exports",
		},
	}
	for _, tc := range unsupported {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Instrument(tc.bin)
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Instrument = %v, want ErrUnsupported saying %q", err, tc.want)
			}
		})
	}
}

// FuzzInstrument checks that Instrument never panics, that what it returns
// is instrumented once (a second pass refuses it), that a module wazero
// accepts stays acceptable after instrumentation, and, as the reducer host
// gives wazero every module not refused as malformed, that wazero survives
// those.
func FuzzInstrument(f *testing.F) {
	f.Add(spinModule())
	f.Add(module(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(0x03, 0x40, 0x0b, 0x0b))))
	f.Add(module(vec(1, typeResI32), vec(3, []byte{0}), vec(6, globalI32), vec(10, body(0x23, 0, 0x0b))))
	f.Fuzz(func(t *testing.T, bin []byte) {
		out, err := Instrument(bin)
		if errors.Is(err, ErrMalformed) {
			return
		}
		ctx := context.Background()
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
		defer rt.Close(ctx)
		_, compileErr := rt.CompileModule(ctx, bin)
		if err != nil {
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error wraps neither ErrMalformed nor ErrUnsupported: %v", err)
			}
			return
		}
		if _, err := Instrument(out); err == nil || !strings.Contains(err.Error(), "already exports") {
			t.Fatalf("second Instrument = %v, want a refusal of the exported name", err)
		}
		if compileErr != nil {
			return
		}
		if _, err := rt.CompileModule(ctx, out); err != nil {
			t.Fatalf("wazero accepts the module but not its instrumented copy: %v", err)
		}
	})
}
