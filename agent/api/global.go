package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// heartbeatTable and the record row layout are the publisher's (package
// publish): records live under "region/key" as field 1.
const heartbeatTable = "_heartbeats"

// RegionRecord is one region's entry for a global key.
type RegionRecord struct {
	Record      json.RawMessage `json:"record"`
	PublishedAt time.Time       `json:"published_at"`
	Stale       bool            `json:"stale"`
}

// GlobalEntry answers GET /v1/global/{record}/{key}: the key's record in
// each region that publishes it.
type GlobalEntry struct {
	Key     string                  `json:"key"`
	Regions map[string]RegionRecord `json:"regions"`
}

// GlobalList answers GET /v1/global/{record}: every key, by region.
type GlobalList struct {
	Record  string        `json:"record"`
	Entries []GlobalEntry `json:"entries"`
}

// globalRecord resolves {record}; it answers 404 or 503 itself.
func (s *Server) globalRecord(w http.ResponseWriter, r *http.Request) (*contracts.Schema, bool) {
	if s.opts.Global == nil {
		writeError(w, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Message: "this node is not a gateway (no [global] section): ask a gateway of the region, see strata members"})
		return nil, false
	}
	name := r.PathValue("record")
	sch, ok := s.opts.Contract.Record(name)
	if !ok {
		var names []string
		for _, rec := range s.opts.Contract.Records() {
			names = append(names, rec.Name)
		}
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: fmt.Sprintf("unknown record %q (the contract has: %s)", name, strings.Join(names, ", "))})
		return nil, false
	}
	return sch, true
}

// heartbeats returns the time of each region's last heartbeat.
func (s *Server) heartbeats() map[string]time.Time {
	out := map[string]time.Time{}
	rows, _, err := s.opts.Global.List(heartbeatTable, "", 0)
	if err != nil {
		return out
	}
	for _, kr := range rows {
		out[kr.Key] = kr.Row.Latest().HLC.Time()
	}
	return out
}

// regionRecord renders one stored record.
func (s *Server) regionRecord(sch *contracts.Schema, row store.Row, beats map[string]time.Time, region string) (RegionRecord, error) {
	f, _ := row.Field(1)
	m, err := sch.DecodeBinary(f.Value)
	if err != nil {
		return RegionRecord{}, err
	}
	js, err := sch.EncodeJSON(m)
	if err != nil {
		return RegionRecord{}, err
	}
	beat, ok := beats[region]
	stale := !ok || (s.opts.StaleAfter > 0 && time.Since(beat) > s.opts.StaleAfter)
	return RegionRecord{Record: js, PublishedAt: row.Latest().HLC.Time(), Stale: stale}, nil
}

func (s *Server) globalList(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.globalRecord(w, r)
	if !ok {
		return
	}
	rows, _, err := s.opts.Global.List(sch.Name, "", 0)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	beats := s.heartbeats()
	byKey := map[string]*GlobalEntry{}
	res := GlobalList{Record: sch.Name, Entries: []GlobalEntry{}}
	var order []string
	for _, kr := range rows {
		region, key, ok := strings.Cut(kr.Key, "/")
		if !ok {
			continue
		}
		rr, err := s.regionRecord(sch, kr.Row, beats, region)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		e := byKey[key]
		if e == nil {
			e = &GlobalEntry{Key: key, Regions: map[string]RegionRecord{}}
			byKey[key] = e
			order = append(order, key)
		}
		e.Regions[region] = rr
	}
	for _, k := range order {
		res.Entries = append(res.Entries, *byKey[k])
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) globalGet(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.globalRecord(w, r)
	if !ok {
		return
	}
	key := r.PathValue("key")
	rows, _, err := s.opts.Global.List(sch.Name, "", 0)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	beats := s.heartbeats()
	res := GlobalEntry{Key: key, Regions: map[string]RegionRecord{}}
	for _, kr := range rows {
		region, k, ok := strings.Cut(kr.Key, "/")
		if !ok || k != key {
			continue
		}
		rr, err := s.regionRecord(sch, kr.Row, beats, region)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		res.Regions[region] = rr
	}
	if len(res.Regions) == 0 {
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no region publishes %s %q", sch.Name, key)})
		return
	}
	writeJSON(w, http.StatusOK, res)
}
