package check

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/strata-state/strata/contracts"
)

// BenchmarkCheckExample measures a full check of the example contract
// against itself: compile, strata's rules, lint, and the compatibility
// comparison (which compiles the old version too).
func BenchmarkCheckExample(b *testing.B) {
	dir, err := filepath.Abs("..")
	if err != nil {
		b.Fatal(err)
	}
	opts := Options{Dir: dir, Files: contracts.ExampleFiles(), Against: dir}
	b.ReportAllocs()
	for b.Loop() {
		r, err := Run(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		if r.Failed(true) {
			b.Fatalf("findings: %v", r.Findings)
		}
	}
}
