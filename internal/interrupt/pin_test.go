package interrupt

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// wazeroPin is the wazero version whose decoder and compiler Instrument
// was written against and checked by FuzzCompilerDifferential.
const wazeroPin = "v1.12.0"

// TestWazeroPin fails when the wazero the module builds with is not the
// one Instrument was checked against. Instrument is the guard in front of
// wazero: it must read every byte as wazero's decoder does and bound what
// reaches wazero's compiler, so an update of wazero is an update of the
// guard's assumptions.
func TestWazeroPin(t *testing.T) {
	gomod := filepath.Join("..", "..", "go.mod")
	b, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatalf("reading %s: %v", gomod, err)
	}
	var got string
	if m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/tetratelabs/wazero\s+(\S+)`).FindSubmatch(b); m != nil {
		got = string(m[1])
	}
	if regexp.MustCompile(`(?m)^\s*(?:replace\s+)?github\.com/tetratelabs/wazero\b.*=>`).Match(b) {
		got += " (replaced)"
	}
	if got == wazeroPin {
		return
	}
	t.Fatalf(`github.com/tetratelabs/wazero in go.mod is %q, internal/interrupt was checked against %q.
Before updating the pin in go.mod, re-check in the new wazero (internal/wasm/binary, internal/engine/wazevo):
  - the decoder reads every section, value type, block type, limits and instruction as decode.go does:
    typed references (0x63/0x64 prefixes), SIMD opcodes read as one byte, the 0xfc and 0xfe prefixes,
    limits flags, element and data segment flags, the name section;
  - what it allocates from a count before reading the entries (the claims refused by reader.count);
  - which features are on by default (threads, exceptions, GC, tail calls) against what skipImmediates accepts;
  - the compiler's memory and time per call weight, local, nesting level and table entry against the
    limits in admission.go (MaxLocals, MaxFunctionCalls, MaxNesting, MaxTableEntries ...);
  - how WithCloseOnContextDone and host calls behave (host.go, Tick).
Then run: go test -run 'Test|FuzzInstrument|FuzzCompilerDifferential' ./internal/interrupt
and go test -fuzz FuzzCompilerDifferential -fuzztime 10m ./internal/interrupt, and set wazeroPin in pin_test.go`, got, wazeroPin)
}
