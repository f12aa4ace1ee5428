package config

import (
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Config is one agent's configuration: the decoded agent.toml with every
// default filled in. Parse, Load and Default return it validated; a Config
// built in code can be checked with Validate.
//
// The toml tags are the key names of agent.toml and are binding: docs/CONFIG.md
// and the deployments that use them depend on them.
type Config struct {
	// Node is this agent's name, unique across the fleet; it is the
	// memberlist node name on both tiers. No spaces or control characters.
	// Default: the host name (os.Hostname).
	Node string `toml:"node"`

	// Cluster names the deployment; it is part of every gossip label
	// (strata/<cluster>/regional/<region>, strata/<cluster>/global), so nodes
	// of different clusters never talk to each other. Lower-case letters,
	// digits and '-', at most 63 characters. Default: "default".
	Cluster string `toml:"cluster"`

	// DataDir is the directory holding the tiers' bbolt files, the known
	// peers and the reducer compile cache. A relative path is relative to the
	// config file's directory when loaded with Load. Default: "data".
	DataDir string `toml:"data_dir"`

	// MaxClockDrift is how far ahead of local time a remote HLC stamp may be;
	// a stamp further ahead is rejected and counted. Must be positive.
	// Default: 1m.
	MaxClockDrift Duration `toml:"max_clock_drift"`

	// TombstoneTTL is how long deleted rows are kept before they are reaped;
	// a node away for longer rejoins by a full state transfer. Must be longer
	// than the tiers' sync_interval. Default: 24h.
	TombstoneTTL Duration `toml:"tombstone_ttl"`

	// LogLevel is the minimum level logged: "debug", "info", "warn" or
	// "error". Default: "info".
	LogLevel string `toml:"log_level"`

	// LogFormat is how log records are written to standard error: "text"
	// (slog's key=value lines) or "json" (one JSON object per line).
	// Default: "text".
	LogFormat string `toml:"log_format"`

	// Contracts names the .proto files compiled at start-up.
	Contracts Contracts `toml:"contracts"`

	// Regional configures the region's gossip tier; every node is a member.
	Regional Regional `toml:"regional"`

	// Global configures the cross-region gossip tier. It is nil unless the
	// file has a [global] section, which makes this node a gateway.
	// Default: nil.
	Global *Global `toml:"global"`

	// API configures the HTTP API server.
	API API `toml:"api"`

	// Reducers are the Wasm plugins this node runs when it is its region's
	// publisher, one [[reducers]] entry each. Default: none.
	Reducers []Reducer `toml:"reducers"`
}

// Contracts is the [contracts] table: where the .proto contracts live.
type Contracts struct {
	// Dir is the import root of the contracts: imports in the .proto files
	// are resolved from it. A relative path is relative to the config file's
	// directory when loaded with Load. Default: "contracts".
	Dir string `toml:"dir"`

	// Files are the .proto files to compile, relative to Dir, for example
	// "fleet/v1/regional.proto". Required, at least one; no absolute paths
	// and no "..". Default: none.
	Files []string `toml:"files"`
}

// Regional is the [regional] table: this node's membership in its region's
// gossip tier (memberlist with LAN settings).
type Regional struct {
	// Region is the region this node belongs to, such as "ord"; it is part
	// of the tier's gossip label. Required. Lower-case letters, digits and
	// '-', at most 63 characters.
	Region string `toml:"region"`

	// Bind is the host:port the tier listens on, TCP and UDP. Port 0 picks a
	// free port. Default: "0.0.0.0:7946".
	Bind string `toml:"bind"`

	// Advertise is the host:port other members reach this node at. Empty
	// means the bind address, or the first private IP when bound to all
	// interfaces. Default: "".
	Advertise string `toml:"advertise"`

	// Join are host:port addresses of members to join at start-up, in
	// addition to the peers remembered in DataDir. Default: none (a new
	// cluster).
	Join []string `toml:"join"`

	// Keyring is a file of base64-encoded AES keys (16, 24 or 32 bytes), the
	// first being the primary; it encrypts and authenticates the tier's
	// gossip. Empty means no encryption. A relative path is relative to the config file's
	// directory when loaded with Load. Default: "".
	Keyring string `toml:"keyring"`

	// GossipInterval is the time between gossip rounds. Must be positive.
	// Default: 100ms.
	GossipInterval Duration `toml:"gossip_interval"`

	// GossipNodes is the number of random members each gossip round sends
	// to. At least 1. Default: 4.
	GossipNodes int `toml:"gossip_nodes"`

	// ProbeInterval is the time between failure-detection probes. Must be
	// positive. Default: 1s.
	ProbeInterval Duration `toml:"probe_interval"`

	// ProbeTimeout is how long a probe waits for an ack before asking other
	// members to probe indirectly. Must be positive and shorter than
	// ProbeInterval. Default: 500ms.
	ProbeTimeout Duration `toml:"probe_timeout"`

	// SyncInterval is the time between anti-entropy exchanges with a random
	// peer. Must be positive. Default: 10s.
	SyncInterval Duration `toml:"sync_interval"`

	// BroadcastQueue is the maximum number of changes queued for broadcast;
	// beyond it the oldest are dropped and anti-entropy repairs the gap.
	// At least 1. Default: 4096.
	BroadcastQueue int `toml:"broadcast_queue"`

	// FeedRetention is the number of change-feed entries kept for watchers
	// resuming with Last-Event-ID; older positions get a fresh snapshot.
	// At least 1. Default: 100000.
	FeedRetention int `toml:"feed_retention"`

	// PushFanout is the number of peers each committed change is pushed to
	// at once (eager peers of the broadcast tree). At least 1. Default: 3.
	PushFanout int `toml:"push_fanout"`

	// PushBatchDelay is how long a change waits for others to join its
	// batch to a peer before the batch is sent. Must be positive.
	// Default: 2ms.
	PushBatchDelay Duration `toml:"push_batch_delay"`

	// PushBatchSize sends a peer's batch at once when it reaches this
	// size. At least 1KiB. Default: 256KiB.
	PushBatchSize Size `toml:"push_batch_size"`

	// PushPeerBound is the most bytes queued for one peer; past it the
	// queue is dropped and the peer cut from the push set (it catches up
	// through announcements and anti-entropy). At least PushBatchSize.
	// Default: 8MiB.
	PushPeerBound Size `toml:"push_peer_bound"`
}

// Global is the [global] table: this node's membership in the cross-region
// gossip tier (memberlist with WAN settings). Only gateways have it.
type Global struct {
	// Bind is the host:port the tier listens on, TCP and UDP. It must differ
	// from the regional bind port on overlapping addresses. Port 0 picks a
	// free port. Default: "0.0.0.0:7947".
	Bind string `toml:"bind"`

	// Advertise is the host:port gateways in other regions reach this node
	// at. Empty means the bind address, or the first private IP when bound to
	// all interfaces. Default: "".
	Advertise string `toml:"advertise"`

	// Join are host:port addresses of gateways to join at start-up.
	// Default: none.
	Join []string `toml:"join"`

	// Keyring is the global tier's key file, in the same form as
	// Regional.Keyring; it must not be the same file. Default: "".
	Keyring string `toml:"keyring"`

	// RegionKey is this region's Ed25519 signing key, as written by
	// `strata keys gen-region REGION -o FILE`: every global change this
	// gateway writes is signed with it. Set together with TrustedRegions;
	// both empty leaves region identity unenforced (a start-up warning
	// says so). A relative path is relative to the config file's
	// directory when loaded with Load. Default: "".
	RegionKey string `toml:"region_key"`

	// TrustedRegions is a file of "REGION base64-public-key" lines: the
	// keys whose signatures this node accepts, each for its region (at most
	// two per region, during a rotation). A change not signed by a key of
	// the region that owns it is refused. It must list RegionKey's public
	// key for this region. A relative path is relative to the config
	// file's directory when loaded with Load. Default: "".
	TrustedRegions string `toml:"trusted_regions"`

	// StaleAfter is how old a region's heartbeat may be before readers see
	// that region's records as stale. Must be positive. Default: 30s.
	StaleAfter Duration `toml:"stale_after"`

	// GossipInterval is the time between gossip rounds. Must be positive.
	// Default: 200ms.
	GossipInterval Duration `toml:"gossip_interval"`

	// GossipNodes is the number of random members each gossip round sends
	// to. At least 1. Default: 3.
	GossipNodes int `toml:"gossip_nodes"`

	// ProbeInterval is the time between failure-detection probes. Must be
	// positive. Default: 5s.
	ProbeInterval Duration `toml:"probe_interval"`

	// ProbeTimeout is how long a probe waits for an ack. Must be positive
	// and shorter than ProbeInterval. Default: 3s.
	ProbeTimeout Duration `toml:"probe_timeout"`

	// SyncInterval is the time between anti-entropy exchanges with a random
	// gateway. Must be positive. Default: 30s.
	SyncInterval Duration `toml:"sync_interval"`

	// PushFanout is the number of peers each committed change is pushed to
	// at once (eager peers of the broadcast tree). At least 1. Default: 3.
	PushFanout int `toml:"push_fanout"`

	// PushBatchDelay is how long a change waits for others to join its
	// batch to a peer before the batch is sent. Must be positive.
	// Default: 2ms.
	PushBatchDelay Duration `toml:"push_batch_delay"`

	// PushBatchSize sends a peer's batch at once when it reaches this
	// size. At least 1KiB. Default: 256KiB.
	PushBatchSize Size `toml:"push_batch_size"`

	// PushPeerBound is the most bytes queued for one peer; past it the
	// queue is dropped and the peer cut from the push set (it catches up
	// through announcements and anti-entropy). At least PushBatchSize.
	// Default: 8MiB.
	PushPeerBound Size `toml:"push_peer_bound"`
}

// API is the [api] table: the HTTP API server.
type API struct {
	// Addr is the host:port the API listens on. Port 0 picks a free port.
	// Default: "127.0.0.1:7070".
	Addr string `toml:"addr"`

	// TokenFile is a file holding the bearer token clients must send. Empty
	// disables authentication. A relative path is relative to the config
	// file's directory when loaded with Load. Default: "".
	TokenFile string `toml:"token_file"`

	// MaxBody is the largest request body accepted, in bytes. Must be
	// positive. Default: 4MiB.
	MaxBody Size `toml:"max_body"`

	// ReadHeaderTimeout bounds reading a request's headers. Must be
	// positive. Default: 10s.
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`

	// ReadTimeout bounds reading a whole request, body included: a client
	// that sends headers and then no body is cut off after it. Must be
	// positive. Default: 30s.
	ReadTimeout Duration `toml:"read_timeout"`

	// WriteTimeout bounds writing an answer, from the end of reading the
	// request. Watch streams are exempt; they use WatchWriteTimeout per
	// event instead. Must be positive. Default: 30s.
	WriteTimeout Duration `toml:"write_timeout"`

	// IdleTimeout is how long a kept-alive connection may wait for its next
	// request. Must be positive. Default: 2m.
	IdleTimeout Duration `toml:"idle_timeout"`

	// MaxHeaderBytes bounds a request's headers (and request line), in
	// bytes. Must be positive. Default: 64KiB.
	MaxHeaderBytes Size `toml:"max_header_bytes"`

	// MaxConnections bounds the open API connections; further clients
	// wait in the listen backlog until one closes, so no client can
	// exhaust the agent's file descriptors. At least 1. Default: 512.
	MaxConnections int `toml:"max_connections"`

	// WatchHeartbeat is the interval of keep-alive comments on an idle
	// watch stream. Must be positive. Default: 15s.
	WatchHeartbeat Duration `toml:"watch_heartbeat"`

	// WatchWriteTimeout bounds each write of a watch stream: a client that
	// takes nothing for that long is cut off and resumes with
	// Last-Event-ID. Must be positive. Default: 30s.
	WatchWriteTimeout Duration `toml:"watch_write_timeout"`

	// WatchMaxLag is how many changes a watcher may fall behind the change
	// feed, while losing ground, before it is cut off; one that resumes
	// further behind gets "reset" and a new snapshot. At least 1.
	// Default: 10000.
	WatchMaxLag int `toml:"watch_max_lag"`

	// TrustedRegions is, on a node that is not a gateway, the file of the
	// regions' public keys (as [global] trusted_regions) that global reads
	// forwarded to a gateway are verified against before they are served.
	// Empty: forwarded answers are checked against the contract only. A
	// gateway uses [global] trusted_regions and must leave this empty. A
	// relative path is relative to the config file's directory when loaded
	// with Load. Default: "".
	TrustedRegions string `toml:"trusted_regions"`

	// PublicMetrics serves /metrics without the bearer token, for a
	// Prometheus that scrapes without credentials (/v1/health never needs
	// it). Default: false.
	PublicMetrics bool `toml:"public_metrics"`
}

// Reducer is one [[reducers]] entry: a Wasm module that projects the region's
// input rows into the region's global records.
type Reducer struct {
	// Name identifies the reducer in status, metrics and logs. Required,
	// unique among the reducers; lower-case letters, digits and '-', at most
	// 63 characters.
	Name string `toml:"name"`

	// Source is a Go main package directory, built to wasip1 and cached,
	// or a Rust crate directory (a Cargo.toml), built with cargo.
	// Exactly one of Source and Wasm is set. A relative path is relative to
	// the config file's directory when loaded with Load. Default: "".
	Source string `toml:"source,omitempty"`

	// Wasm is a prebuilt .wasm module file. Exactly one of Source and Wasm is
	// set. A relative path is relative to the config file's directory when
	// loaded with Load. Default: "".
	Wasm string `toml:"wasm,omitempty"`

	// Inputs are the regional tables whose rows the reducer reads; a change
	// to any of them triggers a run. Required, at least one.
	Inputs []string `toml:"inputs"`

	// Outputs are the global record types the reducer writes; it owns the
	// region's records of these types. Required, at least one.
	Outputs []string `toml:"outputs"`

	// Debounce is how long the publisher waits after an input change for
	// more changes before running the reducer. Zero runs at once; must not
	// be negative. Default: 250ms.
	Debounce Duration `toml:"debounce"`

	// Timeout bounds one run; a run that takes longer is cancelled and the
	// last good records stay published. Must be positive. Default: 2s.
	Timeout Duration `toml:"timeout"`

	// MemoryLimit bounds the module's linear memory, in bytes, rounded down
	// to whole 64KiB pages. From 64KiB to 4GiB. Default: 64MiB.
	MemoryLimit Size `toml:"memory_limit"`

	// MaxOutput bounds the encoded output of one run, in bytes. Must be
	// positive. Default: 4MiB.
	MaxOutput Size `toml:"max_output"`
}

// Defaults. Keep them in step with the field comments and docs/CONFIG.md.
const (
	defaultCluster       = "default"
	defaultDataDir       = "data"
	defaultMaxClockDrift = time.Minute
	defaultTombstoneTTL  = 24 * time.Hour
	defaultLogLevel      = "info"

	defaultContractsDir = "contracts"

	defaultRegionalBind           = "0.0.0.0:7946"
	defaultRegionalGossipInterval = 100 * time.Millisecond
	defaultRegionalGossipNodes    = 4
	defaultRegionalProbeInterval  = time.Second
	defaultRegionalProbeTimeout   = 500 * time.Millisecond
	defaultRegionalSyncInterval   = 10 * time.Second
	defaultBroadcastQueue         = 4096
	defaultFeedRetention          = 100000

	defaultPushFanout     = 3
	defaultPushBatchDelay = 2 * time.Millisecond
	defaultPushBatchSize  = 256 * KiB
	defaultPushPeerBound  = 8 * MiB

	defaultGlobalBind           = "0.0.0.0:7947"
	defaultStaleAfter           = DefaultStaleAfter
	defaultGlobalGossipInterval = 200 * time.Millisecond
	defaultGlobalGossipNodes    = 3
	defaultGlobalProbeInterval  = 5 * time.Second
	defaultGlobalProbeTimeout   = 3 * time.Second
	defaultGlobalSyncInterval   = 30 * time.Second

	defaultAPIAddr = "127.0.0.1:7070"
	defaultMaxBody = 4 * MiB

	defaultReadHeaderTimeout = 10 * time.Second
	defaultReadTimeout       = 30 * time.Second
	defaultWriteTimeout      = 30 * time.Second
	defaultIdleTimeout       = 2 * time.Minute
	defaultMaxHeaderBytes    = 64 * KiB
	defaultMaxConnections    = 512
	defaultWatchHeartbeat    = 15 * time.Second
	defaultWatchWriteTimeout = 30 * time.Second
	defaultWatchMaxLag       = 10000

	defaultDebounce    = 250 * time.Millisecond
	defaultTimeout     = 2 * time.Second
	defaultMemoryLimit = 64 * MiB
	defaultMaxOutput   = 4 * MiB
)

// hostname is os.Hostname, replaceable in tests.
var hostname = os.Hostname

// defaulter is implemented by the table types; decoding starts every table
// from its defaults so that a key left out keeps its default and a key
// written out, even as a zero value, is validated as written.
type defaulter interface {
	setDefaults()
}

var (
	_ defaulter = (*Config)(nil)
	_ defaulter = (*Contracts)(nil)
	_ defaulter = (*Regional)(nil)
	_ defaulter = (*Global)(nil)
	_ defaulter = (*API)(nil)
	_ defaulter = (*Reducer)(nil)
)

func (c *Config) setDefaults() {
	*c = Config{
		Cluster:       defaultCluster,
		DataDir:       defaultDataDir,
		MaxClockDrift: Duration{defaultMaxClockDrift},
		TombstoneTTL:  Duration{defaultTombstoneTTL},
		LogLevel:      defaultLogLevel,
		LogFormat:     "text",
	}
	if h, err := hostname(); err == nil {
		c.Node = h // else Validate reports node as missing
	}
	c.Contracts.setDefaults()
	c.Regional.setDefaults()
	c.API.setDefaults()
}

func (c *Contracts) setDefaults() {
	*c = Contracts{Dir: defaultContractsDir}
}

func (r *Regional) setDefaults() {
	*r = Regional{
		Bind:           defaultRegionalBind,
		GossipInterval: Duration{defaultRegionalGossipInterval},
		GossipNodes:    defaultRegionalGossipNodes,
		ProbeInterval:  Duration{defaultRegionalProbeInterval},
		ProbeTimeout:   Duration{defaultRegionalProbeTimeout},
		SyncInterval:   Duration{defaultRegionalSyncInterval},
		BroadcastQueue: defaultBroadcastQueue,
		FeedRetention:  defaultFeedRetention,
		PushFanout:     defaultPushFanout,
		PushBatchDelay: Duration{defaultPushBatchDelay},
		PushBatchSize:  defaultPushBatchSize,
		PushPeerBound:  defaultPushPeerBound,
	}
}

// DefaultStaleAfter is global.stale_after when not set; a node without
// [global] uses it for the global reads it forwards to its gateways.
const DefaultStaleAfter = 30 * time.Second

func (g *Global) setDefaults() {
	*g = Global{
		Bind:           defaultGlobalBind,
		StaleAfter:     Duration{defaultStaleAfter},
		GossipInterval: Duration{defaultGlobalGossipInterval},
		GossipNodes:    defaultGlobalGossipNodes,
		ProbeInterval:  Duration{defaultGlobalProbeInterval},
		ProbeTimeout:   Duration{defaultGlobalProbeTimeout},
		SyncInterval:   Duration{defaultGlobalSyncInterval},
		PushFanout:     defaultPushFanout,
		PushBatchDelay: Duration{defaultPushBatchDelay},
		PushBatchSize:  defaultPushBatchSize,
		PushPeerBound:  defaultPushPeerBound,
	}
}

func (a *API) setDefaults() {
	*a = API{Addr: defaultAPIAddr, MaxBody: defaultMaxBody,
		ReadHeaderTimeout: Duration{defaultReadHeaderTimeout}, ReadTimeout: Duration{defaultReadTimeout},
		WriteTimeout: Duration{defaultWriteTimeout}, IdleTimeout: Duration{defaultIdleTimeout},
		MaxHeaderBytes: defaultMaxHeaderBytes, MaxConnections: defaultMaxConnections,
		WatchHeartbeat: Duration{defaultWatchHeartbeat}, WatchWriteTimeout: Duration{defaultWatchWriteTimeout},
		WatchMaxLag: defaultWatchMaxLag}
}

func (r *Reducer) setDefaults() {
	*r = Reducer{
		Debounce:    Duration{defaultDebounce},
		Timeout:     Duration{defaultTimeout},
		MemoryLimit: defaultMemoryLimit,
		MaxOutput:   defaultMaxOutput,
	}
}

// Resolve makes the relative file paths in c relative to base, the directory
// of the config file, so that the agent finds them whatever its working
// directory: data_dir, contracts.dir, the keyrings, api.token_file and each
// reducer's source or wasm. Absolute and empty paths are left alone, and so
// are contracts.files, which are relative to contracts.dir. Load calls it;
// Parse and Default do not.
func (c *Config) Resolve(base string) {
	resolve := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	resolve(&c.DataDir)
	resolve(&c.Contracts.Dir)
	resolve(&c.Regional.Keyring)
	if c.Global != nil {
		resolve(&c.Global.Keyring)
		resolve(&c.Global.RegionKey)
		resolve(&c.Global.TrustedRegions)
	}
	resolve(&c.API.TokenFile)
	resolve(&c.API.TrustedRegions)
	for i := range c.Reducers {
		resolve(&c.Reducers[i].Source)
		resolve(&c.Reducers[i].Wasm)
	}
}

// Level returns LogLevel as a slog.Level. A LogLevel that Validate would
// reject gives slog.LevelInfo.
func (c *Config) Level() slog.Level {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
