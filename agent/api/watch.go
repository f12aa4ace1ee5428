package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/store"
)

// Watch stream tuning.
const (
	watchPage      = 512              // feed events read per store call
	watchHeartbeat = 15 * time.Second // comment line sent on an idle stream
)

// Watch event names. A stream without a resume position starts with one
// "snapshot" event per live row, then one "synced" event whose id is the
// position the snapshot reflects; then "put" and "delete" events, each with
// its feed position as id. A client resumes by sending the last id it saw
// in Last-Event-ID (or ?since=). When that position is no longer retained
// the server sends "reset" and starts over with a snapshot.
const (
	EventSnapshot = "snapshot"
	EventSynced   = "synced"
	EventPut      = "put"
	EventDelete   = "delete"
	EventReset    = "reset"
)

// sse writes server-sent events.
type sse struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func (e *sse) event(id uint64, name string, data any) {
	if e.err != nil {
		return
	}
	b, err := json.Marshal(data)
	if err != nil {
		e.err = err
		return
	}
	if id > 0 {
		_, e.err = fmt.Fprintf(e.w, "id: %d\nevent: %s\ndata: %s\n\n", id, name, b)
	} else {
		_, e.err = fmt.Fprintf(e.w, "event: %s\ndata: %s\n\n", name, b)
	}
}

func (e *sse) comment(text string) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, ": %s\n\n", text)
	}
}

func (e *sse) flush() {
	if e.err == nil {
		e.err = e.rc.Flush()
	}
}

// watchRegional streams a table's rows and then its changes.
func (s *Server) watchRegional(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.table(w, r)
	if !ok {
		return
	}
	s.stream(w, r, s.opts.Regional, sch.Name, func(kr store.KeyRow) (any, bool, error) {
		body, err := s.rowBody(sch, kr)
		return body, body.Deleted, err
	})
}

// GlobalEvent is the data of a global watch event: one region's record
// under one key.
type GlobalEvent struct {
	Key         string          `json:"key"`
	Region      string          `json:"region"`
	Record      json.RawMessage `json:"record,omitempty"`
	PublishedAt time.Time       `json:"published_at"`
	Deleted     bool            `json:"deleted,omitempty"`
}

// watchGlobal streams a record type's entries, every region, then changes.
func (s *Server) watchGlobal(w http.ResponseWriter, r *http.Request) {
	sch, ok := s.globalRecord(w, r)
	if !ok {
		return
	}
	if s.opts.Global == nil {
		// A forwarded stream could not be verified as it goes.
		notGateway(w, "watch global records on a gateway")
		return
	}
	s.stream(w, r, s.opts.Global, sch.Name, func(kr store.KeyRow) (any, bool, error) {
		rec, err := global.FromRow(sch.Name, kr.Key, kr.Row)
		if err != nil {
			return nil, false, err
		}
		ev := GlobalEvent{Key: rec.Key, Region: rec.Region, PublishedAt: rec.Stamp.HLC.Time(), Deleted: rec.Deleted()}
		if !ev.Deleted {
			m, err := sch.DecodeBinary(rec.Value)
			if err != nil {
				return nil, false, err
			}
			if ev.Record, err = sch.EncodeJSON(m); err != nil {
				return nil, false, err
			}
		}
		return ev, ev.Deleted, nil
	})
}

// stream serves a watch: a snapshot of table (or a resume from
// Last-Event-ID), then its changes, rendering each row with render.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, st *store.Store, table string, render func(store.KeyRow) (any, bool, error)) {
	var pos uint64
	resume := false
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = r.URL.Query().Get("since")
	}
	if id != "" {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest,
				Message: fmt.Sprintf("resume position %q: want the decimal id of a watch event", id)})
			return
		}
		pos, resume = n, true
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	out := &sse{w: w, rc: http.NewResponseController(w)}
	snapshot := func() uint64 {
		seq, err := st.Scan(table, func(kr store.KeyRow) error {
			data, deleted, err := render(kr)
			if err != nil {
				return err
			}
			if deleted { // a global delete is a live row with no value
				return nil
			}
			out.event(0, EventSnapshot, data)
			return out.err
		})
		if err != nil && out.err == nil {
			out.err = err
			s.opts.Logger.Error("watch: snapshot", "table", table, "err", err)
			return 0
		}
		out.event(seq, EventSynced, map[string]uint64{"seq": seq})
		return seq
	}
	if resume && pos > st.Seq() {
		// Feed positions belong to one node's data file: a position this
		// node has not reached comes from another node or an older file.
		out.event(0, EventReset, map[string]string{"reason": fmt.Sprintf("position %d is ahead of this node's change feed", pos)})
		resume = false
	}
	if !resume {
		pos = snapshot()
	}
	out.flush()
	heartbeat := time.NewTicker(watchHeartbeat)
	defer heartbeat.Stop()
	for out.err == nil {
		changed := st.Changed()
		evs, next, err := st.FeedSince(pos, table, watchPage)
		if errors.Is(err, store.ErrFeedTrimmed) {
			out.event(0, EventReset, map[string]string{"reason": err.Error()})
			pos = snapshot()
			out.flush()
			continue
		}
		if err != nil {
			s.opts.Logger.Error("watch: reading the change feed", "table", table, "err", err)
			return
		}
		for _, ev := range evs {
			data, deleted, err := render(store.KeyRow{Key: ev.Key, Row: ev.Row})
			if err != nil {
				s.opts.Logger.Error("watch", "err", err)
				continue
			}
			name := EventPut
			if deleted {
				name = EventDelete
			}
			out.event(ev.Seq, name, data)
		}
		pos = next
		out.flush()
		if len(evs) == watchPage {
			continue
		}
		select {
		case <-changed:
		case <-heartbeat.C:
			out.comment("ping")
			out.flush()
		case <-r.Context().Done():
			return
		}
	}
}
