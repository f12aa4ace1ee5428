package interrupt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The bounds a module the guard accepts compiles within, on wazero's
// compiler (FuzzCompilerDifferential and TestCompileBounds check them;
// docs/RELIABILITY.md states them): bytes allocated while compiling at
// most compileAllocBase, plus compileAllocPerByte per byte of the
// instrumented module, plus compileAllocPerCall per unit of call weight
// (see MaxFunctionCalls), plus compileAllocPerLocal per declared local
// (see MaxModuleLocals: 40 functions of 50,000 locals take 16 MB in a
// module of 1 kB); and at most compileTimeLimit of wall time.
const (
	compileAllocBase     = 8 << 20
	compileAllocPerByte  = 2 << 10
	compileAllocPerCall  = 1 << 10
	compileAllocPerLocal = 16
	compileTimeLimit     = 10 * time.Second
)

// FuzzCompilerDifferential runs modules on wazero's compiler (the engine
// the agent uses) before and after Instrument, and checks that the
// instrumented module computes what the original does: the same results,
// the same trap, the same memory and globals. The first byte picks the
// mode: even, the rest of the input drives a generator of modules that
// always terminate (bounded loops through a fuel global, recursion
// through a depth global) and exercise loops, calls, indirect calls, host
// calls, traps and bulk memory instructions; odd, the rest is taken as a
// module, raw, and compared where both runs end within a deadline. In
// both modes a module Instrument accepts must compile within the bounds
// above.
func FuzzCompilerDifferential(f *testing.F) {
	for _, seed := range []string{
		"",
		"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
		"\x00\x05\x03\x07\x01\x02\x11\x13\x05\x09\x02\x01\x03\x04\x0a\x0b\x0c\x0d\x01\x02\x03\x04\x05\x06\x07\x08",
		"\x00\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0\x80\x81\x82\x83\x84\x85\x86\x87",
		"\x00\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04\x04",
		"\x00\x03\x09\x02\x0f\x0e\x06\x01\x07\x08\x03\x02\x0c\x0b\x0a\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10",
		"\x00\x02\x09\x09\x09\x09\x09\x05\x05\x05\x05\x07\x07\x07\x07\x0b\x0b\x0b\x0b\x0b\x0b\x0b",
	} {
		f.Add([]byte(seed))
	}
	for i := range 12 { // longer programs
		r := rand.New(rand.NewPCG(uint64(i), 14))
		in := make([]byte, 64+64*i)
		for j := range in {
			in[j] = byte(r.Uint32())
		}
		in[0] &^= 1
		f.Add(in)
	}
	for _, bin := range [][]byte{spinModule(), simdModule(), renumberingModule(), tableModule(), hostCallsModule()} {
		f.Add(append([]byte{1}, bin...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			in = []byte{0}
		}
		if in[0]&1 == 0 {
			differential(t, generate(in[1:]), true)
		} else {
			differential(t, in[1:], false)
		}
	})
}

// differential instruments bin, compiles both on wazero's compiler, and
// compares their runs. mustAccept: bin is generated, and Instrument must
// accept it and wazero run it to the end.
func differential(t *testing.T, bin []byte, mustAccept bool) {
	out, err := Instrument(bin)
	if err != nil {
		if mustAccept {
			t.Fatalf("Instrument refuses a generated module: %v", err)
		}
		return
	}
	ctx := context.Background()
	rtOut := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithMemoryLimitPages(64))
	defer rtOut.Close(ctx)
	compiledOut := compileWithinBounds(t, rtOut, bin, out)
	if compiledOut == nil {
		if mustAccept {
			t.Fatal("wazero refuses the instrumented generated module")
		}
		return
	}
	rtIn := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithMemoryLimitPages(64).WithCloseOnContextDone(true))
	defer rtIn.Close(ctx)
	compiledIn, err := rtIn.CompileModule(ctx, bin)
	if err != nil {
		t.Fatalf("wazero compiles the instrumented module but not the original: %v", err)
	}
	ticks := 0
	hostModule(t, rtOut, func(ctx context.Context, mod api.Module, stack []uint64) {
		ticks++
		Tick(ctx, mod, stack)
	}, map[string]any{"host": hostFunc, "started": func() {}, "noop": func() {}})
	if _, err := rtIn.NewHostModuleBuilder(ImportModule).
		NewFunctionBuilder().WithFunc(hostFunc).Export("host").
		NewFunctionBuilder().WithFunc(func() {}).Export("started").
		NewFunctionBuilder().WithFunc(func() {}).Export("noop").
		Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	if !mustAccept && hasTables(bin) {
		return // the original may grow a table past the limits the rewrite gives it
	}
	deadline := 500 * time.Millisecond
	if mustAccept {
		deadline = 20 * time.Second // a generated module terminates: only a hang ends here
	}
	a := runAll(ctx, rtIn, compiledIn, deadline)
	b := runAll(ctx, rtOut, compiledOut, deadline)
	if mustAccept && (a.timedOut || b.timedOut) {
		t.Fatalf("a generated module ran past %v: original %v, instrumented %v", deadline, a.timedOut, b.timedOut)
	}
	if a.timedOut || b.timedOut {
		return // an original that does not end is stopped differently: nothing to compare
	}
	if a.String() != b.String() {
		t.Fatalf("the instrumented module differs from the original:\noriginal:     %s\ninstrumented: %s", a, b)
	}
	if testing.Verbose() {
		t.Logf("%d bytes, %d ticks: %s", len(bin), ticks, a)
	}
	if mustAccept && a.calls == 0 {
		t.Fatalf("the generated module exported nothing that ran: %s", a)
	}
}

// hasTables tells whether the module bin, which Instrument accepts,
// defines or imports a table.
func hasTables(bin []byte) bool {
	secs, _, _ := admit(bin)
	for _, s := range secs {
		switch s.id {
		case secTable:
			return true
		case secImport:
			r := s.reader()
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				r.name()
				r.name()
				switch r.byte() {
				case 0:
					r.u32()
				case 1:
					return true
				case 2:
					r.limits()
				case 3:
					r.globalType()
				}
			}
		}
	}
	return false
}

// hostFunc is the host function strata.host of generated modules: some
// work, deterministic.
func hostFunc(x uint64) uint64 { return x*0x9e3779b97f4a7c15 + 1 }

// compileWithinBounds compiles out, the instrumented bin, on rt and fails
// the test if it took more than the bounds; nil if wazero refuses it.
func compileWithinBounds(t *testing.T, rt wazero.Runtime, bin, out []byte) wazero.CompiledModule {
	t.Helper()
	weight, locals := callWeight(t, bin)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	compiled, err := rt.CompileModule(context.Background(), out)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		return nil
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	limit := uint64(compileAllocBase) + compileAllocPerByte*uint64(len(out)) + compileAllocPerCall*weight + compileAllocPerLocal*locals
	if alloc > limit {
		t.Fatalf("compiling an accepted module of %d bytes, call weight %d, %d locals, allocated %d bytes, over the bound of %d", len(out), weight, locals, alloc, limit)
	}
	if testing.Verbose() {
		t.Logf("compiled %d bytes, call weight %d, %d locals: %d bytes allocated (bound %d), %v", len(out), weight, locals, alloc, limit, took)
	}
	if took > compileTimeLimit*raceSlowdown {
		t.Fatalf("compiling an accepted module of %d bytes took %v, over the bound of %v (times %d under -race)", len(out), took, compileTimeLimit, raceSlowdown)
	}
	return compiled
}

// TestCompileBounds compiles modules the guard accepts that sit at its
// limits, each costly to compile in its own way, and checks them against
// the bounds.
func TestCompileBounds(t *testing.T) {
	deep := func(inner []byte, depth int) []byte { // depth nested blocks around inner
		return cat(bytes.Repeat([]byte{0x02, 0x40}, depth), inner, bytes.Repeat([]byte{0x0b}, depth), []byte{0x0b})
	}
	var bodies, funcs [][]byte
	for range MaxModuleLocals / MaxLocals {
		b := cat([]byte{1}, appendU32(nil, MaxLocals), []byte{0x7e, 0x0b})
		bodies = append(bodies, append(appendU32(nil, uint32(len(b))), b...))
		funcs = append(funcs, []byte{0})
	}
	loops := cat(bytes.Repeat([]byte{0x03, 0x40}, MaxLoopNesting), bytes.Repeat([]byte{0x0b}, MaxLoopNesting))
	brTable := bytes.Repeat(cat(i32(0), []byte{0x0e}, appendU32(nil, 4000), bytes.Repeat([]byte{0x00}, 4001)), 10)
	for name, bin := range map[string][]byte{
		"locals":   wasm(vec(1, typeVoid), vec(3, funcs...), vec(10, bodies...)),
		"nesting":  wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(deep(loops, MaxNesting-MaxLoopNesting)...))),
		"br_table": wasm(vec(1, typeVoid), vec(3, []byte{0}), vec(10, body(deep(brTable, MaxNesting)...))),
	} {
		t.Run(name, func(t *testing.T) {
			out, err := Instrument(bin)
			if err != nil {
				t.Fatalf("the guard refuses a module at its limits: %v", err)
			}
			rt := wazero.NewRuntimeWithConfig(context.Background(), wazero.NewRuntimeConfigCompiler())
			defer rt.Close(context.Background())
			if compileWithinBounds(t, rt, bin, out) == nil {
				t.Fatal("wazero refuses it")
			}
		})
	}
}

// callWeight is the weight of the calls of the module bin, which
// Instrument accepts (see MaxModuleCalls), and its declared locals.
func callWeight(t *testing.T, bin []byte) (weight, locals uint64) {
	t.Helper()
	secs, m, err := admit(bin)
	if err != nil {
		t.Fatalf("admit refuses what Instrument accepts: %v", err)
	}
	for _, s := range secs {
		if s.id == secCode {
			if _, err := m.rewriteCode(s, &added{}, nil); err != nil {
				t.Fatalf("rewriteCode refuses what Instrument accepts: %v", err)
			}
		}
	}
	return m.callWeight, m.locals
}

// outcome is what running a module's exports did.
type outcome struct {
	lines    []string
	calls    int
	timedOut bool
}

func (o outcome) String() string { return strings.Join(o.lines, "; ") }

// runAll instantiates compiled and calls each exported function without
// parameters, in name order, then reads the exported memories and the global g.
func runAll(ctx context.Context, rt wazero.Runtime, compiled wazero.CompiledModule, deadline time.Duration) (o outcome) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	mod, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
	if ctx.Err() != nil {
		o.timedOut = true
		return o
	}
	if err != nil {
		o.lines = append(o.lines, "instantiate: "+firstLine(err))
		return o
	}
	defer mod.Close(context.Background())
	names := sortedKeys(compiled.ExportedFunctions())
	for _, name := range names {
		def := compiled.ExportedFunctions()[name]
		if len(def.ParamTypes()) != 0 {
			continue
		}
		res, err := mod.ExportedFunction(name).Call(ctx)
		if ctx.Err() != nil {
			o.timedOut = true
			return o
		}
		o.calls++
		if err != nil {
			o.lines = append(o.lines, fmt.Sprintf("%s: %s", name, firstLine(err)))
			break // a trap leaves the instance in no state worth comparing further
		}
		o.lines = append(o.lines, fmt.Sprintf("%s: %v", name, res))
	}
	for _, name := range sortedKeys(compiled.ExportedMemories()) {
		mem := mod.ExportedMemory(name)
		b, _ := mem.Read(0, mem.Size())
		o.lines = append(o.lines, fmt.Sprintf("memory %s: %d bytes, %x", name, len(b), digest(b)))
	}
	if g := mod.ExportedGlobal("g"); g != nil { // the generated modules' global
		o.lines = append(o.lines, fmt.Sprintf("global g: %d", g.Get()))
	}
	return o
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys { // few keys
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

// firstLine is a trap's message without wazero's stack trace, whose
// function numbers the rewrite shifts.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// digest is an FNV-1a hash of b.
func digest(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

// gen generates a terminating module from bytes: each choice reads one
// byte, zero once the bytes are used up, so that every input makes a
// module and short inputs small ones.
type gen struct {
	in     []byte
	funcs  int    // defined functions of type (i64) -> i64: indices 1..funcs
	labels []bool // open labels of the body being made: true for a loop
	loops  int
	size   int // instructions made, to bound a body
}

func (g *gen) next() byte {
	if len(g.in) == 0 {
		return 0
	}
	c := g.in[0]
	g.in = g.in[1:]
	return c
}

func (g *gen) pick(n int) int { return int(g.next()) % n }

const (
	genLocals   = 4      // i64 locals 1..4 besides the parameter
	genCounters = 3      // i32 loop counters, locals 5..7: loops nest at most 3 deep
	genFuel     = 50_000 // loop iterations in all, a few Intervals
	genDepth    = 24     // nested calls
	genMaxSize  = 400    // instructions per body
)

// generate makes a module that imports strata.host (i64) -> i64, defines
// functions (i64) -> i64 that call each other, directly and through a
// table, and exports run () -> i64, its memory and a global. Every loop
// burns fuel from global 1, every call adds to the depth in global 2,
// and either running out traps: the module always terminates.
func generate(in []byte) []byte {
	g := &gen{in: in, funcs: 1 + int(len(in)%4)}
	types := vec(1,
		[]byte{0x60, 1, 0x7e, 1, 0x7e}, // 0: (i64) -> i64
		[]byte{0x60, 0, 1, 0x7e},       // 1: () -> i64
	)
	imports := vec(2, append(appendName(appendName(nil, ImportModule), "host"), 0, 0))
	var funcs, bodies [][]byte
	for range g.funcs {
		funcs = append(funcs, []byte{0})
		bodies = append(bodies, g.function())
	}
	funcs = append(funcs, []byte{1})
	run := cat(i64c(int64(binary.LittleEndian.Uint64(append(g.take(8), make([]byte, 8)...)))),
		[]byte{0x10}, appendU32(nil, 1), // call the first defined function
		[]byte{0x23, 0, 0x7c, 0x0b}) // + global 0
	bodies = append(bodies, fnBody(run))
	var elems []byte
	for i := 1; i <= g.funcs; i++ {
		elems = appendU32(elems, uint32(i))
	}
	table := cat([]byte{0x70, 0x01}, appendU32(nil, uint32(g.funcs)), appendU32(nil, uint32(g.funcs)))
	return wasm(
		types,
		imports,
		vec(3, funcs...),
		vec(4, table),
		vec(5, []byte{0x01, 1, 2}), // memory: 1 page, at most 2
		vec(6,
			cat([]byte{0x7e, 1}, i64c(7), []byte{0x0b}),      // 0: mut i64
			cat([]byte{0x7f, 1}, i32(genFuel), []byte{0x0b}), // 1: fuel
			cat([]byte{0x7f, 1}, i32(0), []byte{0x0b})),      // 2: depth
		vec(7, export("run", 0, uint32(g.funcs+1)), export("mem", 2, 0), export("g", 3, 0)),
		vec(9, cat([]byte{0}, i32(0), []byte{0x0b}, appendU32(nil, uint32(g.funcs)), elems)),
		vec(10, bodies...),
	)
}

func (g *gen) take(n int) []byte {
	n = min(n, len(g.in))
	b := g.in[:n]
	g.in = g.in[n:]
	return b
}

// fnBody is a function body with the generator's locals.
func fnBody(code []byte) []byte {
	b := cat([]byte{2, genLocals, 0x7e, genCounters, 0x7f}, code)
	return append(appendU32(nil, uint32(len(b))), b...)
}

func i64c(v int64) []byte {
	b := []byte{0x42}
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// function makes the body of a function (i64) -> i64: depth check,
// fuel, statements, depth restored, a result.
func (g *gen) function() []byte {
	g.size, g.labels, g.loops = 0, nil, 0
	code := []byte{0x23, 2, 0x41, 1, 0x6a, 0x24, 2, // depth++
		0x23, 2}
	code = append(code, i32(genDepth)...)
	code = append(code, 0x4a, 0x04, 0x40, 0x00, 0x0b)          // i32.gt_s if unreachable end
	code = append(code, 0x23, 1, 0x45, 0x04, 0x40, 0x00, 0x0b, // no fuel: trap
		0x23, 1, 0x41, 1, 0x6b, 0x24, 1) // fuel--: calls burn fuel too
	code = append(code, g.stmts(4)...)
	code = append(code, 0x23, 2, 0x41, 1, 0x6b, 0x24, 2) // depth--
	code = append(code, g.expr(0)...)
	return fnBody(append(code, 0x0b))
}

func (g *gen) stmts(max int) []byte {
	var code []byte
	for n := g.pick(max + 1); n > 0 && g.size < genMaxSize; n-- {
		code = append(code, g.stmt()...)
	}
	return code
}

func (g *gen) stmt() []byte {
	g.size++
	switch g.pick(12) {
	case 0, 1:
		return cat(g.expr(0), []byte{0x21, byte(1 + g.pick(genLocals))}) // local.set
	case 2:
		return cat(g.expr(0), []byte{0x24, 0}) // global.set 0
	case 3:
		return cat(g.addr(), g.expr(0), []byte{0x37, 3}, appendU32(nil, uint32(g.pick(16)))) // i64.store
	case 4: // if/else, on a value
		g.labels = append(g.labels, false)
		c := cat(g.expr(0), []byte{0x50, 0x04, 0x40}, g.stmts(3), []byte{0x05}, g.stmts(3), []byte{0x0b})
		g.labels = g.labels[:len(g.labels)-1]
		return c
	case 5: // a counted loop, burning fuel
		if g.loops >= genCounters {
			return nil
		}
		counter := byte(1 + genLocals + g.loops)
		g.loops++
		g.labels = append(g.labels, false, true)
		c := cat(i32(int32(g.pick(40))), []byte{0x21, counter,
			0x02, 0x40, 0x03, 0x40,
			0x20, counter, 0x45, 0x0d, 1, // exit when the counter is 0
			0x23, 1, 0x45, 0x04, 0x40, 0x00, 0x0b, // no fuel: trap
			0x23, 1, 0x41, 1, 0x6b, 0x24, 1}, // fuel--
			g.stmts(4),
			[]byte{0x20, counter, 0x41, 1, 0x6b, 0x21, counter, 0x0c, 0, 0x0b, 0x0b})
		g.labels = g.labels[:len(g.labels)-2]
		g.loops--
		return c
	case 6: // br_if out of a block or if (never back to a loop)
		var outs []int
		for i, loop := range g.labels {
			if !loop {
				outs = append(outs, len(g.labels)-1-i)
			}
		}
		if len(outs) == 0 {
			return nil
		}
		return cat(g.expr(0), []byte{0x50, 0x0d}, appendU32(nil, uint32(outs[g.pick(len(outs))])))
	case 7: // memory.fill
		return cat(g.addr(), g.i32(), g.length(), []byte{0xfc, 11, 0})
	case 8: // memory.copy
		return cat(g.addr(), g.addr(), g.length(), []byte{0xfc, 10, 0, 0})
	case 9: // memory.grow by one page: fails once at the maximum
		return []byte{0x41, 1, 0x40, 0, 0x1a}
	case 10: // a call for its effects
		return cat(g.expr(0), []byte{0x1a})
	default: // a trap, rarely taken
		return cat(g.expr(0), i64c(int64(g.next())), []byte{0x51, 0x04, 0x40, 0x00, 0x0b})
	}
}

// addr is an i32 address, mostly inside the first page.
func (g *gen) addr() []byte {
	e := cat(g.expr(2), []byte{0xa7}) // i32.wrap_i64
	if g.pick(4) != 0 {
		e = cat(e, i32(0xfff0), []byte{0x71}) // i32.and
	}
	return e
}

func (g *gen) i32() []byte { return cat(g.expr(2), []byte{0xa7}) }

// length is an i32 length of a bulk instruction: mostly short, sometimes
// past the memory.
func (g *gen) length() []byte {
	if g.pick(8) == 0 {
		return g.i32()
	}
	return i32(int32(g.next()) * 64)
}

var binops = []byte{0x7c, 0x7d, 0x7e, 0x7f, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a}

// expr is an i64 expression; depth bounds its nesting.
func (g *gen) expr(depth int) []byte {
	g.size++
	if depth > 4 || g.size > genMaxSize {
		return i64c(int64(g.next()))
	}
	switch g.pick(14) {
	case 0:
		return i64c(int64(binary.LittleEndian.Uint64(append(g.take(8), make([]byte, 8)...))))
	case 1, 2:
		return []byte{0x20, byte(g.pick(1 + genLocals))} // local.get
	case 3:
		return []byte{0x23, 0} // global.get 0
	case 4, 5, 6:
		return cat(g.expr(depth+1), g.expr(depth+1), []byte{binops[g.pick(len(binops))]})
	case 7:
		return cat(g.addr(), []byte{0x29, 3}, appendU32(nil, uint32(g.pick(16)))) // i64.load
	case 8: // call a defined function (recursion is bounded by the depth)
		return cat(g.expr(depth+1), []byte{0x10}, appendU32(nil, uint32(1+g.pick(g.funcs))))
	case 9: // call the host
		return cat(g.expr(depth+1), []byte{0x10, 0})
	case 10: // call through the table: an index past it traps
		return cat(g.expr(depth+1), i32(int32(g.pick(g.funcs+1))), []byte{0x11, 0, 0})
	case 11: // select
		return cat(g.expr(depth+1), g.expr(depth+1), g.expr(depth+1), []byte{0x50, 0x1b})
	case 12: // memory.size, extended
		return []byte{0x3f, 0, 0xad}
	default: // through f64 and back: traps when out of range
		return cat(g.expr(depth+1), []byte{0xb9, 0xb0})
	}
}
