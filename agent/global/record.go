package global

import (
	"errors"
	"fmt"
	"strings"

	"github.com/strata-state/strata/agent/store"
)

// HeartbeatTable is the global store table of region heartbeats: key the
// region, value the name of the node that published it.
const HeartbeatTable = "_heartbeats"

// Field numbers of a global row.
const (
	// ValueField holds the record's encoded message; empty: deleted.
	ValueField = 1
	// ProofField holds the region's signature proof (see Proof); empty or
	// absent where region identity is not enforced.
	ProofField = 2
)

// Record is one global record as the global tier stores it: its type, its
// owning region, its key within the region and its encoded message. A nil
// or empty Value is a deleted record.
type Record struct {
	// Name is the record type (the store table), e.g. "app_placements";
	// HeartbeatTable for a heartbeat.
	Name string
	// Region owns the record.
	Region string
	// Key is the record's key within its region, e.g. "web".
	Key string
	// Value is the protobuf encoding of the record; empty when deleted.
	Value []byte
}

// Deleted reports whether the record is a delete.
func (r Record) Deleted() bool { return len(r.Value) == 0 }

// StoreKey is the record's key in the global store.
func (r Record) StoreKey() string {
	if r.Name == HeartbeatTable {
		return r.Region
	}
	return StoreKey(r.Region, r.Key)
}

// String returns "name/region/key".
func (r Record) String() string { return r.Name + "/" + r.Region + "/" + r.Key }

// StoreKey is the global store key of a region's record.
func StoreKey(region, key string) string { return region + "/" + key }

// SplitStoreKey splits a global store key into region and record key.
func SplitStoreKey(k string) (region, key string, ok bool) {
	region, key, ok = strings.Cut(k, "/")
	return region, key, ok && region != "" && key != ""
}

// ErrLayout is matched by errors about a row that is not laid out as a
// global record.
var ErrLayout = errors.New("global: not a global record row")

// Stored is a Record with the replicated state it was read with: the
// causal length and stamp of the write, and its proof.
type Stored struct {
	Record
	CL    uint64
	Stamp store.Stamp
	Proof []byte
}

// FromRow reads the row of table under store key k as a record. It checks
// the layout strictly, as bytes from a peer deserve: a live row (odd
// causal length) holding field 1 and optionally field 2 and nothing else,
// every field stamped with the row's stamp. It does not check the proof or
// the contract.
func FromRow(table, k string, row store.Row) (Stored, error) {
	s := Stored{Record: Record{Name: table}, CL: row.CL, Stamp: row.Stamp}
	if table == HeartbeatTable {
		s.Region, s.Key = k, k
		if k == "" {
			return s, fmt.Errorf("%w: heartbeat with an empty region", ErrLayout)
		}
	} else {
		var ok bool
		if s.Region, s.Key, ok = SplitStoreKey(k); !ok {
			return s, fmt.Errorf("%w: %s key %q is not region/key", ErrLayout, table, k)
		}
	}
	if !row.Alive() {
		return s, fmt.Errorf("%w: %s is a store tombstone; global deletes are signed writes of an empty value", ErrLayout, s)
	}
	for _, f := range row.Fields {
		if f.Stamp != row.Stamp {
			return s, fmt.Errorf("%w: %s: field %d is stamped apart from its row", ErrLayout, s, f.Num)
		}
		switch f.Num {
		case ValueField:
			s.Value = f.Value
		case ProofField:
			s.Proof = f.Value
		default:
			return s, fmt.Errorf("%w: %s holds field %d; a global row holds fields 1 and 2 only", ErrLayout, s, f.Num)
		}
	}
	if _, ok := row.Field(ValueField); !ok {
		return s, fmt.Errorf("%w: %s has no value field", ErrLayout, s)
	}
	return s, nil
}

// Change is the store change that writes s.
func (s Stored) Change() store.Change {
	fields := []store.Field{{Num: ValueField, Stamp: s.Stamp, Value: s.Value}}
	if len(s.Proof) > 0 {
		fields = append(fields, store.Field{Num: ProofField, Stamp: s.Stamp, Value: s.Proof})
	}
	return store.Change{Table: s.Name, Key: s.StoreKey(), Row: store.Row{CL: s.CL, Stamp: s.Stamp, Fields: fields}}
}
