package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Arrival paths of a change, the values of strata_changes_applied_total's
// path label.
const (
	pathGossip      = "gossip"       // memberlist piggyback gossip (peers that do not push)
	pathPush        = "push"         // eager push over streams
	pathRepair      = "repair"       // a range asked for after an announcement
	pathAntiEntropy = "anti_entropy" // digest anti-entropy, the last resort
)

// broadcastMetrics count the dissemination path: how changes arrived and
// what the push overlay did.
type broadcastMetrics struct {
	applied   *prometheus.CounterVec // tier, path: changes that brought new state
	batches   *prometheus.CounterVec // tier, direction
	bytes     *prometheus.CounterVec // tier, direction
	forwards  *prometheus.CounterVec // tier
	dups      *prometheus.CounterVec // tier
	repairs   *prometheus.CounterVec // tier, kind
	evictions *prometheus.CounterVec // tier
	peers     *prometheus.GaugeVec   // tier, mode
}

func newBroadcastMetrics(reg prometheus.Registerer) *broadcastMetrics {
	m := &broadcastMetrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_changes_applied_total",
			Help: "Changes from peers that brought new state, by tier and the path they arrived by (gossip, push, repair, anti_entropy)."}, []string{"tier", "path"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_push_batches_total",
			Help: "Push batches sent and received over streams."}, []string{"tier", "direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_push_bytes_total",
			Help: "Bytes of push batches sent and received (before memberlist's compression and encryption)."}, []string{"tier", "direction"}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_push_forwards_total",
			Help: "Changes received by push and forwarded to this node's eager peers."}, []string{"tier"}),
		dups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_push_duplicates_total",
			Help: "Changes received by push that this node had already seen (each prunes the link it came by)."}, []string{"tier"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_push_repairs_total",
			Help: "Repair activity: ranges asked for (graft), ranges served, ranges a peer no longer held (anti-entropy started)."}, []string{"tier", "kind"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_push_evictions_total",
			Help: "Peers cut from the push set because their backlog passed the per-peer bound."}, []string{"tier"}),
		peers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strata_push_peers",
			Help: "Peers by push mode (eager, lazy)."}, []string{"tier", "mode"}),
	}
	if reg != nil {
		reg.MustRegister(m.applied, m.batches, m.bytes, m.forwards, m.dups, m.repairs, m.evictions, m.peers)
	}
	return m
}

// arrivals returns how many changes from peers brought new state on this
// node, by path (for benchmarks and tests).
func arrivals(t *Tier) map[string]float64 {
	out := map[string]float64{}
	for _, p := range []string{pathGossip, pathPush, pathRepair, pathAntiEntropy} {
		out[p] = testutil.ToFloat64(t.m.bcast.applied.WithLabelValues(t.cfg.Tier, p))
	}
	return out
}
