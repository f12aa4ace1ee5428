// Package agent assembles one strata agent from its configuration: the
// contract, the tier stores and the HTTP API, and runs it until stopped.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/publish"
	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// Options tune how an Agent is built, beyond its configuration.
type Options struct {
	// Logger receives the agent's logs. Default: slog.Default().
	Logger *slog.Logger
	// Version is reported in /v1/status.
	Version string
	// ContractFS, when set, is the contract import root instead of
	// contracts.dir (for the embedded example contract).
	ContractFS fs.FS
	// Level, when set, is the Logger's level, which Reload changes.
	Level *slog.LevelVar
	// Transport, when set, supplies each tier's memberlist transport
	// (tier is cluster.Regional or cluster.Global) instead of one bound
	// from the tier's bind address: `strata bench tiers` wraps it to count
	// the bytes sent between regions.
	Transport func(tier string) (memberlist.NodeAwareTransport, error)
}

// Agent is one running strata node.
type Agent struct {
	cfg      *config.Config
	log      *slog.Logger
	contract *contracts.Contract
	regional *store.Store
	tier     *cluster.Tier // the regional tier
	server   *http.Server
	listener net.Listener
	apiAddr  string // the API address peers are told
	metrics  *cluster.Metrics
	api      *api.Server // for SIGHUP reloads
	opts     Options
	reloadState

	// On gateways only:
	global     *store.Store
	globalTier *cluster.Tier
	host       *reducer.Host
	reducers   []*reducer.Reducer
	publisher  *publish.Publisher
	writer     *global.Writer
}

// ShutdownTimeout bounds how long Run waits for API requests in flight
// when stopping.
const ShutdownTimeout = 5 * time.Second

// New compiles the contract, opens the stores and binds the API address.
// On error nothing is left open.
func New(ctx context.Context, cfg *config.Config, opts Options) (_ *Agent, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Agent{cfg: cfg, log: opts.Logger, opts: opts}
	defer func() {
		if err != nil {
			a.close()
		}
	}()

	fsys := opts.ContractFS
	if fsys == nil {
		fsys = os.DirFS(cfg.Contracts.Dir)
	}
	if a.contract, err = contracts.Compile(ctx, fsys, cfg.Contracts.Files); err != nil {
		return nil, fmt.Errorf("contracts (dir %s): %w", cfg.Contracts.Dir, err)
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	clock := hlc.NewClock(nil, cfg.MaxClockDrift.Duration)
	a.regional, err = store.Open(filepath.Join(cfg.DataDir, "regional.db"), store.Options{
		Node:          cfg.Node,
		Clock:         clock,
		FeedRetention: cfg.Regional.FeedRetention,
		RefuseEmpty:   hasWritten(cfg.DataDir, "regional.db"),
	})
	if err != nil {
		return nil, err
	}

	if last := a.regional.LastSynced(); !last.IsZero() && time.Since(last) > cfg.TombstoneTTL.Duration {
		a.log.Warn("this node last synchronised with its region longer ago than tombstone_ttl: it rejoins by a full "+
			"state transfer from a peer, keeping the writes it acknowledged since, and reports ready once that is done",
			"last_sync", last, "tombstone_ttl", cfg.TombstoneTTL.Duration)
	}

	token, err := readToken(cfg.API.TokenFile)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Bind the API first: members publish its address in their meta.
	a.listener, err = net.Listen("tcp", cfg.API.Addr)
	if err != nil {
		return nil, fmt.Errorf("api.addr: %w", err)
	}
	apiAddr := advertisedAPI(a.listener.Addr().(*net.TCPAddr), cfg.Regional)

	keys, err := cluster.LoadKeyring(cfg.Regional.Keyring)
	if err != nil {
		return nil, fmt.Errorf("regional.keyring: %w", err)
	}
	var roles []string
	if cfg.Global != nil {
		roles = append(roles, "gateway")
		if w := loopbackGatewayAPI(apiAddr, cfg.Regional); w != "" {
			a.log.Warn(w)
		}
	}
	rc := cfg.Regional
	tierMetrics := cluster.NewMetrics(reg)
	a.metrics = tierMetrics
	transport, err := a.transport(cluster.Regional)
	if err != nil {
		return nil, err
	}
	a.tier, err = cluster.New(cluster.Config{
		Node: cfg.Node, Tier: cluster.Regional, Cluster: cfg.Cluster, Region: rc.Region,
		Bind: rc.Bind, Advertise: rc.Advertise, Join: rc.Join, Keys: keys, KeyringFile: rc.Keyring,
		GossipInterval: rc.GossipInterval.Duration, GossipNodes: rc.GossipNodes,
		ProbeInterval: rc.ProbeInterval.Duration, ProbeTimeout: rc.ProbeTimeout.Duration,
		SyncInterval: rc.SyncInterval.Duration, QueueLimit: rc.BroadcastQueue, TombstoneTTL: cfg.TombstoneTTL.Duration,
		Push: cluster.PushConfig{Fanout: rc.PushFanout, BatchDelay: rc.PushBatchDelay.Duration,
			BatchBytes: int(rc.PushBatchSize), PeerBound: int(rc.PushPeerBound)},
		Meta:      cluster.Meta{Region: rc.Region, Roles: roles, API: apiAddr, Build: opts.Version},
		PeersFile: filepath.Join(cfg.DataDir, "peers-regional.json"),
		Accept:    acceptRegional(a.contract),
		Logger:    a.log,
		Metrics:   tierMetrics,
		Transport: transport,
	}, a.regional)
	if err != nil {
		return nil, fmt.Errorf("regional tier: %w", err)
	}
	a.apiAddr = apiAddr
	if cfg.Global != nil {
		if err := a.startGateway(ctx, clock, reg, tierMetrics, roles); err != nil {
			return nil, err
		}
	}
	var apiTrust *global.Trust
	if cfg.API.TrustedRegions != "" {
		if apiTrust, err = global.LoadTrust(cfg.API.TrustedRegions); err != nil {
			return nil, fmt.Errorf("api.trusted_regions: %w", err)
		}
	}
	srv := api.New(api.Options{
		Contract: a.contract,
		Regional: a.regional,
		Node:     cfg.Node,
		Region:   cfg.Regional.Region,
		Cluster:  cfg.Cluster,
		Version:  opts.Version,
		Token:    token,
		Addr:     cfg.API.Addr,
		Hosts:    []string{apiAddr},
		MaxBody:  int64(cfg.API.MaxBody),
		// A write is answered within the server's write timeout, even
		// when the store has not confirmed it.
		WriteWait: cfg.API.WriteTimeout.Duration * 4 / 5,
		Registry:  reg,
		Logger:    a.log,
		Tiers:     a.tiers(),
		Global:    a.global,
		Writer:    a.writer,
		Trust:     apiTrust,
		NodeKeys:  a.tier.KeyringKeys, // in memory: follows rotations and reloads
		Reducers:  a.reducerStatus,
		Gateways:  a.gatewayAPIs,
		Publisher: a.publisherStatus,
		Problems: func() []string {
			if a.publisher == nil {
				return nil
			}
			return a.publisher.Problems()
		},
		Ready: a,
		StaleAfter: func() time.Duration {
			if cfg.Global != nil {
				return cfg.Global.StaleAfter.Duration
			}
			// A node without [global] judges the records it forwards
			// with the default, which its gateways also use unless set.
			return config.DefaultStaleAfter
		}(),
		WatchHeartbeat:    cfg.API.WatchHeartbeat.Duration,
		WatchWriteTimeout: cfg.API.WatchWriteTimeout.Duration,
		WatchMaxLag:       uint64(cfg.API.WatchMaxLag),
	})
	limits := api.Limits{
		ReadHeaderTimeout: cfg.API.ReadHeaderTimeout.Duration,
		ReadTimeout:       cfg.API.ReadTimeout.Duration,
		WriteTimeout:      cfg.API.WriteTimeout.Duration,
		IdleTimeout:       cfg.API.IdleTimeout.Duration,
		MaxHeaderBytes:    int(cfg.API.MaxHeaderBytes),
		MaxConnections:    cfg.API.MaxConnections,
	}
	a.server = api.NewHTTPServer(srv.Handler(), limits)
	a.listener = api.LimitListener(a.listener, a.server, limits)
	warnOpen(a.log, cfg, token)
	a.reloadState = reloadState{token: token, level: opts.Level}
	a.api = srv
	return a, nil
}

// readToken reads the bearer token file; an empty path disables auth. A
// file that group or others can read is refused, as ssh refuses such a
// private key: the token is as good as leaked.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("api.token_file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("api.token_file: %s is accessible by group or others (mode %04o): run `chmod 600 %s`", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("api.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("api.token_file: %s is empty (remove the key to disable auth)", path)
	}
	return tok, nil
}

// Addr is the address the API listens on.
func (a *Agent) Addr() string { return a.listener.Addr().String() }

// Tier is the agent's regional tier.
func (a *Agent) Tier() *cluster.Tier { return a.tier }

// Store is the agent's regional store.
func (a *Agent) Store() *store.Store { return a.regional }

// Contract is the compiled contract the agent serves.
func (a *Agent) Contract() *contracts.Contract { return a.contract }

// Run serves until ctx ends, then shuts down: it stops accepting requests,
// lets those in flight finish (up to ShutdownTimeout), and closes the
// stores, so every acknowledged write is on disk when Run returns.
func (a *Agent) Run(ctx context.Context) error {
	st := a.regional.Stats()
	a.log.Info("strata agent running", "node", a.cfg.Node, "region", a.cfg.Regional.Region,
		"api", "http://"+a.Addr(), "data_dir", a.cfg.DataDir, "rows", st.Rows)
	a.tier.Start()
	// Background work stops when Run ends, before the stores close.
	bgCtx, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	var bg sync.WaitGroup
	bg.Go(func() { a.reapLoop(bgCtx) })
	if a.globalTier != nil {
		a.globalTier.Start()
		bg.Go(func() { a.publisher.Run(bgCtx) })
	}
	// Requests in flight (watch streams above all) see their context end
	// when shutdown starts, instead of holding it for ShutdownTimeout.
	reqCtx, stopRequests := context.WithCancel(context.Background())
	a.server.BaseContext = func(net.Listener) context.Context { return reqCtx }
	errc := make(chan error, 1)
	go func() { errc <- a.server.Serve(a.listener) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	a.log.Info("strata agent stopping")
	stopRequests()
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if serr := a.server.Shutdown(sctx); serr != nil && err == nil && !errors.Is(serr, context.DeadlineExceeded) {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	stopBackground()
	bg.Wait()
	a.close()
	return err
}

// close releases what New opened. The tier leaves first, so peers learn
// at once that this node is going, then the store closes.
func (a *Agent) close() {
	if a.listener != nil {
		a.listener.Close()
	}
	if a.globalTier != nil {
		if err := a.globalTier.Close(); err != nil {
			a.log.Warn("leaving the global tier", "err", err)
		}
	}
	if a.tier != nil {
		if err := a.tier.Close(); err != nil {
			a.log.Warn("leaving the regional tier", "err", err)
		}
	}
	for _, r := range a.reducers {
		r.Close(context.Background())
	}
	if a.host != nil {
		a.host.Close(context.Background())
	}
	if a.global != nil {
		if err := a.global.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			a.log.Error("closing global store", "err", err)
		}
	}
	if a.regional != nil {
		if err := a.regional.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			a.log.Error("closing regional store", "err", err)
		}
	}
}

// startGateway opens the global store, loads the region keys, joins the
// global tier, loads the reducers and prepares the publisher.
func (a *Agent) startGateway(ctx context.Context, clock *hlc.Clock, reg *prometheus.Registry, tm *cluster.Metrics, roles []string) error {
	cfg := a.cfg
	g := cfg.Global
	var err error
	a.global, err = store.Open(filepath.Join(cfg.DataDir, "global.db"), store.Options{Node: cfg.Node, Clock: clock,
		RefuseEmpty: hasWritten(cfg.DataDir, "global.db"), Deleted: global.DeletedRow})
	if err != nil {
		return err
	}
	keys, err := cluster.LoadKeyring(g.Keyring)
	if err != nil {
		return fmt.Errorf("global.keyring: %w", err)
	}
	signer, trust, err := loadRegionKeys(g, cfg.Regional.Region)
	if err != nil {
		return err
	}
	if trust == nil {
		a.log.Warn("region identity is not enforced: [global] region_key and trusted_regions are not set, so any node " +
			"that holds the global gossip key can write any region's records; set them outside development (docs/SECURITY.md)")
	}
	a.writer = global.NewWriter(global.Options{
		Contract: a.contract, Store: a.global, Clock: clock, Node: cfg.Node, Region: cfg.Regional.Region,
		Signer: signer, Trust: trust, Logger: a.log, Registry: reg,
	})
	transport, err := a.transport(cluster.Global)
	if err != nil {
		return err
	}
	tier, err := cluster.New(cluster.Config{
		Node: cfg.Node, Tier: cluster.Global, Cluster: cfg.Cluster, Region: cfg.Regional.Region,
		Bind: g.Bind, Advertise: g.Advertise, Join: g.Join, Keys: keys, KeyringFile: g.Keyring,
		GossipInterval: g.GossipInterval.Duration, GossipNodes: g.GossipNodes,
		ProbeInterval: g.ProbeInterval.Duration, ProbeTimeout: g.ProbeTimeout.Duration,
		SyncInterval: g.SyncInterval.Duration,
		Push: cluster.PushConfig{Fanout: g.PushFanout, BatchDelay: g.PushBatchDelay.Duration,
			BatchBytes: int(g.PushBatchSize), PeerBound: int(g.PushPeerBound)},
		TombstoneTTL: cfg.TombstoneTTL.Duration,
		Meta:         cluster.Meta{Region: cfg.Regional.Region, Roles: roles, API: a.apiAddr, Build: a.opts.Version},
		PeersFile:    filepath.Join(cfg.DataDir, "peers-global.json"),
		Accept:       a.writer.Accept,
		Logger:       a.log,
		Metrics:      tm,
		Transport:    transport,
	}, a.global)
	if err != nil {
		return fmt.Errorf("global tier: %w", err)
	}
	a.globalTier = tier

	a.host, err = reducer.NewHost(reducer.HostOptions{CacheDir: filepath.Join(cfg.DataDir, "wazero-cache"), Logger: a.log})
	if err != nil {
		return err
	}
	// A record type has one reducer: each run's output is the region's
	// complete set of that type, so a second reducer would delete the
	// first one's records.
	owner := map[string]string{}
	for _, rc := range cfg.Reducers {
		for _, out := range rc.Outputs {
			if prev, ok := owner[out]; ok {
				return fmt.Errorf("reducers %s and %s both output %q: a record type must come from one reducer", prev, rc.Name, out)
			}
			owner[out] = rc.Name
		}
	}
	// A reducer that does not load (inputs or outputs not in the contract,
	// not Wasm, wrong ABI, a source dir that does not build) is reported
	// and left out; the others run.
	var failed []reducer.Status
	var jobs []publish.Job
	for _, rc := range cfg.Reducers {
		// A typo in inputs or outputs would fail every run: it is
		// reported as `strata agent --check` reports it, did-you-mean
		// and fix included, and the reducer is not loaded.
		if err := reducerConfigError(a.contract, rc); err != nil {
			a.log.Error(reducerNotLoaded, "reducer", rc.Name, "err", err)
			failed = append(failed, reducer.Status{Name: rc.Name, Inputs: rc.Inputs, Outputs: rc.Outputs,
				LastError: &reducer.ErrorStatus{At: time.Now().UTC(), Kind: "config", Message: err.Error()}})
			continue
		}
		r, err := a.host.Load(ctx, reducer.ConfigFrom(rc, ""))
		if err != nil {
			a.log.Error(reducerNotLoaded, "reducer", rc.Name, "err", err)
			failed = append(failed, reducer.Status{Name: rc.Name, Inputs: rc.Inputs, Outputs: rc.Outputs,
				LastError: &reducer.ErrorStatus{At: time.Now().UTC(), Kind: "load", Message: err.Error()}})
			continue
		}
		a.reducers = append(a.reducers, r)
		jobs = append(jobs, publish.Job{Reducer: r, Debounce: rc.Debounce.Duration})
	}
	reg.MustRegister(reducer.NewCollector(func() []*reducer.Reducer { return a.reducers }).WithRejected(func(name string) bool {
		return a.publisher != nil && a.publisher.Rejected(name)
	}))
	a.publisher = publish.New(publish.Options{
		Region: cfg.Regional.Region, Node: cfg.Node, Contract: a.contract,
		Regional: a.regional, Global: a.global, Writer: a.writer, Jobs: jobs, Failed: failed,
		Role:      publish.RoleFunc(func() bool { return a.publisherName() == cfg.Node }),
		Heartbeat: max(g.StaleAfter.Duration/3, 100*time.Millisecond),
		Logger:    a.log, Registry: reg,
	})
	return nil
}

// loadRegionKeys reads [global] region_key and trusted_regions; both empty
// gives nil, nil.
func loadRegionKeys(g *config.Global, region string) (*global.Signer, *global.Trust, error) {
	if g.RegionKey == "" && g.TrustedRegions == "" {
		return nil, nil, nil
	}
	signer, err := global.LoadSigner(g.RegionKey)
	if err != nil {
		return nil, nil, fmt.Errorf("global.region_key: %w", err)
	}
	if signer.Region != region {
		return nil, nil, fmt.Errorf("global.region_key: %s is the key of region %q, this node is in region %q", g.RegionKey, signer.Region, region)
	}
	trust, err := global.LoadTrust(g.TrustedRegions)
	if err != nil {
		return nil, nil, fmt.Errorf("global.trusted_regions: %w", err)
	}
	if r, ok := trust.RegionOf(signer.Public()); !ok || r != region {
		return nil, nil, fmt.Errorf("global.trusted_regions: %s does not list the public key of global.region_key for region %s; add the line:\n%s",
			g.TrustedRegions, region, signer.TrustLine())
	}
	return signer, trust, nil
}

// publisherName elects the region's publisher: the lowest-named alive
// member of the regional tier that says it is a gateway and is alive in
// the global tier too. A member of the region that only claims the role
// in its meta (it cannot join the global tier without its key) cannot
// take the role, and so stop its region's publishing, by choosing a low
// name.
func (a *Agent) publisherName() string {
	inGlobal := map[string]bool{}
	for _, m := range a.globalTier.Members() {
		if m.State == "alive" {
			inGlobal[m.Name] = true
		}
	}
	for _, m := range a.tier.Members() { // sorted by name
		if m.State == "alive" && slices.Contains(m.Roles, "gateway") && inGlobal[m.Name] {
			return m.Name
		}
	}
	return ""
}

// publisherStatus is the region's publisher as this node sees it: on a
// gateway the one publisherName elects, elsewhere the lowest-named alive
// gateway of the region (the global tier, which decides between gateways,
// is not visible from here).
func (a *Agent) publisherStatus() api.PublisherStatus {
	ps := api.PublisherStatus{Gateways: []string{}}
	for _, m := range a.tier.Members() { // sorted by name
		if m.State == "alive" && m.Region == a.cfg.Regional.Region && slices.Contains(m.Roles, "gateway") {
			ps.Gateways = append(ps.Gateways, m.Name)
		}
	}
	switch {
	case a.globalTier != nil:
		ps.Node = a.publisherName()
	case len(ps.Gateways) > 0:
		ps.Node = ps.Gateways[0]
	}
	return ps
}

// tiers lists the tiers this node belongs to, for /v1/members.
func (a *Agent) tiers() map[string]api.MemberLister {
	m := map[string]api.MemberLister{cluster.Regional: a.tier}
	if a.globalTier != nil {
		m[cluster.Global] = a.globalTier
	}
	return m
}

// reducerStatus is GET /v1/reducers: empty on a node that does not publish.
func (a *Agent) reducerStatus() any {
	if a.publisher == nil {
		return []reducer.Status{}
	}
	return a.publisher.Status()
}

// Ready reports whether the node has caught up with its peers: the
// regional tier, and the global tier on a gateway, have each finished a
// first exchange with a peer since start (or have no peer). It serves
// GET /v1/health?ready=1.
func (a *Agent) Ready() error {
	if err := a.tier.Ready(); err != nil {
		return err
	}
	if a.globalTier != nil {
		return a.globalTier.Ready()
	}
	return nil
}

var _ api.ReadyChecker = (*Agent)(nil)

// Global is the gateway's global store (nil on other nodes).
func (a *Agent) Global() *store.Store { return a.global }

// Publisher is the gateway's publisher (nil on other nodes).
func (a *Agent) Publisher() *publish.Publisher { return a.publisher }

// GlobalTier is the gateway's global tier (nil on other nodes).
func (a *Agent) GlobalTier() *cluster.Tier { return a.globalTier }

// advertisedAPI is the API address to publish to peers: the bound address,
// with an unspecified host (0.0.0.0, ::) replaced by the host this node
// gossips on.
func advertisedAPI(bound *net.TCPAddr, rc config.Regional) string {
	host := bound.IP.String()
	if bound.IP.IsUnspecified() {
		for _, hp := range []string{rc.Advertise, rc.Bind} {
			if h, _, err := net.SplitHostPort(hp); err == nil && h != "" && !net.ParseIP(h).IsUnspecified() {
				host = h
				break
			}
		}
	}
	return net.JoinHostPort(host, fmt.Sprint(bound.Port))
}

// loopbackGatewayAPI returns a warning when a gateway advertises a
// loopback API address to a regional tier that reaches other hosts: the
// region's other nodes forward global reads there, that is to their own
// loopback. "" when there is nothing to say.
func loopbackGatewayAPI(api string, rc config.Regional) string {
	h, _, err := net.SplitHostPort(api)
	if err != nil || !net.ParseIP(h).IsLoopback() {
		return ""
	}
	for _, hp := range []string{rc.Advertise, rc.Bind} {
		gh, _, err := net.SplitHostPort(hp)
		if err != nil || gh == "" {
			continue
		}
		if ip := net.ParseIP(gh); ip == nil || !ip.IsLoopback() {
			return fmt.Sprintf("this gateway advertises its API at %s, a loopback address, to a regional tier bound to %s: "+
				"the region's other hosts will forward global reads to their own loopback and fail; set api.addr to an address they reach", api, hp)
		}
		return ""
	}
	return ""
}

// gatewayAPIs returns the API addresses of the alive gateways of this
// region, for a node that is not one to forward global reads to.
func (a *Agent) gatewayAPIs() []string {
	var out []string
	for _, m := range a.tier.Members() {
		if m.State == "alive" && m.Name != a.cfg.Node && m.Region == a.cfg.Regional.Region && slices.Contains(m.Roles, "gateway") && m.API != "" {
			out = append(out, m.API)
		}
	}
	return out
}

// transport returns Options.Transport's transport for tier, or nil (the
// tier binds its own).
func (a *Agent) transport(tier string) (memberlist.NodeAwareTransport, error) {
	if a.opts.Transport == nil {
		return nil, nil
	}
	t, err := a.opts.Transport(tier)
	if err != nil {
		return nil, fmt.Errorf("%s tier transport: %w", tier, err)
	}
	return t, nil
}

// WireBytes returns the bytes a tier of this agent sent and received on
// the network.
func (a *Agent) WireBytes(tier string) (sent, received int64) { return a.metrics.TierWireBytes(tier) }

// Config is the agent's configuration.
func (a *Agent) Config() *config.Config { return a.cfg }

// reapLoop deletes tombstones older than tombstone_ttl from the stores,
// every ttl/24 (at least a minute apart, at most an hour).
func (a *Agent) reapLoop(ctx context.Context) {
	ttl := a.cfg.TombstoneTTL.Duration
	every := min(max(ttl/24, time.Minute), time.Hour)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		horizon := hlc.New(time.Now().Add(-ttl).UnixMilli(), 0)
		for name, st := range map[string]*store.Store{"regional": a.regional, "global": a.global} {
			if st == nil {
				continue
			}
			if n, err := st.Reap(ctx, horizon); err != nil {
				if ctx.Err() == nil {
					a.log.Warn("reaping tombstones", "tier", name, "err", err)
				}
			} else if n > 0 {
				a.log.Info("reaped tombstones", "tier", name, "count", n)
			}
		}
	}
}
