package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// List paging bounds for GET /v1/regional/{table} and GET
// /v1/global/{record}.
const (
	defaultListLimit = 100
	maxListLimit     = 10_000
)

// regionalTable serves GET (list) and POST (batch upsert) on a table.
func (s *Server) regionalTable(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.table(w, r)
	if !ok {
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.list(w, r, sch)
	case http.MethodPost:
		s.writing(w, r, func(r *http.Request) { s.batch(w, r, sch) })
	default:
		methodNotAllowed(w, r, "GET", "POST")
	}
}

// regionalRow serves GET, PUT, PATCH and DELETE on one row.
func (s *Server) regionalRow(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.table(w, r)
	if !ok {
		return
	}
	key := r.PathValue("key")
	if key == "" {
		writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest,
			Message: fmt.Sprintf("no key in %s: use /v1/regional/%s/{key}, or POST to /v1/regional/%s for a batch", r.URL.Path, sch.Name, sch.Name)})
		return
	}
	if e := keyTooLong(sch.Name, -1, key); e != nil {
		writeError(w, e)
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.get(w, r, sch, key)
	case http.MethodPut:
		s.writing(w, r, func(r *http.Request) { s.put(w, r, sch, key) })
	case http.MethodPatch:
		s.writing(w, r, func(r *http.Request) { s.patch(w, r, sch, key) })
	case http.MethodDelete:
		s.writing(w, r, func(r *http.Request) { s.delete(w, r, sch, key) })
	default:
		methodNotAllowed(w, r, "GET", "PUT", "PATCH", "DELETE")
	}
}

// rowJSON renders a stored row as protojson. Fields the current contract no
// longer has are left out.
func rowJSON(sch *contracts.Schema, row store.Row) (json.RawMessage, error) {
	fields := make([]contracts.FieldValue, 0, len(row.Fields))
	for _, f := range row.Fields {
		if len(f.Value) > 0 && sch.Desc.Fields().ByNumber(protoreflect.FieldNumber(f.Num)) != nil {
			fields = append(fields, contracts.FieldValue{Num: protoreflect.FieldNumber(f.Num), Value: f.Value})
		}
	}
	m, err := sch.Join(fields)
	if err != nil {
		return nil, err
	}
	return sch.EncodeJSON(m)
}

// complete reports whether a live row holds its key fields. Every PUT and
// batch write stores every field of the table (unset ones empty), key
// fields included; a PATCH stores only the fields it names. A row without
// its key fields is therefore a partial change: a PATCH that reached this
// node (by gossip) before the PUT that created the row. Its whole-row rules
// cannot be checked and it may lack required fields, so the API treats it
// as not yet existing: GET answers 404 saying so, listings and watches
// leave it out, and PATCH answers 404 like for a missing row. A PUT makes
// it whole (its fields win over the older PATCH's only where newer), and
// so does the creating PUT once it arrives, by gossip or anti-entropy.
func complete(sch *contracts.Schema, row store.Row) bool {
	for _, fd := range sch.Key {
		if _, ok := row.Field(uint32(fd.Number())); !ok {
			return false
		}
	}
	return true
}

// incomplete answers a request for a partial row.
func incomplete(sch *contracts.Schema, key string) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound,
		Message: fmt.Sprintf("no complete row %q in table %q: this node holds only a later partial change (a PATCH) of it, "+
			"and waits for the write that created the row, which anti-entropy brings within sync_interval", key, sch.Name)}
}

func (s *Server) rowBody(sch *contracts.Schema, kr store.KeyRow) (RowBody, error) {
	body := RowBody{Key: kr.Key, Stamp: kr.Row.Latest().String()}
	if !kr.Row.Alive() {
		body.Deleted = true
		return body, nil
	}
	js, err := rowJSON(sch, kr.Row)
	if err != nil {
		return body, fmt.Errorf("stored row %s/%s does not decode with the current contract: %w", sch.Name, kr.Key, err)
	}
	body.Row = js
	return body, nil
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, sch *contracts.Schema, key string) {
	row, err := s.opts.Regional.Get(sch.Name, key)
	if err != nil {
		writeError(w, storeError(err))
		return
	}
	if !complete(sch, row) {
		writeError(w, incomplete(sch, key))
		return
	}
	body, err := s.rowBody(sch, store.KeyRow{Key: key, Row: row})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, sch *contracts.Schema) {
	q := r.URL.Query()
	limit, ok := listLimit(w, q.Get("limit"), defaultListLimit)
	if !ok {
		return
	}
	rows, _, err := s.opts.Regional.List(sch.Name, q.Get("after"), limit+1)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	res := ListResult{Rows: make([]RowBody, 0, min(len(rows), limit))}
	for i, kr := range rows {
		if i == limit {
			res.Next = rows[i-1].Key
			break
		}
		if !complete(sch, kr.Row) {
			continue
		}
		body, err := s.rowBody(sch, kr)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		res.Rows = append(res.Rows, body)
	}
	writeJSON(w, http.StatusOK, res)
}

// listLimit is a list's limit parameter v, or def when v is empty; it
// answers a bad one itself.
func listLimit(w http.ResponseWriter, v string, def int) (int, bool) {
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxListLimit {
		writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest,
			Message: fmt.Sprintf("limit=%q: want an integer from 1 to %d", v, maxListLimit)})
		return 0, false
	}
	return n, true
}

// readBody reads a request body within the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, sch *contracts.Schema) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
	if err != nil {
		s.reject(w, sch, -1, err)
		return nil, false
	}
	return b, true
}

// reject answers a row that cannot be written and counts it.
func (s *Server) reject(w http.ResponseWriter, sch *contracts.Schema, index int, err error) {
	e := rowError(sch.Name, index, err)
	reason := e.Code
	if len(e.Details) > 0 && e.Details[0].Rule != "" {
		reason = e.Details[0].Rule
	}
	s.metrics.rejected.WithLabelValues(sch.Name, reason).Inc()
	writeError(w, e)
}

// fullRow decodes, validates and keys one JSON row, and returns every field
// of the table: present ones with their bytes, the rest empty, so that a
// put replaces the whole row.
func fullRow(sch *contracts.Schema, body []byte, key string) (string, []store.FieldValue, error) {
	m, err := sch.DecodeJSON(body)
	if err != nil {
		return "", nil, err
	}
	if err := sch.Validate(m); err != nil {
		return "", nil, err
	}
	if key == "" {
		if key, err = sch.KeyOf(m); err != nil {
			return "", nil, err
		}
	} else if err := sch.CheckKey(m, key); err != nil {
		return "", nil, err
	}
	present, err := sch.Split(m)
	if err != nil {
		return "", nil, err
	}
	nums := sch.FieldNumbers()
	fields := make([]store.FieldValue, len(nums))
	j := 0
	for i, num := range nums {
		fields[i].Num = uint32(num)
		if j < len(present) && present[j].Num == num {
			fields[i].Value = present[j].Value
			j++
		}
	}
	return key, fields, nil
}

func (s *Server) put(w http.ResponseWriter, r *http.Request, sch *contracts.Schema, key string) {
	body, ok := s.readBody(w, r, sch)
	if !ok {
		return
	}
	_, fields, err := fullRow(sch, body, key)
	if err != nil {
		s.reject(w, sch, -1, err)
		return
	}
	s.write(w, r, key, store.Mutation{Op: store.OpPut, Table: sch.Name, Key: key, Fields: fields})
}

// patch writes only the fields named in the body. The patched row as a
// whole must still satisfy the contract; it is checked against the row as
// read just before the write.
func (s *Server) patch(w http.ResponseWriter, r *http.Request, sch *contracts.Schema, key string) {
	body, ok := s.readBody(w, r, sch)
	if !ok {
		return
	}
	named, err := sch.JSONFieldNumbers(body)
	if err != nil {
		s.reject(w, sch, -1, err)
		return
	}
	patch, err := sch.DecodeJSON(body)
	if err != nil {
		s.reject(w, sch, -1, err)
		return
	}
	cur, err := s.opts.Regional.Get(sch.Name, key)
	if err != nil {
		writeError(w, storeError(err))
		return
	}
	if !complete(sch, cur) {
		writeError(w, incomplete(sch, key))
		return
	}
	curJSON, err := rowJSON(sch, cur)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	merged, err := sch.DecodeJSON(curJSON)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	pm := patch.ProtoReflect()
	mm := merged.ProtoReflect()
	for _, num := range named {
		fd := sch.Desc.Fields().ByNumber(num)
		if pm.Has(fd) {
			mm.Set(fd, pm.Get(fd))
		} else {
			mm.Clear(fd)
		}
	}
	if err := sch.Validate(merged); err != nil {
		s.reject(w, sch, -1, err)
		return
	}
	if err := sch.CheckKey(mm, key); err != nil {
		s.reject(w, sch, -1, err)
		return
	}
	present, err := sch.Split(merged)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	fields := make([]store.FieldValue, 0, len(named))
	for _, num := range named {
		fv := store.FieldValue{Num: uint32(num)}
		for _, p := range present {
			if p.Num == num {
				fv.Value = p.Value
			}
		}
		fields = append(fields, fv)
	}
	s.write(w, r, key, store.Mutation{Op: store.OpPatch, Table: sch.Name, Key: key, Fields: fields})
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, sch *contracts.Schema, key string) {
	s.write(w, r, key, store.Mutation{Op: store.OpDelete, Table: sch.Name, Key: key})
}

// write applies one mutation and answers with its stamp.
func (s *Server) write(w http.ResponseWriter, r *http.Request, key string, m store.Mutation) {
	stamps, err := s.opts.Regional.Apply(r.Context(), m)
	if err != nil {
		s.storeFailure(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, WriteResult{Key: key, Stamp: stamps[0].String()})
}

// batch upserts a JSON array of rows in one transaction: all or none. Each
// row's key comes from its key fields.
func (s *Server) batch(w http.ResponseWriter, r *http.Request, sch *contracts.Schema) {
	body, ok := s.readBody(w, r, sch)
	if !ok {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest,
			Message: fmt.Sprintf("%s: the body must be a JSON array of rows", sch.Name)})
		return
	}
	var raws []json.RawMessage
	for i := 0; dec.More(); i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest,
				Message: fmt.Sprintf("%s: row %d: malformed JSON: %v", sch.Name, i, err)})
			return
		}
		raws = append(raws, raw)
	}
	if _, err := dec.Token(); err != nil {
		writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest,
			Message: fmt.Sprintf("%s: malformed JSON array: %v", sch.Name, err)})
		return
	}
	muts, index, err := decodeRows(sch, raws)
	if err != nil {
		s.reject(w, sch, index, err)
		return
	}
	first := make(map[string]int, len(muts))
	for i, m := range muts {
		if j, dup := first[m.Key]; dup {
			s.reject(w, sch, i, fmt.Errorf("duplicate key %q, also row %d's: a batch writes each row once", m.Key, j))
			return
		}
		first[m.Key] = i
	}
	if len(muts) == 0 {
		writeJSON(w, http.StatusOK, BatchResult{})
		return
	}
	stamps, err := s.opts.Regional.Apply(r.Context(), muts...)
	if err != nil {
		s.storeFailure(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, BatchResult{Written: len(muts), Stamp: stamps[len(stamps)-1].String()})
}

// decodeRows turns JSON rows into put mutations, spreading the decoding
// (the costly part of a batch) over the available cores. On failure it
// returns the index of the first bad row.
func decodeRows(sch *contracts.Schema, raws []json.RawMessage) ([]store.Mutation, int, error) {
	muts := make([]store.Mutation, len(raws))
	errs := make([]error, len(raws))
	workers := min(runtime.GOMAXPROCS(0), (len(raws)+63)/64)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(raws); i += workers {
				key, fields, err := fullRow(sch, raws[i], "")
				if err != nil {
					errs[i] = err
					continue
				}
				if e := keyTooLong(sch.Name, i, key); e != nil {
					errs[i] = e
					continue
				}
				muts[i] = store.Mutation{Op: store.OpPut, Table: sch.Name, Key: key, Fields: fields}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, i, err
		}
	}
	return muts, -1, nil
}

// keyTooLong answers a key over the limit every peer accepts
// (store.MaxKeyLen), or returns nil. index is the row's position in a
// batch, or -1.
func keyTooLong(table string, index int, key string) *Error {
	if len(key) <= store.MaxKeyLen {
		return nil
	}
	where := ""
	var idx *int
	if index >= 0 {
		where, idx = fmt.Sprintf(" (row %d)", index), &index
	}
	return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest,
		Message: fmt.Sprintf("%s%s: key of %d bytes is over the %d-byte key limit", table, where, len(key), store.MaxKeyLen),
		Details: []Detail{{Index: idx, Rule: "key_length", Message: fmt.Sprintf("keys are at most %d bytes", store.MaxKeyLen)}}}
}

// storeFailure answers a failed store write: 404 or 503 for the errors
// that are the client's or the moment's, 500 (logged) for the rest.
func (s *Server) storeFailure(w http.ResponseWriter, r *http.Request, err error) {
	if e := storeError(err); e.Status != http.StatusInternalServerError {
		writeError(w, e)
		return
	}
	s.internal(w, r, err)
}

// internal logs an unexpected error and answers 500.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.opts.Logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	if errors.Is(err, store.ErrClosed) {
		writeError(w, storeError(err))
		return
	}
	writeError(w, &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()})
}
