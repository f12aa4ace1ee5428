package interrupt_test

import (
	"os"
	"testing"

	"github.com/strata-state/strata/internal/interrupt"
	"github.com/strata-state/strata/internal/reducertest"
)

// BenchmarkInstrument instruments the example reducer (a 2.4 MB Go
// module), as every Load does before it looks in the compilation cache.
func BenchmarkInstrument(b *testing.B) {
	bin, err := os.ReadFile(reducertest.Module(b, "app-regions"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(bin)))
	for b.Loop() {
		if _, err := interrupt.Instrument(bin); err != nil {
			b.Fatal(err)
		}
	}
}
