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
	// watchPage bounds the rows (snapshot) or feed events (changes) read
	// per store call. Each page is read in its own short read transaction
	// and copied out before anything is written to the client, so a
	// client that stops reading never holds a transaction open: bbolt's
	// remap waits for open read transactions, and every commit with it.
	// It is also all a watcher buffers: a watcher holds one page at a time
	// and reads the next from the persisted feed only once the client has
	// taken the last, so a slow client costs the server one page and the
	// socket's buffers, whatever the write rate.
	watchPage = 512
	// DefaultWatchHeartbeat is the interval of the comment line sent on an
	// idle stream when Options.WatchHeartbeat is zero; it keeps proxies
	// from closing the stream and lets a gone client be noticed.
	DefaultWatchHeartbeat = 15 * time.Second
	// DefaultWatchMaxLag is Options.WatchMaxLag's default: how many
	// changes a watcher may fall behind the feed before it is cut off.
	DefaultWatchMaxLag = 10_000
	// DefaultWatchWriteTimeout bounds each write of a watch stream when
	// Options.WatchWriteTimeout is zero: a client that takes no data for
	// that long is cut off (it resumes with Last-Event-ID, and gets a
	// "reset" and a new snapshot if its position has left the feed).
	DefaultWatchWriteTimeout = 30 * time.Second
)

// Watch event names. A stream without a resume position starts with one
// "snapshot" event per live row, then one "synced" event whose id is the
// position the snapshot reflects; then "put" and "delete" events, each with
// its feed position as id. A client resumes by sending the last id it saw
// in Last-Event-ID (or ?since=). When that position is no longer retained,
// or is more than Options.WatchMaxLag changes behind, the server sends
// "reset" and starts over with a snapshot. A watcher that falls that far
// behind while streaming (it reads slower than changes come) is cut off,
// and resuming gets it the reset.
const (
	EventSnapshot = "snapshot"
	EventSynced   = "synced"
	EventPut      = "put"
	EventDelete   = "delete"
	EventReset    = "reset"
)

// sse writes server-sent events. Each write has its own deadline, so a
// client that stops reading is cut off after timeout instead of holding
// the stream (and its goroutine) for ever.
type sse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	err     error
}

// deadline arms the write deadline for the next write.
func (e *sse) deadline() {
	if e.err == nil {
		if err := e.rc.SetWriteDeadline(time.Now().Add(e.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			e.err = err
		}
	}
}

func (e *sse) event(id uint64, name string, data any) {
	e.deadline()
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
	e.deadline()
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, ": %s\n\n", text)
	}
}

func (e *sse) flush() {
	e.deadline()
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
		if kr.Row.Alive() && !complete(sch, kr.Row) {
			return nil, false, nil // a partial row: not shown until whole
		}
		body, err := s.rowBody(sch, kr)
		return body, body.Deleted, err
	})
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
// Last-Event-ID), then its changes, rendering each row with render. A row
// that render turns into nil data is left out.
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
	out := &sse{w: w, rc: http.NewResponseController(w), timeout: s.opts.WatchWriteTimeout}
	// A stream outlives the server's read and write timeouts: lift them.
	// Writes get a deadline each (sse.deadline), and a gone client shows
	// as a failed write at the latest at the next heartbeat.
	out.rc.SetReadDeadline(time.Time{})
	// snapshot sends the live rows page by page, each page read in its own
	// short transaction and sent after it ended. The pages are read at
	// different moments, so the snapshot is not one point in time; it is
	// made consistent by the feed: the stream continues from the position
	// of the first page's read, so every change made while the pages were
	// read is sent again afterwards, in order, and the client ends with
	// the state of that position plus every later change.
	snapshot := func() uint64 {
		var seq uint64
		after := ""
		for first := true; ; first = false {
			rows, pageSeq, err := st.List(table, after, watchPage)
			if err != nil {
				out.err = err
				s.opts.Logger.Error("watch: snapshot", "table", table, "err", err)
				return 0
			}
			if first {
				seq = pageSeq
			}
			for _, kr := range rows {
				data, deleted, err := render(kr)
				if err != nil {
					s.opts.Logger.Error("watch: snapshot", "table", table, "key", kr.Key, "err", err)
					continue
				}
				if data == nil || deleted { // a global delete is a live row with no value
					continue
				}
				out.event(0, EventSnapshot, data)
			}
			if out.err != nil || len(rows) < watchPage {
				break
			}
			after = rows[len(rows)-1].Key
		}
		out.event(seq, EventSynced, map[string]uint64{"seq": seq})
		return seq
	}
	switch head := st.Seq(); {
	case resume && pos > head:
		// Feed positions belong to one node's data file: a position this
		// node has not reached comes from another node or an older file.
		out.event(0, EventReset, map[string]string{"reason": fmt.Sprintf("position %d is ahead of this node's change feed", pos)})
		resume = false
	case resume && head-pos > s.opts.WatchMaxLag:
		// Further behind than a watcher may be: a snapshot is the
		// cheaper way to catch up (and where a cut-off watcher lands).
		out.event(0, EventReset, map[string]string{"reason": fmt.Sprintf("position %d is %d changes behind this node's change feed (more than %d): starting over", pos, head-pos, s.opts.WatchMaxLag)})
		resume = false
	}
	if !resume {
		pos = snapshot()
	}
	out.flush()
	heartbeat := time.NewTicker(s.opts.WatchHeartbeat)
	defer heartbeat.Stop()
	lastLag := st.Seq() - min(pos, st.Seq())
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
			if data == nil {
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
		// A watcher that falls behind is cut off: it is more than
		// WatchMaxLag changes behind, and losing ground (a watcher that
		// catches up after a snapshot is not). It resumes with
		// Last-Event-ID and gets a reset and a new snapshot.
		if head := st.Seq(); head > pos {
			lag := head - pos
			if lag > s.opts.WatchMaxLag && lag > lastLag {
				s.opts.Logger.Info("watch: cutting off a watcher that fell behind", "table", table, "behind", lag, "limit", s.opts.WatchMaxLag)
				return
			}
			lastLag = lag
		} else {
			lastLag = 0
		}
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
