package api

import (
	"strings"
	"sync/atomic"
)

// authState is what authentication depends on that may change while the
// server runs (on a SIGHUP reload).
type authState struct {
	token         tokenHolder
	publicMetrics atomic.Bool
}

// SetPublicMetrics chooses whether /metrics is served without the token
// (api.public_metrics).
func (s *Server) SetPublicMetrics(on bool) { s.auth.publicMetrics.Store(on) }

// tokenHolder holds the bearer token the API requires, replaceable while
// requests are served.
type tokenHolder struct{ want atomic.Pointer[[]byte] }

// set makes tok the token; "" disables authentication.
func (h *tokenHolder) set(tok string) {
	if tok == "" {
		h.want.Store(nil)
		return
	}
	b := []byte(tok)
	h.want.Store(&b)
}

// token is the bearer token requests must carry, or nil when
// authentication is off.
func (h *tokenHolder) token() []byte {
	if p := h.want.Load(); p != nil {
		return *p
	}
	return nil
}

// bearer returns the credentials of an Authorization header of the Bearer
// scheme, whose name is case-insensitive (RFC 9110, 11.1), or nil.
func bearer(header string) []byte {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	return []byte(strings.TrimLeft(cred, " "))
}

// SetToken replaces the bearer token requests must carry ("" turns
// authentication off); requests already authenticated are not affected.
// The agent calls it when it reloads api.token_file on SIGHUP.
func (s *Server) SetToken(tok string) { s.auth.token.set(tok) }

// open tells whether path is served without the token: /v1/health
// always, /metrics when Options.PublicMetrics is set.
func (s *Server) open(path string) bool {
	return path == "/v1/health" || (s.auth.publicMetrics.Load() && path == "/metrics")
}
