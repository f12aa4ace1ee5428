package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

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
		if r.Method == http.MethodGet && s.opts.Gateway != nil {
			if gw := s.opts.Gateway(); gw != "" {
				proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: gw})
				proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
					writeError(w, &Error{Status: http.StatusBadGateway, Code: CodeUnavailable,
						Message: fmt.Sprintf("forwarding to gateway %s: %v", gw, err)})
				}
				w.Header().Set("X-Strata-Forwarded-To", gw)
				proxy.ServeHTTP(w, r)
				return nil, false
			}
		}
		writeError(w, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Message: "this node is not a gateway and no gateway of its region is alive (see strata members); global writes must go to a gateway"})
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
func (s *Server) heartbeats() (map[string]time.Time, error) {
	rows, _, err := s.opts.Global.List(heartbeatTable, "", 0)
	if err != nil {
		return nil, fmt.Errorf("read the regions' heartbeats: %w", err)
	}
	out := make(map[string]time.Time, len(rows))
	for _, kr := range rows {
		out[kr.Key] = kr.Row.Latest().HLC.Time()
	}
	return out, nil
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
	beats, err := s.heartbeats()
	if err != nil {
		s.internal(w, r, err)
		return
	}
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
	// Every region that publishes writes a heartbeat: look the key up in
	// each of them rather than listing every record.
	beats, err := s.heartbeats()
	if err != nil {
		s.internal(w, r, err)
		return
	}
	res := GlobalEntry{Key: key, Regions: map[string]RegionRecord{}}
	for region := range beats {
		row, err := s.opts.Global.Get(sch.Name, region+"/"+key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		rr, err := s.regionRecord(sch, row, beats, region)
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

// API writes to the global tier are limited per record type to this rate
// (records per second) with this burst, like a reducer's.
const (
	apiGlobalRate  = 100
	apiGlobalBurst = 1000
)

func (s *Server) budget(record string) *contracts.Budget {
	b, _ := s.budgets.LoadOrStore(record, contracts.NewBudget(apiGlobalRate, apiGlobalBurst))
	return b.(*contracts.Budget)
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
// global-write pipeline. Records of a type a reducer outputs are owned by
// that reducer: its next run replaces or deletes what the API wrote.
func (s *Server) globalPut(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.globalRecord(w, r)
	if !ok {
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
	storeKey := s.opts.Region + "/" + key
	count := 0
	rows, err := s.opts.Global.ListPrefix(sch.Name, s.opts.Region+"/")
	if err != nil {
		s.internal(w, r, err)
		return
	}
	exists := false
	for _, kr := range rows {
		count++
		exists = exists || kr.Key == storeKey
	}
	if !exists {
		count++
	}
	if err := s.opts.Contract.CheckWrite(contracts.Write{Record: sch.Name, Key: key, Region: s.opts.Region, Writer: s.opts.Region,
		Value: value, Count: count, Budget: s.budget(sch.Name), Now: time.Now()}); err != nil {
		globalReject(w, err)
		return
	}
	s.writeGlobal(w, r, key, store.Mutation{Op: store.OpPut, Table: sch.Name, Key: storeKey, Fields: []store.FieldValue{{Num: 1, Value: value}}})
}

func (s *Server) globalDelete(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.globalRecord(w, r)
	if !ok {
		return
	}
	key := r.PathValue("key")
	if err := s.opts.Contract.CheckWrite(contracts.Write{Record: sch.Name, Key: key, Region: s.opts.Region, Writer: s.opts.Region,
		Delete: true, Budget: s.budget(sch.Name), Now: time.Now()}); err != nil {
		globalReject(w, err)
		return
	}
	s.writeGlobal(w, r, key, store.Mutation{Op: store.OpDelete, Table: sch.Name, Key: s.opts.Region + "/" + key})
}

func (s *Server) writeGlobal(w http.ResponseWriter, r *http.Request, key string, m store.Mutation) {
	stamps, err := s.opts.Global.Apply(r.Context(), m)
	if err != nil {
		s.storeFailure(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, WriteResult{Key: key, Stamp: stamps[0].String()})
}
