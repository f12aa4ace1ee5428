// Package tierchart draws the charts of a `strata bench tiers` report as
// SVG files with gonum.org/v1/plot: the cross-region bytes of each
// topology, and the propagation latencies (regional and placement) of
// both topologies as CDFs. It is its own package so that only the bench
// command links the plotting library.
package tierchart

import (
	"errors"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/strata-state/strata/internal/tierbench"
)

// The files Write writes in its directory.
const (
	CrossRegionFile = "cross-region-bytes.svg"
	RegionalFile    = "propagation-regional.svg"
	PlacementFile   = "propagation-placement.svg"
)

// ErrNoData is returned when the report lacks a topology's figures.
var ErrNoData = errors.New("tierchart: the report lacks a topology")

var (
	twoTierColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	singleColor  = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
)

// Write draws rep's charts into dir (created if missing) and returns the
// paths it wrote.
func Write(dir string, rep *tierbench.Report) ([]string, error) {
	if rep.TwoTier == nil || rep.Single == nil {
		return nil, ErrNoData
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := rep.Config
	sub := fmt.Sprintf("%d regions × %d nodes (%d gateways), %d machines/region, churn %d/s/region, seed %d, fault %s",
		c.Regions, c.Nodes, c.Gateways, c.Machines, c.Churn, c.Seed, c.Fault)
	var paths []string
	for _, ch := range []struct {
		file string
		draw func(string) (*plot.Plot, error)
	}{
		{CrossRegionFile, func(sub string) (*plot.Plot, error) { return crossRegion(rep, sub) }},
		{RegionalFile, func(sub string) (*plot.Plot, error) {
			return cdf("Regional propagation: write → every node of its region", sub,
				rep.TwoTier.RegionalMs, rep.Single.RegionalMs)
		}},
		{PlacementFile, func(sub string) (*plot.Plot, error) {
			return cdf("Placement propagation: write → every other region's consumers", sub,
				rep.TwoTier.PlacementMs, rep.Single.PlacementMs)
		}},
	} {
		p, err := ch.draw(sub)
		if err != nil {
			return paths, fmt.Errorf("tierchart: %s: %w", ch.file, err)
		}
		path := filepath.Join(dir, ch.file)
		if err := p.Save(20*vg.Centimeter, 12*vg.Centimeter, path); err != nil {
			return paths, fmt.Errorf("tierchart: %s: %w", ch.file, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// crossRegion is a bar per topology, labelled with its figure; the
// two-tier bar also with its share of single's.
func crossRegion(rep *tierbench.Report, sub string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Cross-region gossip bytes per second\n" + sub
	p.Y.Label.Text = "KB/s sent between regions (counted at the transport)"
	kb := []float64{rep.TwoTier.CrossRegionBytesPerS / 1024, rep.Single.CrossRegionBytesPerS / 1024}
	labels := []string{fmt.Sprintf("%.1f KB/s", kb[0]), fmt.Sprintf("%.1f KB/s", kb[1])}
	if rep.CrossRegionRatio != nil {
		labels[0] += fmt.Sprintf(" (%.2f%% of single)", 100**rep.CrossRegionRatio)
	}
	for i, col := range []color.Color{twoTierColor, singleColor} {
		vals := make(plotter.Values, 2)
		vals[i] = kb[i]
		b, err := plotter.NewBarChart(vals, vg.Points(60))
		if err != nil {
			return nil, err
		}
		b.Color = col
		b.LineStyle.Width = 0
		p.Add(b)
	}
	p.NominalX("two-tier", "single")
	l, err := plotter.NewLabels(plotter.XYLabels{
		XYs:    plotter.XYs{{X: 0, Y: kb[0]}, {X: 1, Y: kb[1]}},
		Labels: labels,
	})
	if err != nil {
		return nil, err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign = -0.5
		l.TextStyle[i].YAlign = 0
	}
	p.Add(l)
	p.Y.Min = 0
	p.Y.Max = max(kb[0], kb[1]) * 1.15
	if p.Y.Max == 0 {
		p.Y.Max = 1
	}
	return p, nil
}

// cdf draws the empirical CDF of each topology's latencies, with the
// sample count in the legend; a topology without samples is named as such.
func cdf(title, sub string, twoTier, single []float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title + "\n" + sub
	p.X.Label.Text = "milliseconds"
	p.Y.Label.Text = "fraction of writes seen everywhere"
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	for _, s := range []struct {
		name string
		ms   []float64
		col  color.Color
	}{{"two-tier", twoTier, twoTierColor}, {"single", single, singleColor}} {
		if len(s.ms) == 0 {
			p.Legend.Add(s.name + ": no samples")
			continue
		}
		v := slices.Clone(s.ms)
		slices.Sort(v)
		xys := make(plotter.XYs, 0, 2*len(v))
		for i, x := range v {
			xys = append(xys, plotter.XY{X: x, Y: float64(i) / float64(len(v))},
				plotter.XY{X: x, Y: float64(i+1) / float64(len(v))})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.Color = s.col
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (%d samples)", s.name, len(v)), l)
	}
	p.X.Min = 0
	return p, nil
}
