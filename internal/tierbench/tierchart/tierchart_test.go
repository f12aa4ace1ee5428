package tierchart

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-state/strata/internal/tierbench"
)

// TestWrite draws a report's charts and checks that each file is a
// well-formed SVG document that shows the report's figures.
func TestWrite(t *testing.T) {
	ratio := 0.002
	rep := &tierbench.Report{
		Config: tierbench.Config{Regions: 4, Nodes: 8, Gateways: 2, Machines: 2000, Churn: 50, Seed: 1, Fault: tierbench.FaultNone},
		TwoTier: &tierbench.Result{CrossRegionBytesPerS: 1434, RegionalMs: []float64{12, 30, 45, 80},
			PlacementMs: []float64{300, 410, 520}},
		Single:           &tierbench.Result{CrossRegionBytesPerS: 717000, RegionalMs: []float64{100, 900}},
		CrossRegionRatio: &ratio,
	}
	dir := filepath.Join(t.TempDir(), "charts")
	paths, err := Write(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		CrossRegionFile: {"1.4 KB/s (0.20% of single)", "700.2 KB/s", "two-tier", "single"},
		RegionalFile:    {"two-tier (4 samples)", "single (2 samples)"},
		PlacementFile:   {"two-tier (3 samples)", "single: no samples"},
	}
	if len(paths) != len(want) {
		t.Fatalf("wrote %v, want %d files", paths, len(want))
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if root := svgRoot(t, p, b); root != "svg" {
			t.Errorf("%s: root element %q, want svg", p, root)
		}
		for _, s := range want[filepath.Base(p)] {
			if !strings.Contains(string(b), s) {
				t.Errorf("%s lacks %q", p, s)
			}
		}
	}
}

// svgRoot parses b as XML to its end and returns its root element's name.
func svgRoot(t *testing.T, path string, b []byte) string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(string(b)))
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return root
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
}

func TestWriteNeedsBothTopologies(t *testing.T) {
	if _, err := Write(t.TempDir(), &tierbench.Report{TwoTier: &tierbench.Result{}}); !errors.Is(err, ErrNoData) {
		t.Errorf("err = %v, want ErrNoData", err)
	}
}
