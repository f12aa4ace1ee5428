package api

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// DefaultWriteWait is Options.WriteWait when zero: below the HTTP server's
// default write timeout of 30 s.
const DefaultWriteWait = 25 * time.Second

// writeBudget is how many bodies of the largest size (Options.MaxBody) may
// be decoded and applied at once. A batch body is held many times over in
// memory while its rows are decoded (JSON, messages, mutations), so
// concurrent large batches, not their number of connections, bound the
// agent's memory; a larger write waits for room (within WriteWait).
const writeBudget = 2

// smallBody is the size under which a write does not take from the
// large-body budget: single-row writes never wait behind batches.
const smallBody = 64 << 10

// writing runs a write handler with the write deadline (Options.WriteWait)
// on its request's context and, for a body that may be large, room in the
// large-body budget. A write that finds no room within the deadline is
// answered 503 without its body being read.
func (s *Server) writing(w http.ResponseWriter, r *http.Request, handle func(*http.Request)) {
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.WriteWait)
	defer cancel()
	r = r.WithContext(ctx)
	if n := r.ContentLength; n < 0 || n > smallBody {
		weight := s.opts.MaxBody
		if n > 0 && n < weight {
			weight = n
		}
		if err := s.bodies.Acquire(ctx, weight); err != nil {
			refuse(w, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
				Message: fmt.Sprintf("busy: large writes already in flight hold the write budget (%d × api.max_body) and none finished within %s; retry later",
					writeBudget, s.opts.WriteWait)})
			return
		}
		defer s.bodies.Release(weight)
	}
	handle(r)
}
