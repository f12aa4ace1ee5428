package api_test

// Fuzz targets for the API's request bodies, through the real handler
// over real HTTP and a real store: a PUT row, a PATCH and a batch POST.
// Each checks more than survival: a refused body gets a 4xx with a
// structured error and changes nothing in the store; an accepted one is
// stored, reads back, and writes back unchanged.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

const fuzzRow = `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","healthy":true,"host":"h1","privateIp":"10.0.0.1","updatedAt":"2026-11-30T00:00:00Z"}`

// fuzzServer is an API server over a real store file and the example
// contract, served over real HTTP, shared by a fuzz target's runs.
type fuzzServer struct {
	url   string
	store *store.Store
}

func newFuzzServer(f *testing.F) *fuzzServer {
	c, err := contracts.Compile(context.Background(), contracts.Example, contracts.ExampleFiles())
	if err != nil {
		f.Fatal(err)
	}
	st, err := store.Open(filepath.Join(f.TempDir(), "regional.db"), store.Options{Node: "f1", Clock: hlc.NewClock(nil, time.Minute), NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	hs := httptest.NewServer(api.New(api.Options{Contract: c, Regional: st, Node: "f1", Region: "local", MaxBody: 64 << 10}).Handler())
	f.Cleanup(func() {
		hs.Close()
		st.Close()
	})
	return &fuzzServer{url: hs.URL, store: st}
}

func (s *fuzzServer) call(t *testing.T, method, path string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// refused checks a refusal: a 4xx with {"error":{"code","message"}}, and
// the store's change sequence where it was before the call.
func (s *fuzzServer) refused(t *testing.T, what string, status int, body []byte, seq uint64) {
	t.Helper()
	if status < 400 || status >= 500 {
		t.Fatalf("%s: status %d, want 200 or a 4xx: %s", what, status, body)
	}
	var e struct {
		Error *struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("%s: status %d with a body that is not a structured error: %q", what, status, body)
	}
	if got := s.store.Seq(); got != seq {
		t.Fatalf("%s: refused (%d %s), but the store moved from change %d to %d", what, status, e.Error.Message, seq, got)
	}
}

// roundTrip reads key back and writes what it read: the row must come
// back the same, as stored.
func (s *fuzzServer) roundTrip(t *testing.T, key string) {
	t.Helper()
	status, body := s.call(t, "GET", "/v1/regional/machines/"+key, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s after an accepted write: %d %s", key, status, body)
	}
	var got api.RowBody
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	if status, b := s.call(t, "PUT", "/v1/regional/machines/"+key, got.Row); status != http.StatusOK {
		t.Fatalf("PUT of the row as read back (%s): %d %s", got.Row, status, b)
	}
	_, again := s.call(t, "GET", "/v1/regional/machines/"+key, nil)
	var back api.RowBody
	json.Unmarshal(again, &back)
	if !bytes.Equal(compact(t, back.Row), compact(t, got.Row)) {
		t.Fatalf("a row written back as read changed:\n%s\n%s", got.Row, back.Row)
	}
}

func compact(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("row JSON %q: %v", b, err)
	}
	return out.Bytes()
}

// FuzzAPIPut sends a PUT of m-1 with an outside body.
func FuzzAPIPut(f *testing.F) {
	s := newFuzzServer(f)
	for _, seed := range []string{fuzzRow, `{"id":"m-1"}`, `{"id":"m-2","app":"web","state":1}`, `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","nope":1}`,
		`[]`, `null`, `{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","privateIp":"x"}`, "{\"id\":\"m-1\",\"host\":\"\xff\"}"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		seq := s.store.Seq()
		status, reply := s.call(t, "PUT", "/v1/regional/machines/m-1", body)
		if status != http.StatusOK {
			s.refused(t, "PUT", status, reply, seq)
			return
		}
		s.roundTrip(t, "m-1")
	})
}

// FuzzAPIPatch sends a PATCH of m-1, which exists, with an outside body.
func FuzzAPIPatch(f *testing.F) {
	s := newFuzzServer(f)
	for _, seed := range []string{`{"host":"h2"}`, `{"healthy":false,"app":"api"}`, `{"id":"m-2"}`, `{"state":"MACHINE_STATE_UNSPECIFIED"}`,
		`{"app":null}`, `{"updatedAt":"x"}`, `{}`, `{"host":1}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if status, b := s.call(t, "PUT", "/v1/regional/machines/m-1", []byte(fuzzRow)); status != http.StatusOK {
			t.Fatalf("PUT of the seed row: %d %s", status, b)
		}
		seq := s.store.Seq()
		status, reply := s.call(t, "PATCH", "/v1/regional/machines/m-1", body)
		if status != http.StatusOK {
			s.refused(t, "PATCH", status, reply, seq)
			return
		}
		s.roundTrip(t, "m-1")
	})
}

// FuzzAPIBatch sends a batch POST with an outside body: all rows or none.
func FuzzAPIBatch(f *testing.F) {
	s := newFuzzServer(f)
	for _, seed := range []string{`[` + fuzzRow + `]`, `[]`, `[{"id":"b-1","app":"web","state":"MACHINE_STATE_STARTED"},{"id":"b-2","app":"web","state":"MACHINE_STATE_STOPPED"}]`,
		`[{"id":"b-1","app":"web","state":"MACHINE_STATE_STARTED"},{"id":"b-1"}]`, `{}`, `[1]`, `[{"id":"b-3","app":"web","state":"MACHINE_STATE_STARTED"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		seq := s.store.Seq()
		status, reply := s.call(t, "POST", "/v1/regional/machines", body)
		if status != http.StatusOK {
			s.refused(t, "batch POST", status, reply, seq)
			return
		}
		var rows []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &rows); err != nil {
			return // accepted, but not plain JSON to this decoder (protojson is laxer): nothing to compare
		}
		for _, r := range rows {
			s.roundTrip(t, r.ID)
		}
	})
}
