package api

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// DefaultMaxBody is the request body limit when Options.MaxBody is zero.
const DefaultMaxBody = 4 << 20

// Options configure a Server.
type Options struct {
	// Contract holds the tables (and records) the API serves. Required.
	Contract *contracts.Contract
	// Regional is the regional tier's store. Required.
	Regional *store.Store
	// Node, Region and Cluster identify this agent in /v1/status.
	Node, Region, Cluster string
	// Version is the strata version reported in /v1/status.
	Version string
	// Token, when not empty, is the bearer token every request except
	// /v1/health (and /metrics with PublicMetrics) must carry. SetToken
	// replaces it while the server runs.
	Token string
	// PublicMetrics serves /metrics without the token.
	PublicMetrics bool
	// MaxBody bounds request bodies, in bytes. Default DefaultMaxBody.
	MaxBody int64
	// Registry receives the API's and the store's metrics and is served
	// at /metrics. Default: a new registry.
	Registry *prometheus.Registry
	// Logger receives request errors. Default: slog.Default().
	Logger *slog.Logger
	// Tiers lists the members of each tier this node belongs to, for
	// /v1/members.
	Tiers map[string]MemberLister
	// Global is the global store, on gateways; nil elsewhere (global
	// reads then answer 503).
	Global *store.Store
	// StaleAfter is how old a region's heartbeat may be before its records
	// are shown as stale.
	StaleAfter time.Duration
	// Reducers returns GET /v1/reducers' answer.
	Reducers func() any
	// Gateway returns the API address of a gateway of this region, where a
	// node without a global store forwards global reads; "" if none.
	Gateway func() string
}

// MemberLister is a tier as the API sees it: its members (/v1/members)
// and its keyring (/v1/keys). Its methods must be safe for concurrent use.
type MemberLister interface {
	Members() []cluster.Member
	Keys() (cluster.KeyInfo, error)
	ChangeKey(op string, key []byte) error
}

// MembersResult answers GET /v1/members: each tier's members.
type MembersResult struct {
	Node  string                      `json:"node"`
	Tiers map[string][]cluster.Member `json:"tiers"`
}

// Server is the HTTP API of one agent. Its handler is safe for concurrent
// use.
type Server struct {
	opts    Options
	budgets sync.Map // record name → *contracts.Budget, for API writes
	started time.Time
	metrics *metrics
	handler http.Handler
	auth    authState // the current token and open paths; SetToken replaces the token
}

// New returns a Server for opts.
func New(opts Options) *Server {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, started: time.Now()}
	s.auth.token.set(opts.Token)
	s.auth.publicMetrics.Store(opts.PublicMetrics)
	s.metrics = newMetrics(opts.Registry, map[string]*store.Store{"regional": opts.Regional})

	mux := http.NewServeMux()
	mux.HandleFunc("/v1/regional/{table}", s.regionalTable)
	mux.HandleFunc("/v1/regional/{table}/{key...}", s.regionalRow)
	mux.HandleFunc("GET /v1/watch/regional/{table}", s.watchRegional)
	mux.HandleFunc("GET /v1/watch/global/{record}", s.watchGlobal)
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/health", s.health)
	mux.HandleFunc("GET /v1/members", s.members)
	mux.HandleFunc("GET /v1/reducers", s.reducers)
	mux.HandleFunc("GET /v1/keys", s.keys)
	mux.HandleFunc("POST /v1/keys/{tier}/{op}", s.changeKey)
	mux.HandleFunc("GET /v1/global/{record}", s.globalList)
	mux.HandleFunc("GET /v1/global/{record}/{key...}", s.globalGet)
	mux.HandleFunc("PUT /v1/global/{record}/{key...}", s.globalPut)
	mux.HandleFunc("DELETE /v1/global/{record}/{key...}", s.globalDelete)
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no API route %s %s", r.Method, r.URL.Path)})
	})
	s.handler = s.instrument(s.authenticate(mux))
	return s
}

// Handler is the http.Handler serving the API.
func (s *Server) Handler() http.Handler { return s.handler }

// authenticate checks the bearer token when one is configured.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := s.auth.token.header()
		if want != nil && !s.open(r.URL.Path) && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="strata"`)
			writeError(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "missing or wrong bearer token (send Authorization: Bearer <token>, the content of api.token_file)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// table resolves the {table} path value, answering 404 for an unknown one.
func (s *Server) table(w http.ResponseWriter, r *http.Request) (*contracts.Schema, bool) {
	name := r.PathValue("table")
	sch, ok := s.opts.Contract.Table(name)
	if !ok {
		var names []string
		for _, t := range s.opts.Contract.Tables() {
			names = append(names, t.Name)
		}
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: fmt.Sprintf("unknown table %q (the contract has: %s)", name, strings.Join(names, ", "))})
		return nil, false
	}
	return sch, true
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed ...string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeError(w, &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethod,
		Message: fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", "))})
}

// statusBody is the answer of GET /v1/status.
type statusBody struct {
	Node          string                `json:"node"`
	Region        string                `json:"region"`
	Cluster       string                `json:"cluster"`
	Version       string                `json:"version"`
	StartedAt     time.Time             `json:"started_at"`
	UptimeSeconds float64               `json:"uptime_seconds"`
	Tiers         map[string]tierStatus `json:"tiers"`
	Contract      contractStatus        `json:"contract"`
}

type tierStatus struct {
	Rows      map[string]int64 `json:"rows"`
	Seq       uint64           `json:"seq"`
	Digest    string           `json:"digest"`
	FileBytes int64            `json:"file_bytes"`
	Commits   uint64           `json:"commits"`
}

type contractStatus struct {
	Tables  []string `json:"tables"`
	Records []string `json:"records"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.opts.Regional.Stats()
	body := statusBody{
		Node: s.opts.Node, Region: s.opts.Region, Cluster: s.opts.Cluster, Version: s.opts.Version,
		StartedAt: s.started.UTC(), UptimeSeconds: time.Since(s.started).Seconds(),
		Tiers: map[string]tierStatus{"regional": {
			Rows: st.Rows, Seq: st.Seq, Digest: hex.EncodeToString(st.Root[:]), FileBytes: st.FileBytes, Commits: st.Commits,
		}},
		Contract: contractStatus{Tables: []string{}, Records: []string{}},
	}
	for _, t := range s.opts.Contract.Tables() {
		body.Contract.Tables = append(body.Contract.Tables, t.Name)
		if _, ok := st.Rows[t.Name]; !ok {
			st.Rows[t.Name] = 0
		}
	}
	for _, rec := range s.opts.Contract.Records() {
		body.Contract.Records = append(body.Contract.Records, rec.Name)
	}
	slices.Sort(body.Contract.Tables)
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) members(w http.ResponseWriter, r *http.Request) {
	res := MembersResult{Node: s.opts.Node, Tiers: map[string][]cluster.Member{}}
	for name, t := range s.opts.Tiers {
		res.Tiers[name] = t.Members()
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) reducers(w http.ResponseWriter, r *http.Request) {
	var v any = []any{}
	if s.opts.Reducers != nil {
		v = s.opts.Reducers()
	}
	writeJSON(w, http.StatusOK, map[string]any{"reducers": v})
}

// keys answers GET /v1/keys: each tier's key fingerprints, never the keys.
func (s *Server) keys(w http.ResponseWriter, r *http.Request) {
	res := map[string]cluster.KeyInfo{}
	for name, t := range s.opts.Tiers {
		info, err := t.Keys()
		if err != nil {
			s.internal(w, r, err)
			return
		}
		res[name] = info
	}
	writeJSON(w, http.StatusOK, map[string]any{"tiers": res})
}

// KeyChange is the body of POST /v1/keys/{tier}/{add|use|remove}.
type KeyChange struct {
	// Key is the AES key, base64.
	Key string `json:"key"`
	// Fingerprint, for "remove" only, names the key to remove instead of
	// Key: a fingerprint from /v1/keys, or its 8-digit prefix.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Force, for "use" only, uses the key even while alive members of the
	// tier do not advertise it (they lose contact with this node).
	Force bool `json:"force,omitempty"`
}

// changeKey applies one key rotation step to one tier of this node.
func (s *Server) changeKey(w http.ResponseWriter, r *http.Request) {
	t, ok := s.opts.Tiers[r.PathValue("tier")]
	if !ok {
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("this node has no tier %q", r.PathValue("tier"))})
		return
	}
	var body KeyChange
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	if err == nil {
		err = json.Unmarshal(b, &body)
	}
	key, kerr := base64.StdEncoding.DecodeString(body.Key)
	if err == nil && body.Key == "" && body.Fingerprint != "" {
		if key, kerr = keyByFingerprint(t, r.PathValue("op"), body.Fingerprint); kerr != nil {
			writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: kerr.Error()})
			return
		}
	}
	if err != nil || kerr != nil || len(key) == 0 {
		writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: `the body must be {"key": "<base64 AES key>"}`})
		return
	}
	if e := refuseUse(t, r.PathValue("op"), key, body.Force); e != nil {
		writeError(w, e)
		return
	}
	if err := t.ChangeKey(r.PathValue("op"), key); err != nil {
		writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: err.Error()})
		return
	}
	info, _ := t.Keys()
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
