package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-state/strata/agent/store"
)

// metrics are the API's Prometheus metrics, all prefixed strata_.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rejected *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, stores map[string]*store.Store, rows func(tier string, st store.Stats) map[string]int64, publisher func() PublisherStatus) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_api_requests_total",
			Help: "HTTP API requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "strata_api_request_duration_seconds",
			Help:    "HTTP API request latency by route (watch streams excluded).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"route"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_api_rejected_rows_total",
			Help: "Rows refused by the API before reaching the store, by table and reason.",
		}, []string{"table", "reason"}),
	}
	reg.MustRegister(m.requests, m.duration, m.rejected, storeCollector{stores, rows})
	if publisher != nil {
		reg.MustRegister(publisherCollector{publisher})
	}
	return m
}

// instrument counts requests and times them by route pattern.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "other"
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
		if !strings.HasPrefix(r.Pattern, "GET /v1/watch/") {
			s.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}
	})
}

// statusRecorder remembers the status code written.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush lets watch streams flush through the recorder.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// storeCollector exports store statistics at scrape time.
type storeCollector struct {
	stores map[string]*store.Store
	rows   func(tier string, st store.Stats) map[string]int64 // live rows by table (Server.liveRows)
}

var (
	descRows = prometheus.NewDesc("strata_store_rows", "Live rows by tier and table.",
		[]string{"tier", "table"}, nil)
	descSeq = prometheus.NewDesc("strata_store_seq", "Sequence number of the last committed change.",
		[]string{"tier"}, nil)
	descCommits = prometheus.NewDesc("strata_store_commits_total", "Committed store transactions.",
		[]string{"tier"}, nil)
	descCommitSeconds = prometheus.NewDesc("strata_store_commit_seconds_total", "Time spent in store commits, fsync included.",
		[]string{"tier"}, nil)
	descRowsWritten = prometheus.NewDesc("strata_store_rows_written_total", "Row writes committed, local and remote.",
		[]string{"tier"}, nil)
	descFileBytes = prometheus.NewDesc("strata_store_file_bytes", "Size of the store's data file.",
		[]string{"tier"}, nil)
)

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRows, descSeq, descCommits, descCommitSeconds, descRowsWritten, descFileBytes} {
		ch <- d
	}
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	for tier, s := range c.stores {
		st := s.Stats()
		for table, n := range c.rows(tier, st) {
			ch <- prometheus.MustNewConstMetric(descRows, prometheus.GaugeValue, float64(n), tier, table)
		}
		ch <- prometheus.MustNewConstMetric(descSeq, prometheus.GaugeValue, float64(st.Seq), tier)
		ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(st.Commits), tier)
		ch <- prometheus.MustNewConstMetric(descCommitSeconds, prometheus.CounterValue, st.CommitSeconds, tier)
		ch <- prometheus.MustNewConstMetric(descRowsWritten, prometheus.CounterValue, float64(st.RowsWritten), tier)
		ch <- prometheus.MustNewConstMetric(descFileBytes, prometheus.GaugeValue, float64(st.FileBytes), tier)
	}
}

// publisherCollector exports the region's publisher as this node sees it.
type publisherCollector struct{ publisher func() PublisherStatus }

var (
	descPublisher = prometheus.NewDesc("strata_publisher", "1 for the node this node sees as its region's publisher; no series when the region has none.",
		[]string{"node"}, nil)
	descGateways = prometheus.NewDesc("strata_region_gateways_alive", "Alive gateways of this node's region.", nil, nil)
)

func (c publisherCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPublisher
	ch <- descGateways
}

func (c publisherCollector) Collect(ch chan<- prometheus.Metric) {
	ps := c.publisher()
	if ps.Node != "" {
		ch <- prometheus.MustNewConstMetric(descPublisher, prometheus.GaugeValue, 1, ps.Node)
	}
	ch <- prometheus.MustNewConstMetric(descGateways, prometheus.GaugeValue, float64(len(ps.Gateways)))
}
