package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/strata-state/strata/agent/store"
)

// backup answers GET /v1/backup: a tar stream with a consistent copy of
// each of this node's stores (see store.WriteBackup), for `strata backup`.
// Each store is copied to a temporary file beside it inside one read
// transaction; the stream to the client holds none, and each write to the
// client has its own deadline (Options.WatchWriteTimeout) instead of the
// server's write timeout, since a backup may take longer than that.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	stores := map[string]*store.Store{}
	for _, t := range s.stores() {
		stores[t.name+".db"] = t.store
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "strata-"+s.opts.Node+".tar"))
	w.WriteHeader(http.StatusOK)
	if err := store.WriteBackup(deadlineWriter{w, rc, s.opts.WatchWriteTimeout}, stores); err != nil {
		// The stream ends short; restore detects it (the manifest lists
		// the files that must follow).
		s.opts.Logger.Error("backup", "err", err)
	}
}

// deadlineWriter arms a write deadline before each write.
type deadlineWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.w.Write(p)
}
