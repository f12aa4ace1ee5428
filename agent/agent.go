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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/hlc"
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
	a := &Agent{cfg: cfg, log: opts.Logger}
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
	})
	if err != nil {
		return nil, err
	}

	token, err := readToken(cfg.API.TokenFile)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	keys, err := cluster.LoadKeyring(cfg.Regional.Keyring)
	if err != nil {
		return nil, fmt.Errorf("regional.keyring: %w", err)
	}
	var roles []string
	if cfg.Global != nil {
		roles = append(roles, "gateway")
	}
	rc := cfg.Regional
	a.tier, err = cluster.New(cluster.Config{
		Node: cfg.Node, Tier: cluster.Regional, Cluster: cfg.Cluster, Region: rc.Region,
		Bind: rc.Bind, Advertise: rc.Advertise, Join: rc.Join, Keys: keys,
		GossipInterval: rc.GossipInterval.Duration, GossipNodes: rc.GossipNodes,
		ProbeInterval: rc.ProbeInterval.Duration, ProbeTimeout: rc.ProbeTimeout.Duration,
		SyncInterval: rc.SyncInterval.Duration, QueueLimit: rc.BroadcastQueue,
		Meta:      cluster.Meta{Region: rc.Region, Roles: roles, API: cfg.API.Addr},
		PeersFile: filepath.Join(cfg.DataDir, "peers-regional.json"),
		Accept:    acceptRegional(a.contract),
		Logger:    a.log,
		Metrics:   cluster.NewMetrics(reg),
	}, a.regional)
	if err != nil {
		return nil, fmt.Errorf("regional tier: %w", err)
	}
	srv := api.New(api.Options{
		Contract: a.contract,
		Regional: a.regional,
		Node:     cfg.Node,
		Region:   cfg.Regional.Region,
		Cluster:  cfg.Cluster,
		Version:  opts.Version,
		Token:    token,
		MaxBody:  int64(cfg.API.MaxBody),
		Registry: reg,
		Logger:   a.log,
		Tiers:    map[string]api.MemberLister{cluster.Regional: a.tier},
	})
	a.listener, err = net.Listen("tcp", cfg.API.Addr)
	if err != nil {
		return nil, fmt.Errorf("api.addr: %w", err)
	}
	a.server = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	return a, nil
}

// readToken reads the bearer token file; an empty path disables auth.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
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
	errc := make(chan error, 1)
	go func() { errc <- a.server.Serve(a.listener) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	a.log.Info("strata agent stopping")
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if serr := a.server.Shutdown(sctx); serr != nil && err == nil && !errors.Is(serr, context.DeadlineExceeded) {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	a.close()
	return err
}

// close releases what New opened. The tier leaves first, so peers learn
// at once that this node is going, then the store closes.
func (a *Agent) close() {
	if a.listener != nil {
		a.listener.Close()
	}
	if a.tier != nil {
		if err := a.tier.Close(); err != nil {
			a.log.Warn("leaving the regional tier", "err", err)
		}
	}
	if a.regional != nil {
		if err := a.regional.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			a.log.Error("closing regional store", "err", err)
		}
	}
}
