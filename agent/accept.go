package agent

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strata-state/strata/agent/publish"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// rejection is why a change from a peer was refused; Reason labels
// strata_gossip_rejected_total.
type rejection struct {
	reason string
	err    error
}

func (r *rejection) Error() string  { return r.err.Error() }
func (r *rejection) Unwrap() error  { return r.err }
func (r *rejection) Reason() string { return r.reason }

// acceptRegional checks a regional change received from a peer against the
// contract before it is merged: the table exists, every field is declared,
// the field bytes decode strictly (no unknown fields at any depth), and the
// fields present pass their protovalidate rules. A change may carry only
// some fields (a patch), so rules on absent fields and whole-message rules
// are left to the writer's node, which validated the whole row.
func acceptRegional(c *contracts.Contract) func(store.Change, string) error {
	return func(ch store.Change, from string) error {
		sch, ok := c.Table(ch.Table)
		if !ok {
			return &rejection{"unknown_table", fmt.Errorf("table %q is not in this node's contract", ch.Table)}
		}
		if !ch.Row.Alive() {
			return nil
		}
		fields := make([]contracts.FieldValue, len(ch.Row.Fields))
		present := map[string]bool{}
		for i, f := range ch.Row.Fields {
			fd := sch.Desc.Fields().ByNumber(protowire.Number(f.Num))
			if fd == nil {
				return &rejection{"unknown_field", fmt.Errorf("%s: field number %d is not in the contract", ch.Table, f.Num)}
			}
			present[string(fd.Name())] = true
			fields[i] = contracts.FieldValue{Num: protowire.Number(f.Num), Value: f.Value}
		}
		// Join checks each value holds only its own field number, then
		// decodes strictly.
		m, err := sch.Join(fields)
		if err != nil {
			return &rejection{"decode", err}
		}
		if err := sch.Validate(m); err != nil {
			if ve, ok := err.(*contracts.ValidationError); ok {
				for _, v := range ve.Violations {
					top, _, _ := strings.Cut(v.Field, ".")
					top, _, _ = strings.Cut(top, "[")
					if present[top] {
						return &rejection{"validate", fmt.Errorf("%s/%s: %s", ch.Table, ch.Key, v)}
					}
				}
				return nil
			}
			return &rejection{"validate", err}
		}
		return nil
	}
}

// acceptGlobal checks a global change received from a peer with the same
// pipeline as every global write: the record type exists, the value
// decodes strictly and passes its rules, the key is well formed, and the
// region owning the key is the region of the node that wrote it. The
// writer is found from the change's stamps (they carry the writing node's
// identity, whoever relays the change) and the global tier's membership.
func acceptGlobal(c *contracts.Contract, regionOf func(store.NodeID) (string, bool), rejected *prometheus.CounterVec) func(store.Change, string) error {
	return func(ch store.Change, from string) error {
		err := checkGlobal(c, regionOf, ch)
		if err != nil {
			reason := "invalid"
			var r interface{ Reason() string }
			if errors.As(err, &r) {
				reason = r.Reason()
			}
			rejected.WithLabelValues(ch.Table, reason).Inc()
		}
		return err
	}
}

// newReceivedRejected counts global changes from peers that the pipeline
// refuses; the publisher counts its own reducers' rejections in
// strata_global_rejected_total.
func newReceivedRejected() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_global_received_rejected_total",
		Help: "Global changes received from peers and refused by the contract pipeline, by record and reason."}, []string{"record", "reason"})
}

func checkGlobal(c *contracts.Contract, regionOf func(store.NodeID) (string, bool), ch store.Change) error {
	if ch.Table == publish.PublishersTable {
		// A gateway declares its own region: only it may write its entry.
		for _, st := range append([]store.Stamp{ch.Row.Stamp}, stampsOf(ch.Row)...) {
			if st.Node != store.NodeIDOf(ch.Key) {
				return &rejection{contracts.RuleWrongRegion, fmt.Errorf("gateway entry %q written by another node", ch.Key)}
			}
		}
		return nil
	}
	// The writer is whoever stamped what the change brings: the fields of
	// a live row (its row stamp is the creator's, who may be long gone),
	// the row stamp of a delete.
	stamps := stampsOf(ch.Row)
	if !ch.Row.Alive() {
		stamps = []store.Stamp{ch.Row.Stamp}
	}
	writer := ""
	for _, st := range stamps {
		r, ok := regionOf(st.Node)
		if !ok {
			return &rejection{"unknown_origin", fmt.Errorf("%s/%s: written by a node this gateway does not know", ch.Table, ch.Key)}
		}
		if writer != "" && r != writer {
			return &rejection{contracts.RuleWrongRegion, fmt.Errorf("%s/%s: stamps from regions %s and %s", ch.Table, ch.Key, writer, r)}
		}
		writer = r
	}
	if ch.Table == publish.HeartbeatTable {
		if ch.Key != writer {
			return &rejection{contracts.RuleWrongRegion, fmt.Errorf("heartbeat of region %q written by region %q", ch.Key, writer)}
		}
		return nil
	}
	region, key, ok := publish.SplitRecordKey(ch.Key)
	if !ok {
		return &rejection{"key", fmt.Errorf("%s: global key %q has no region", ch.Table, ch.Key)}
	}
	w := contracts.Write{Record: ch.Table, Key: key, Region: region, Writer: writer, Delete: !ch.Row.Alive(), Now: time.Now()}
	if ch.Row.Alive() {
		if len(ch.Row.Fields) != 1 || ch.Row.Fields[0].Num != 1 {
			return &rejection{"decode", fmt.Errorf("%s/%s: a global record row holds exactly field 1", ch.Table, ch.Key)}
		}
		w.Value = ch.Row.Fields[0].Value
	}
	return c.CheckWrite(w)
}

func stampsOf(r store.Row) []store.Stamp {
	out := make([]store.Stamp, len(r.Fields))
	for i, f := range r.Fields {
		out[i] = f.Stamp
	}
	return out
}
