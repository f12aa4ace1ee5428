package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
)

// Validate checks c as Parse does after decoding: required keys, the forms
// of names and addresses, ranges, and rules across keys such as distinct
// ports and unique reducer names. It is for a Config built or changed in
// code; the *Error it returns has no file names or lines.
func (c *Config) Validate() error {
	fs := validate(c)
	if len(fs) == 0 {
		return nil
	}
	e := &Error{}
	for _, f := range fs {
		e.Problems = append(e.Problems, f.Problem)
	}
	return e
}

// finding is a Problem without file or line, and the keys whose line it
// should be reported at, first written first.
type finding struct {
	Problem
	at []string
}

// validate returns the problems of c. It is a pure function of c.
func validate(c *Config) []finding {
	v := &validator{}
	v.top(c)
	v.contracts(&c.Contracts)
	v.regional(&c.Regional)
	if c.Global != nil && c.API.TrustedRegions != "" {
		v.bad("api.trusted_regions", "is for nodes that are not gateways; a gateway uses global.trusted_regions")
	}
	if c.Global != nil {
		v.global(c.Global, &c.Regional)
	}
	v.api(c)
	v.reducers(c.Reducers)
	return v.problems
}

type validator struct {
	problems []finding
}

func (v *validator) bad(key, format string, args ...any) {
	v.badAt([]string{key}, format, args...)
}

// badAt records a problem with keys[0] at the line of the first of keys
// written in the file.
func (v *validator) badAt(keys []string, format string, args ...any) {
	v.problems = append(v.problems, finding{
		Problem: Problem{Key: keys[0], Msg: fmt.Sprintf(format, args...), Kind: ErrInvalid},
		at:      keys,
	})
}

func (v *validator) top(c *Config) {
	switch {
	case c.Node == "":
		v.bad("node", `missing, and the host name is not available; set a name unique in the fleet, e.g. node = "ord-1"`)
	case strings.ContainsFunc(c.Node, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }):
		v.bad("node", "invalid node name %q (no spaces or control characters)", c.Node)
	}
	v.name("cluster", c.Cluster, "prod")
	if c.DataDir == "" {
		v.bad("data_dir", `missing; set the directory for the agent's data, e.g. data_dir = "data"`)
	}
	v.positive("max_clock_drift", c.MaxClockDrift)
	v.positive("tombstone_ttl", c.TombstoneTTL)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.bad("log_level", `invalid level %q (want "debug", "info", "warn" or "error")`, c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		v.bad("log_format", `invalid format %q (want "text" or "json")`, c.LogFormat)
	}
	// A tombstone reaped before anti-entropy has spread it lets the deleted
	// row come back from a peer that missed the delete.
	if c.TombstoneTTL.Duration > 0 && c.TombstoneTTL.Duration <= c.Regional.SyncInterval.Duration {
		v.bad("tombstone_ttl", "%s is not longer than regional.sync_interval (%s); deletes could be undone", c.TombstoneTTL, c.Regional.SyncInterval)
	}
	if c.Global != nil && c.TombstoneTTL.Duration > 0 && c.TombstoneTTL.Duration <= c.Global.SyncInterval.Duration {
		v.bad("tombstone_ttl", "%s is not longer than global.sync_interval (%s); deletes could be undone", c.TombstoneTTL, c.Global.SyncInterval)
	}
}

func (v *validator) contracts(c *Contracts) {
	if c.Dir == "" {
		v.bad("contracts.dir", `missing; set the contracts' import root, e.g. dir = "contracts"`)
	}
	if len(c.Files) == 0 {
		v.bad("contracts.files", `missing; list the .proto files to compile, relative to contracts.dir, e.g. files = ["fleet/v1/regional.proto"]`)
	}
	seen := map[string]bool{}
	for i, f := range c.Files {
		key := index("contracts.files", i)
		switch {
		case !filepath.IsLocal(f) || strings.Contains(f, `\`):
			v.bad(key, "invalid file %q (want a path relative to contracts.dir, with / and no ..)", f)
		case !strings.HasSuffix(f, ".proto"):
			v.bad(key, "invalid file %q (want a .proto file)", f)
		case seen[f]:
			v.bad(key, "%q is listed twice", f)
		}
		seen[f] = true
	}
}

func (v *validator) regional(r *Regional) {
	if r.Region == "" {
		v.bad("regional.region", `missing; set this node's region, e.g. region = "ord"`)
	} else {
		v.name("regional.region", r.Region, "ord")
	}
	v.tier(r.tier())
	v.atLeastOne("regional.broadcast_queue", r.BroadcastQueue)
	v.atLeastOne("regional.feed_retention", r.FeedRetention)
}

func (v *validator) global(g *Global, r *Regional) {
	v.tier(g.tier())
	v.positive("global.stale_after", g.StaleAfter)
	if g.Keyring != "" && filepath.Clean(g.Keyring) == filepath.Clean(r.Keyring) {
		v.bad("global.keyring", "%q is also regional.keyring; each tier needs its own key, so that no node can cross tiers", g.Keyring)
	}
	switch {
	case g.RegionKey != "" && g.TrustedRegions == "":
		v.bad("global.region_key", "is set without global.trusted_regions; set both to enforce region identity, or neither")
	case g.RegionKey == "" && g.TrustedRegions != "":
		v.bad("global.trusted_regions", "is set without global.region_key; a gateway that checks region identity must sign its own writes")
	}
}

// tier holds the keys that the regional and global tables share.
type tier struct {
	name                                        string
	bind, advertise                             string
	join                                        []string
	gossipInterval, probeInterval, probeTimeout Duration
	syncInterval                                Duration
	gossipNodes                                 int
	pushFanout                                  int
	pushBatchDelay                              Duration
	pushBatchSize, pushPeerBound                Size
}

func (r *Regional) tier() tier {
	return tier{
		name: "regional", bind: r.Bind, advertise: r.Advertise, join: r.Join,
		gossipInterval: r.GossipInterval, gossipNodes: r.GossipNodes,
		probeInterval: r.ProbeInterval, probeTimeout: r.ProbeTimeout, syncInterval: r.SyncInterval,
		pushFanout: r.PushFanout, pushBatchDelay: r.PushBatchDelay, pushBatchSize: r.PushBatchSize, pushPeerBound: r.PushPeerBound,
	}
}

func (g *Global) tier() tier {
	return tier{
		name: "global", bind: g.Bind, advertise: g.Advertise, join: g.Join,
		gossipInterval: g.GossipInterval, gossipNodes: g.GossipNodes,
		probeInterval: g.ProbeInterval, probeTimeout: g.ProbeTimeout, syncInterval: g.SyncInterval,
		pushFanout: g.PushFanout, pushBatchDelay: g.PushBatchDelay, pushBatchSize: g.PushBatchSize, pushPeerBound: g.PushPeerBound,
	}
}

func (v *validator) tier(t tier) {
	v.addr(t.name+".bind", t.bind, listenAddr)
	if t.advertise != "" {
		v.addr(t.name+".advertise", t.advertise, peerAddr)
	}
	for i, j := range t.join {
		v.addr(index(t.name+".join", i), j, peerAddr)
	}
	v.positive(t.name+".gossip_interval", t.gossipInterval)
	v.atLeastOne(t.name+".gossip_nodes", t.gossipNodes)
	v.positive(t.name+".probe_interval", t.probeInterval)
	v.positive(t.name+".probe_timeout", t.probeTimeout)
	if t.probeTimeout.Duration > 0 && t.probeTimeout.Duration >= t.probeInterval.Duration {
		v.bad(t.name+".probe_timeout", "%s is not shorter than %s.probe_interval (%s); a probe must time out before the next one starts", t.probeTimeout, t.name, t.probeInterval)
	}
	v.positive(t.name+".sync_interval", t.syncInterval)
	v.atLeastOne(t.name+".push_fanout", t.pushFanout)
	v.positive(t.name+".push_batch_delay", t.pushBatchDelay)
	if t.pushBatchSize < KiB {
		v.bad(t.name+".push_batch_size", "%s is less than 1KiB", t.pushBatchSize)
	}
	if t.pushPeerBound < t.pushBatchSize {
		v.bad(t.name+".push_peer_bound", "%s is less than %s.push_batch_size (%s); a peer must be able to queue one batch", t.pushPeerBound, t.name, t.pushBatchSize)
	}
}

func (v *validator) api(c *Config) {
	v.addr("api.addr", c.API.Addr, listenAddr)
	if c.API.MaxBody == 0 {
		v.bad("api.max_body", "must be positive")
	}
	if c.API.MaxHeaderBytes == 0 {
		v.bad("api.max_header_bytes", "must be positive")
	}
	v.positive("api.read_header_timeout", c.API.ReadHeaderTimeout)
	v.positive("api.read_timeout", c.API.ReadTimeout)
	v.positive("api.write_timeout", c.API.WriteTimeout)
	v.positive("api.idle_timeout", c.API.IdleTimeout)
	v.positive("api.watch_heartbeat", c.API.WatchHeartbeat)
	v.positive("api.watch_write_timeout", c.API.WatchWriteTimeout)
	v.atLeastOne("api.max_connections", c.API.MaxConnections)
	v.atLeastOne("api.watch_max_lag", c.API.WatchMaxLag)

	// Every listener needs its own port where the addresses overlap. The
	// tiers use TCP and UDP, the API TCP: all three collide on TCP.
	listeners := []struct{ key, addr string }{{"regional.bind", c.Regional.Bind}}
	if c.Global != nil {
		listeners = append(listeners, struct{ key, addr string }{"global.bind", c.Global.Bind})
	}
	listeners = append(listeners, struct{ key, addr string }{"api.addr", c.API.Addr})
	for j := range listeners {
		for i := range j {
			a, b := listeners[i], listeners[j]
			if port, clash := sameListener(a.addr, b.addr); clash {
				v.badAt([]string{b.key, a.key}, "port %s is also the port of %s (%q) on an overlapping address; give each its own port", port, a.key, a.addr)
				break
			}
		}
	}
}

func (v *validator) reducers(rs []Reducer) {
	first := map[string]int{}
	for i := range rs {
		r := &rs[i]
		key := func(k string) string { return index("reducers", i) + "." + k }
		switch j, dup := first[r.Name]; {
		case r.Name == "":
			v.bad(key("name"), `missing; name the reducer, e.g. name = "app-regions"`)
		case dup:
			v.bad(key("name"), "duplicate reducer name %q (also reducers[%d]); names must be unique", r.Name, j)
		default:
			v.name(key("name"), r.Name, "app-regions")
			first[r.Name] = i
		}
		switch {
		case r.Source == "" && r.Wasm == "":
			v.bad(key("source"), `missing source or wasm; set source = "plugins/<name>" (a Go package dir) or wasm = "<file>.wasm"`)
		case r.Source != "" && r.Wasm != "":
			v.bad(key("wasm"), "both source and wasm are set; set exactly one")
		}
		v.list(key("inputs"), r.Inputs, `inputs = ["machines"]`)
		v.list(key("outputs"), r.Outputs, `outputs = ["app_placements"]`)
		if r.Debounce.Duration < 0 {
			v.bad(key("debounce"), "%s is negative; use 0s for no debounce", r.Debounce)
		}
		v.positive(key("timeout"), r.Timeout)
		if r.MemoryLimit < 64*KiB || r.MemoryLimit > 4*GiB {
			v.bad(key("memory_limit"), "%s is out of range (want 64KiB to 4GiB: whole 64KiB Wasm pages, up to the 32-bit address space)", r.MemoryLimit)
		}
		if r.MaxOutput == 0 {
			v.bad(key("max_output"), "must be positive")
		}
	}
}

// list checks a required list of names, such as a reducer's inputs.
func (v *validator) list(key string, items []string, example string) {
	if len(items) == 0 {
		v.bad(key, "missing; list at least one, e.g. %s", example)
	}
	seen := map[string]bool{}
	for i, s := range items {
		switch {
		case s == "":
			v.bad(index(key, i), "empty name")
		case seen[s]:
			v.bad(index(key, i), "%q is listed twice", s)
		}
		seen[s] = true
	}
}

// name checks a name that goes into gossip labels, metrics and paths.
func (v *validator) name(key, s, example string) {
	ok := s != "" && len(s) <= 63
	for i := 0; i < len(s) && ok; i++ {
		c := s[i]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-'
	}
	if !ok {
		v.bad(key, "invalid name %q (want lower-case letters, digits and '-', at most 63 characters, e.g. %q)", s, example)
	}
}

func (v *validator) positive(key string, d Duration) {
	if d.Duration <= 0 {
		v.bad(key, "must be positive, got %s", d)
	}
}

func (v *validator) atLeastOne(key string, n int) {
	if n < 1 {
		v.bad(key, "%d is less than 1", n)
	}
}

// addrKind says what an address is for, which decides what it may be.
type addrKind int

const (
	// listenAddr is an address to listen on: the host may be empty or
	// 0.0.0.0 (all interfaces) and port 0 picks a free port.
	listenAddr addrKind = iota
	// peerAddr is an address others connect to: it needs a host that is not
	// 0.0.0.0 and a port from 1.
	peerAddr
)

func (v *validator) addr(key, s string, kind addrKind) {
	example := `"0.0.0.0:7946"`
	if kind == peerAddr {
		example = `"ord-2.internal:7946"`
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.bad(key, "invalid address %q (want host:port, e.g. %s)", s, example)
		return
	}
	n, err := strconv.ParseUint(port, 10, 16)
	switch {
	case err != nil:
		v.bad(key, "invalid port in %q (want a number from 0 to 65535)", s)
	case kind == peerAddr && n == 0:
		v.bad(key, "invalid port in %q (want a number from 1 to 65535)", s)
	case kind == peerAddr && unspecifiedHost(host):
		v.bad(key, "%q has no host others can reach (want host:port, e.g. %s)", s, example)
	}
}

// unspecifiedHost reports whether host means all interfaces.
func unspecifiedHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// sameListener reports whether listening on a and on b would take the same
// port: the ports are equal and not 0 and the hosts are equal or one is all
// interfaces. Addresses that do not parse are reported elsewhere.
func sameListener(a, b string) (port string, clash bool) {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return "", false
	}
	na, errA := strconv.ParseUint(pa, 10, 16)
	nb, errB := strconv.ParseUint(pb, 10, 16)
	if errA != nil || errB != nil || na != nb || na == 0 {
		return "", false
	}
	return pa, ha == hb || unspecifiedHost(ha) || unspecifiedHost(hb)
}
