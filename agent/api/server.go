package api

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/semaphore"

	"github.com/strata-state/strata/agent/api/client"
	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// DefaultMaxBody is the request body limit when Options.MaxBody is zero.
const DefaultMaxBody = 4 << 20

// DefaultCommitStall is Options.CommitStall's default: far above the
// longest commit of a healthy store (a full batch of 50,000 rows commits
// in about a second), far below what an operator would tolerate.
const DefaultCommitStall = 10 * time.Second

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
	// /v1/health (and /metrics with PublicMetrics) must carry; SetToken replaces
	// it while the server runs. When empty, browsers are kept out instead:
	// requests from another Origin, or with a Host that is not this API's
	// (DNS rebinding), are refused.
	Token string
	// Addr is the API's listen address; its host is accepted in Host
	// headers (as are IP addresses and localhost).
	Addr string
	// Hosts are further host names accepted in Host headers.
	Hosts []string
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
	// reads are then forwarded to a gateway: see forward.go).
	Global *store.Store
	// Writer is the global tier's write path, on gateways.
	Writer *global.Writer
	// Trust is the regions' public keys that forwarded global reads are
	// verified against, on nodes that are not gateways; nil: checked
	// against the contract only.
	Trust *global.Trust
	// NodeKeys returns the regional gossip keys (primary first), from
	// which nodes of the region authenticate forwarded reads to each
	// other; nil or none: forwarded reads carry no credential.
	NodeKeys func() [][]byte
	// StaleAfter is how old a region's heartbeat may be before its records
	// are shown as stale.
	StaleAfter time.Duration
	// Reducers returns GET /v1/reducers' answer.
	Reducers func() any
	// WatchHeartbeat is the interval of keep-alive comments on an idle
	// watch stream. Default DefaultWatchHeartbeat.
	WatchHeartbeat time.Duration
	// WatchWriteTimeout bounds each write of a watch stream; a client that
	// takes nothing for that long is cut off. Default
	// DefaultWatchWriteTimeout.
	WatchWriteTimeout time.Duration
	// WatchMaxLag is how many changes a watcher may fall behind the
	// change feed, while losing ground, before it is cut off; a watcher
	// that resumes further behind gets "reset" and a new snapshot.
	// Default DefaultWatchMaxLag.
	WatchMaxLag uint64
	// CommitStall is how long a write may wait for a store's commit loop
	// before /v1/health reports the store stuck (503). Default
	// DefaultCommitStall.
	CommitStall time.Duration
	// Ready, when set, decides GET /v1/health?ready=1: 503 with its error
	// until it returns nil (for example until the node's first exchange
	// with its peers finished). Nil: ready whenever healthy.
	Ready ReadyChecker
	// WriteWait bounds how long a write (PUT, PATCH, DELETE, batch POST)
	// waits for room in the large-body budget and for the store to commit
	// it; past it the client gets a 503 saying the write may still be
	// applied. Keep it below the HTTP server's write timeout, so the
	// client always gets an answer. Default DefaultWriteWait.
	WriteWait time.Duration
	// Gateways returns the API addresses of the alive gateways of this
	// region, where a node without a global store forwards global reads;
	// none if none. A read tries them in turn, the one that last answered
	// with a verified read first.
	Gateways func() []string
	// Publisher returns the region's publisher as this node sees it, for
	// /v1/status, /v1/members and the strata_publisher metric; nil: not
	// shown.
	Publisher func() PublisherStatus
	// Problems returns what else /v1/status lists under "problems" (for
	// example reducers whose last run failed or had records rejected).
	Problems func() []string
}

// PublisherStatus is the region's publisher as one node sees it. On a
// gateway, Node is the node the gateways elect: the lowest-named gateway
// alive in both tiers. A node that is not a gateway does not see the
// global tier and shows the lowest-named alive gateway of its region.
type PublisherStatus = client.PublisherStatus

// ReadyChecker says whether the node is ready to serve: nil when it is,
// otherwise an error whose text says what it still waits for. Ready is
// called on every readiness request, concurrently: it must be safe for
// concurrent use, and quick (it must not block on the network).
type ReadyChecker interface {
	Ready() error
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
	// Publisher is the region's publisher as this node sees it; empty
	// when it has none (or the node does not say).
	Publisher string `json:"publisher,omitempty"`
}

// Server is the HTTP API of one agent. Its handler is safe for concurrent
// use.
type Server struct {
	opts    Options
	started time.Time
	metrics *metrics
	handler http.Handler
	auth    authState // the current token and open paths; SetToken replaces the token

	untrustedOnce sync.Once    // the warning of a forwarded read without api.trusted_regions
	goodGateway   atomic.Value // string: the gateway that last answered a forwarded read verified
	// bodies bounds the bytes of large write bodies being decoded and
	// applied at once (writeBudget × MaxBody): each is held many times
	// over in memory while it is decoded.
	bodies *semaphore.Weighted
	// verifier checks forwarded global reads; one for the server's life,
	// so batches it has verified cost a lookup on later reads. Nil
	// without Options.Trust.
	verifier *global.Verifier
}

// New returns a Server for opts.
func New(opts Options) *Server {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.WriteWait <= 0 {
		opts.WriteWait = DefaultWriteWait
	}
	if opts.WatchHeartbeat <= 0 {
		opts.WatchHeartbeat = DefaultWatchHeartbeat
	}
	if opts.WatchWriteTimeout <= 0 {
		opts.WatchWriteTimeout = DefaultWatchWriteTimeout
	}
	if opts.WatchMaxLag == 0 {
		opts.WatchMaxLag = DefaultWatchMaxLag
	}
	if opts.CommitStall <= 0 {
		opts.CommitStall = DefaultCommitStall
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, started: time.Now(), bodies: semaphore.NewWeighted(writeBudget * opts.MaxBody)}
	if opts.Trust != nil {
		s.verifier = global.NewVerifier(opts.Trust)
	}
	s.auth.token.set(opts.Token)
	s.auth.publicMetrics.Store(opts.PublicMetrics)
	stores := map[string]*store.Store{"regional": opts.Regional}
	if opts.Global != nil {
		stores["global"] = opts.Global
	}
	s.metrics = newMetrics(opts.Registry, stores, s.liveRows, opts.Publisher)

	mux := http.NewServeMux()
	mux.HandleFunc("/v1/regional/{table}", s.regionalTable)
	mux.HandleFunc("/v1/regional/{table}/{key...}", s.regionalRow)
	mux.HandleFunc("GET /v1/watch/regional/{table}", s.watchRegional)
	mux.HandleFunc("GET /v1/watch/global/{record}", s.watchGlobal)
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/health", s.health)
	mux.HandleFunc("GET /v1/members", s.members)
	mux.HandleFunc("GET /v1/backup", s.backup)
	mux.HandleFunc("GET /v1/reducers", s.reducers)
	mux.HandleFunc("GET /v1/keys", s.keys)
	mux.HandleFunc("POST /v1/keys/{tier}/{op}", s.changeKey)
	mux.HandleFunc("GET /v1/global/{record}", s.globalList)
	mux.HandleFunc("/v1/global/{record}", func(w http.ResponseWriter, r *http.Request) { methodNotAllowed(w, r, "GET") })
	mux.HandleFunc("GET /v1/global/{record}/{key...}", s.globalGet)
	mux.HandleFunc("PUT /v1/global/{record}/{key...}", func(w http.ResponseWriter, r *http.Request) {
		s.writing(w, r, func(r *http.Request) { s.globalPut(w, r) })
	})
	mux.HandleFunc("DELETE /v1/global/{record}/{key...}", func(w http.ResponseWriter, r *http.Request) {
		s.writing(w, r, func(r *http.Request) { s.globalDelete(w, r) })
	})
	mux.HandleFunc("/v1/global/{record}/{key...}", func(w http.ResponseWriter, r *http.Request) {
		methodNotAllowed(w, r, "GET", "PUT", "DELETE")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no API route %s %s", r.Method, r.URL.Path)})
	})
	s.handler = s.instrument(s.authenticate(mux))
	return s
}

// Handler is the http.Handler serving the API.
func (s *Server) Handler() http.Handler { return s.handler }

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
	// Publisher is the region's publisher; absent when the node does
	// not know (a server without Options.Publisher).
	Publisher *PublisherStatus `json:"publisher,omitempty"`
	// Problems says what needs an operator: a region without an alive
	// gateway or publisher, reducers that failed or had records rejected.
	Problems []string `json:"problems,omitempty"`
}

type tierStatus struct {
	// Writes is "ok", or why the store takes no writes (a damaged or
	// read-only file, a full disk), naming the file and what to do.
	Writes    string           `json:"writes"`
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
			Writes: writesStatus(s.opts.Regional),
			Rows:   s.liveRows("regional", st), Seq: st.Seq, Digest: hex.EncodeToString(st.Root[:]), FileBytes: st.FileBytes, Commits: st.Commits,
		}},
		Contract: contractStatus{Tables: []string{}, Records: []string{}},
	}
	for _, t := range s.opts.Contract.Tables() {
		body.Contract.Tables = append(body.Contract.Tables, t.Name)
		if _, ok := st.Rows[t.Name]; !ok {
			st.Rows[t.Name] = 0
		}
	}
	if s.opts.Global != nil {
		gs := s.opts.Global.Stats()
		body.Tiers["global"] = tierStatus{Writes: writesStatus(s.opts.Global), Rows: s.liveRows("global", gs), Seq: gs.Seq,
			Digest: hex.EncodeToString(gs.Root[:]), FileBytes: gs.FileBytes, Commits: gs.Commits}
	}
	for _, rec := range s.opts.Contract.Records() {
		body.Contract.Records = append(body.Contract.Records, rec.Name)
	}
	slices.Sort(body.Contract.Tables)
	if s.opts.Publisher != nil {
		ps := s.opts.Publisher()
		if ps.Gateways == nil {
			ps.Gateways = []string{}
		}
		body.Publisher = &ps
		body.Problems = append(body.Problems, s.publisherProblems(ps)...)
	}
	if s.opts.Problems != nil {
		body.Problems = append(body.Problems, s.opts.Problems()...)
	}
	writeJSON(w, http.StatusOK, body)
}

// liveRows is the live rows by table of tier's store, whose statistics
// are st: the store's count of rows that are not tombstones, except for
// the global tier's record types, whose deletes are live rows with an
// empty value (see global.DeletedRow): those count their live records
// only, as the regional counts leave tombstones out.
func (s *Server) liveRows(tier string, st store.Stats) map[string]int64 {
	if tier != "global" || s.opts.Global == nil {
		return st.Rows
	}
	rows := make(map[string]int64, len(st.Rows))
	for table, n := range st.Rows {
		rows[table] = n
	}
	for _, rec := range s.opts.Contract.Records() {
		var n int
		var err error
		if s.opts.Writer != nil {
			n, err = s.opts.Writer.Live(rec.Name) // follows the store's feed
		} else {
			var recs []global.Stored
			recs, err = global.List(s.opts.Global, rec.Name, "")
			n = len(recs)
		}
		if err != nil {
			s.opts.Logger.Warn("count the global tier's live records", "record", rec.Name, "err", err)
			continue // the store's count, deletes included
		}
		rows[rec.Name] = int64(n)
	}
	return rows
}

// publisherProblems says what is wrong with the region's publishing.
func (s *Server) publisherProblems(ps PublisherStatus) []string {
	switch {
	case len(ps.Gateways) == 0:
		return []string{fmt.Sprintf("region %s has no alive gateway: its records are not published to the global tier, "+
			"and global reads cannot be forwarded", s.opts.Region)}
	case ps.Node == "":
		return []string{fmt.Sprintf("region %s has no publisher: none of its alive gateways (%s) is alive in the global tier",
			s.opts.Region, strings.Join(ps.Gateways, ", "))}
	}
	return nil
}

// writesStatus is a store's "writes" field in /v1/status.
func writesStatus(st *store.Store) string {
	if err := st.Unwritable(); err != nil {
		return err.Error()
	}
	return "ok"
}

func (s *Server) members(w http.ResponseWriter, r *http.Request) {
	res := MembersResult{Node: s.opts.Node, Tiers: map[string][]cluster.Member{}}
	for name, t := range s.opts.Tiers {
		res.Tiers[name] = t.Members()
	}
	if s.opts.Publisher != nil {
		res.Publisher = s.opts.Publisher().Node
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

// healthBody is the answer of GET /v1/health.
type healthBody struct {
	// Status is "ok", or "unhealthy" with the reasons in Problems.
	Status   string   `json:"status"`
	Problems []string `json:"problems,omitempty"`
}

// health answers 200 while the agent is alive and its stores commit, 503
// with the reasons otherwise. With ?ready=1 it also answers 503 until
// Options.Ready reports the node ready. It is served without the token;
// a caller without it learns what is wrong but not where: a store's
// problem names its file (under data_dir) for callers with the token only.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	var problems []string
	if r.URL.Query().Get("ready") != "" && s.opts.Ready != nil {
		if err := s.opts.Ready.Ready(); err != nil {
			problems = append(problems, "not ready: "+err.Error())
		}
	}
	full := s.hasToken(r)
	for _, t := range s.stores() {
		if err := t.store.Unwritable(); err != nil {
			if full {
				problems = append(problems, fmt.Sprintf("%s store: writes unavailable: %v", t.name, err))
			} else {
				problems = append(problems, fmt.Sprintf("%s store: writes unavailable: %s (send the token for the file and what to do)", t.name, unwritableCause(err)))
			}
		}
		if d := t.store.CommitStall(); d > s.opts.CommitStall {
			problems = append(problems, fmt.Sprintf("%s store: a write has waited %s for the commit loop (limit %s): the store is stuck",
				t.name, d.Round(time.Millisecond), s.opts.CommitStall))
		}
	}
	if len(problems) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, healthBody{Status: "unhealthy", Problems: problems})
		return
	}
	writeJSON(w, http.StatusOK, healthBody{Status: "ok"})
}

// unwritableCause is why a store takes no writes (Store.Unwritable's
// error), without the file it names.
func unwritableCause(err error) string {
	switch {
	case errors.Is(err, store.ErrCorrupt):
		return "its data file is damaged"
	case errors.Is(err, store.ErrReadOnly):
		return "its data file was opened read-only"
	case errors.Is(err, store.ErrUnwritable):
		return "its disk refuses writes (full, over quota or read-only)"
	}
	return "the store refuses writes"
}

// namedStore is one tier's store.
type namedStore struct {
	name  string
	store *store.Store
}

// stores lists this node's stores, regional first.
func (s *Server) stores() []namedStore {
	out := []namedStore{{"regional", s.opts.Regional}}
	if s.opts.Global != nil {
		out = append(out, namedStore{"global", s.opts.Global})
	}
	return out
}
