package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

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

// GlobalList answers GET /v1/global/{record}: the keys in key order, each
// with its record in every region that publishes it; paged as the
// regional list is (limit, after, next).
type GlobalList struct {
	Record  string        `json:"record"`
	Entries []GlobalEntry `json:"entries"`
	// Next, when set, is the `after` value for the next page.
	Next string `json:"next,omitempty"`
}

// globalView is what a global read renders: records of one type (in store
// key order) and the regions' heartbeats. A gateway reads it from its
// store; another node from a gateway's signed answer, once verified.
type globalView struct {
	records []global.Stored
	beats   map[string]global.Stored
}

// globalRecord resolves {record}; it answers 404 itself.
func (s *Server) globalRecord(w http.ResponseWriter, r *http.Request) (*contracts.Schema, bool) {
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

// notGateway answers a global request a node without a global store cannot
// serve.
func notGateway(w http.ResponseWriter, what string) {
	writeError(w, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
		Message: "this node is not a gateway; " + what})
}

// view reads the view of record (one key, or all when key is "") from the
// global store, or, on a node that is not a gateway, from a gateway of its
// region. It answers errors itself.
func (s *Server) view(w http.ResponseWriter, r *http.Request, sch *contracts.Schema, key string, all bool) (globalView, bool) {
	if s.opts.Global == nil {
		if r.URL.Query().Get("format") == "signed" {
			notGateway(w, "signed reads are answered by gateways only")
			return globalView{}, false
		}
		return s.forwardedView(w, r, sch, key, all)
	}
	v, err := s.storeView(sch.Name, key, all)
	if err != nil {
		s.internal(w, r, err)
		return v, false
	}
	return v, true
}

// storeView reads a view from the global store.
func (s *Server) storeView(name, key string, all bool) (globalView, error) {
	v := globalView{beats: map[string]global.Stored{}}
	beats, err := global.List(s.opts.Global, global.HeartbeatTable, "")
	if err != nil {
		return v, fmt.Errorf("read the regions' heartbeats: %w", err)
	}
	for _, b := range beats {
		v.beats[b.Region] = b
	}
	if all {
		v.records, err = global.List(s.opts.Global, name, "")
		return v, err
	}
	// Every region that publishes writes a heartbeat: look the key up in
	// each of them rather than listing every record.
	for _, region := range slices.Sorted(maps.Keys(v.beats)) {
		rec, err := global.Get(s.opts.Global, name, region, key)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, global.ErrLayout) {
			continue
		}
		if err != nil {
			return v, err
		}
		v.records = append(v.records, rec)
	}
	return v, nil
}

// regionRecord renders one record.
func (s *Server) regionRecord(sch *contracts.Schema, rec global.Stored, beats map[string]global.Stored) (RegionRecord, error) {
	m, err := sch.DecodeBinary(rec.Value)
	if err != nil {
		return RegionRecord{}, err
	}
	js, err := sch.EncodeJSON(m)
	if err != nil {
		return RegionRecord{}, err
	}
	beat, ok := beats[rec.Region]
	stale := !ok || (s.opts.StaleAfter > 0 && time.Since(beat.Stamp.HLC.Time()) > s.opts.StaleAfter)
	return RegionRecord{Record: js, PublishedAt: rec.Stamp.HLC.Time(), Stale: stale}, nil
}

// globalList answers GET /v1/global/{record}: every key after the `after`
// parameter, in key order, at most `limit` of them (all without it: the
// global tier is small), with `next` set when more follow.
func (s *Server) globalList(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.globalRecord(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	signed := q.Get("format") == "signed"
	if signed && (q.Has("limit") || q.Has("after")) {
		// The signed form is the whole view, verified as one by the node
		// that asked for it: a page of it would not verify.
		writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest,
			Message: "limit and after do not apply to format=signed, which answers every record of the view"})
		return
	}
	limit := 0
	if !signed {
		if limit, ok = listLimit(w, q.Get("limit"), 0); !ok {
			return
		}
	}
	v, ok := s.view(w, r, sch, "", true)
	if !ok {
		return
	}
	if signed {
		s.writeSigned(w, v)
		return
	}
	// The view is in store key order (region, then key): group by key.
	byKey := map[string][]global.Stored{}
	after := q.Get("after")
	for _, rec := range v.records {
		if after == "" || rec.Key > after {
			byKey[rec.Key] = append(byKey[rec.Key], rec)
		}
	}
	keys := slices.Sorted(maps.Keys(byKey))
	res := GlobalList{Record: sch.Name, Entries: make([]GlobalEntry, 0, len(keys))}
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
		res.Next = keys[limit-1]
	}
	for _, k := range keys {
		e := GlobalEntry{Key: k, Regions: map[string]RegionRecord{}}
		for _, rec := range byKey[k] {
			rr, err := s.regionRecord(sch, rec, v.beats)
			if err != nil {
				s.internal(w, r, err)
				return
			}
			e.Regions[rec.Region] = rr
		}
		res.Entries = append(res.Entries, e)
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) globalGet(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.globalRecord(w, r)
	if !ok {
		return
	}
	key := r.PathValue("key")
	v, ok := s.view(w, r, sch, key, false)
	if !ok {
		return
	}
	if r.URL.Query().Get("format") == "signed" {
		s.writeSigned(w, v)
		return
	}
	res := GlobalEntry{Key: key, Regions: map[string]RegionRecord{}}
	for _, rec := range v.records { // the view holds key's records only
		rr, err := s.regionRecord(sch, rec, v.beats)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		res.Regions[rec.Region] = rr
	}
	if len(res.Regions) == 0 {
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no region publishes %s %q", sch.Name, key)})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// globalReject answers a write the pipeline refused.
func globalReject(w http.ResponseWriter, err error) {
	e := &Error{Status: http.StatusBadRequest, Code: CodeInvalidRow, Message: strings.TrimPrefix(err.Error(), "contracts: ")}
	var re *contracts.RejectError
	if errors.As(err, &re) {
		e.Details = []Detail{{Field: re.Field, Rule: re.Rule, Message: re.Detail}}
		if re.Rule == contracts.RuleRate {
			e.Status = http.StatusTooManyRequests
		}
	}
	writeError(w, e)
}

// globalPut writes this node's region's record under key, through the
// global write path. Records of a type a reducer outputs are owned by
// that reducer: its next run replaces or deletes what the API wrote.
func (s *Server) globalPut(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.globalRecord(w, r)
	if !ok {
		return
	}
	if s.opts.Writer == nil {
		notGateway(w, "global writes must go to a gateway of this region")
		return
	}
	key := r.PathValue("key")
	body, ok := s.readBody(w, r, sch)
	if !ok {
		return
	}
	m, err := sch.DecodeJSON(body)
	if err != nil {
		s.reject(w, sch, -1, err)
		return
	}
	value, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if len(value) == 0 {
		// An empty encoding is how the global tier spells a delete.
		writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRow,
			Message: fmt.Sprintf("record %s/%s is empty: every field has its default value; use DELETE to remove a record", sch.Name, key)})
		return
	}
	s.writeGlobal(w, r, global.Record{Name: sch.Name, Key: key, Value: value})
}

func (s *Server) globalDelete(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.globalRecord(w, r)
	if !ok {
		return
	}
	if s.opts.Writer == nil {
		notGateway(w, "global writes must go to a gateway of this region")
		return
	}
	s.writeGlobal(w, r, global.Record{Name: sch.Name, Key: r.PathValue("key")})
}

func (s *Server) writeGlobal(w http.ResponseWriter, r *http.Request, rec global.Record) {
	res, err := s.opts.Writer.Write(r.Context(), []global.Record{rec}, nil)
	if err != nil {
		s.storeFailure(w, r, err)
		return
	}
	if err := res[0].Err; err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound,
				Message: fmt.Sprintf("region %s holds no %s %q", s.opts.Writer.Region(), rec.Name, rec.Key)})
			return
		}
		globalReject(w, err)
		return
	}
	writeJSON(w, http.StatusOK, WriteResult{Key: rec.Key, Stamp: res[0].Stamp.String()})
}
