package reducer

import (
	"maps"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the reducers' counters as Prometheus metrics:
//
//	strata_reducer_runs_total{reducer}                  counter
//	strata_reducer_failures_total{reducer,kind}         counter
//	strata_reducer_last_run_duration_seconds{reducer}   gauge
//	strata_reducer_last_run_rows_in{reducer}            gauge
//	strata_reducer_last_run_records_out{reducer}        gauge
//	strata_reducer_last_run_ok{reducer}                 gauge, 1 or 0 (0 also when the
//	                                                    publisher refused records of the run)
//	strata_reducer_info{reducer,hash}                   gauge, always 1
//
// It reads the reducers' status when scraped; reducers is called on every
// scrape, so the set may change.
type Collector struct {
	reducers                               func() []*Reducer
	rejected                               func(name string) bool
	runs, failures, dur, rows, recs, ok, i *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector of the reducers that reducers returns.
func NewCollector(reducers func() []*Reducer) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("strata_reducer_"+name, help, append([]string{"reducer"}, labels...), nil)
	}
	return &Collector{
		reducers: reducers,
		runs:     d("runs_total", "Reducer runs since the reducer was loaded."),
		failures: d("failures_total", "Failed reducer runs, by kind of failure.", "kind"),
		dur:      d("last_run_duration_seconds", "Duration of the reducer's last run."),
		rows:     d("last_run_rows_in", "Input rows of the reducer's last run."),
		recs:     d("last_run_records_out", "Records of the reducer's last run; 0 when it failed."),
		ok:       d("last_run_ok", "1 when the reducer's last run succeeded and none of its records was rejected, else 0."),
		i:        d("info", "The reducer's module hash.", "hash"),
	}
}

// WithRejected makes last_run_ok 0 for a reducer whose last run's
// records rejected reports refused (a leak, a contract violation): the
// run succeeded, but did not publish what it computed. It returns c.
func (c *Collector) WithRejected(rejected func(name string) bool) *Collector {
	c.rejected = rejected
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.runs, c.failures, c.dur, c.rows, c.recs, c.ok, c.i} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.reducers() {
		r.mu.Lock()
		runs, byKind, last := r.stats.runs, maps.Clone(r.stats.byKind), r.stats.lastRun
		r.mu.Unlock()
		name := r.cfg.Name
		ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, float64(runs), name)
		for kind, n := range byKind {
			ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(n), name, kind)
		}
		ch <- prometheus.MustNewConstMetric(c.i, prometheus.GaugeValue, 1, name, r.hash)
		if last == nil {
			continue
		}
		ok := 0.0
		if last.OK && (c.rejected == nil || !c.rejected(name)) {
			ok = 1
		}
		ch <- prometheus.MustNewConstMetric(c.dur, prometheus.GaugeValue, last.DurationMS/1000, name)
		ch <- prometheus.MustNewConstMetric(c.rows, prometheus.GaugeValue, float64(last.RowsIn), name)
		ch <- prometheus.MustNewConstMetric(c.recs, prometheus.GaugeValue, float64(last.RecordsOut), name)
		ch <- prometheus.MustNewConstMetric(c.ok, prometheus.GaugeValue, ok, name)
	}
}
