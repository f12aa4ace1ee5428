// Package publish turns a region's rows into its global records: on the
// region's publisher (the lowest-named alive gateway), it runs each reducer
// on its input tables, diffs the output against the records the region has
// published, checks every write through the contract's global-write
// pipeline, and writes only upserts and deletes to the global store.
//
// Records live in the global store with the owning region in their key
// (RecordKey), as one field holding the record's message: whole-message
// last-writer-wins. Each publisher also writes its region's heartbeat, from
// which readers tell a region's records are stale.
package publish

import (
	"bytes"
	"slices"
	"strings"
)

// HeartbeatTable is the global store table of region heartbeats: key the
// region, value the publishing node's name.
const HeartbeatTable = "_heartbeats"

// PublishersTable is the global store table where each gateway declares
// its region (key: node name, value: region), so that gateways that never
// saw a node in the membership can still tell which region its writes
// come from.
const PublishersTable = "_gateways"

// valueField is the one field a global record row holds: its message.
const valueField = 1

// RecordKey is the global store key of a region's record.
func RecordKey(region, key string) string { return region + "/" + key }

// SplitRecordKey splits a global store key into region and record key.
func SplitRecordKey(k string) (region, key string, ok bool) {
	return strings.Cut(k, "/")
}

// Record is one record of a region: type, key and encoded message.
type Record struct {
	Name  string
	Key   string
	Value []byte
}

// Plan is what a run changes: records to write and records to delete.
type Plan struct {
	Upserts []Record
	Deletes []Record // Value unused
}

// Empty reports whether the plan writes nothing.
func (p Plan) Empty() bool { return len(p.Upserts) == 0 && len(p.Deletes) == 0 }

// Diff compares a reducer's complete output with the records published for
// the same record types, and returns only what differs: new or changed
// records to upsert, vanished ones to delete. It is pure; both inputs may be
// in any order.
func Diff(published, output []Record) Plan {
	type nk struct{ name, key string }
	have := make(map[nk][]byte, len(published))
	for _, r := range published {
		have[nk{r.Name, r.Key}] = r.Value
	}
	var p Plan
	for _, r := range output {
		id := nk{r.Name, r.Key}
		v, ok := have[id]
		if !ok || !bytes.Equal(v, r.Value) {
			p.Upserts = append(p.Upserts, r)
		}
		delete(have, id)
	}
	for id := range have {
		p.Deletes = append(p.Deletes, Record{Name: id.name, Key: id.key})
	}
	cmp := func(a, b Record) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	}
	slices.SortFunc(p.Upserts, cmp)
	slices.SortFunc(p.Deletes, cmp)
	return p
}
