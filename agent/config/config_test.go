package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// minimal is the smallest valid agent.toml: only the required keys.
const minimal = `
[contracts]
files = ["fleet/v1/regional.proto"]

[regional]
region = "ord"
`

// stubHostname makes the default node name "host-1" for the test.
func stubHostname(t *testing.T) {
	t.Helper()
	old := hostname
	hostname = func() (string, error) { return "host-1", nil }
	t.Cleanup(func() { hostname = old })
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse([]byte(src), "agent.toml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestDefault(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	want := &Config{
		Node:          "local-1",
		Cluster:       "dev",
		DataDir:       "data",
		MaxClockDrift: Duration{time.Minute},
		TombstoneTTL:  Duration{24 * time.Hour},
		LogLevel:      "info",
		LogFormat:     "text",
		Contracts: Contracts{
			Dir:   "contracts",
			Files: []string{"fleet/v1/regional.proto", "fleet/v1/global.proto"},
		},
		Regional: defaultRegional("local"),
		API:      defaultAPI(),
	}
	want.Regional.Bind = "127.0.0.1:7946"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", c, want)
	}
}

func defaultRegional(region string) Regional {
	return Regional{
		Region:         region,
		Bind:           "0.0.0.0:7946",
		GossipInterval: Duration{100 * time.Millisecond},
		GossipNodes:    4,
		ProbeInterval:  Duration{time.Second},
		ProbeTimeout:   Duration{500 * time.Millisecond},
		SyncInterval:   Duration{10 * time.Second},
		BroadcastQueue: 4096,
		FeedRetention:  100000,
		PushFanout:     3,
		PushBatchDelay: Duration{2 * time.Millisecond},
		PushBatchSize:  256 * KiB,
		PushPeerBound:  8 * MiB,
	}
}

// TestDefaultsFilled spells out every default, so that changing one is a
// visible decision (and docs/CONFIG.md must follow).
func TestDefaultsFilled(t *testing.T) {
	stubHostname(t)
	c := mustParse(t, minimal+`
[global]

[[reducers]]
name = "r"
wasm = "r.wasm"
inputs = ["machines"]
outputs = ["placements"]
`)
	want := &Config{
		Node:          "host-1",
		Cluster:       "default",
		DataDir:       "data",
		MaxClockDrift: Duration{time.Minute},
		TombstoneTTL:  Duration{24 * time.Hour},
		LogLevel:      "info",
		LogFormat:     "text",
		Contracts:     Contracts{Dir: "contracts", Files: []string{"fleet/v1/regional.proto"}},
		Regional:      defaultRegional("ord"),
		Global: &Global{
			Bind:           "0.0.0.0:7947",
			StaleAfter:     Duration{30 * time.Second},
			GossipInterval: Duration{200 * time.Millisecond},
			GossipNodes:    3,
			ProbeInterval:  Duration{5 * time.Second},
			ProbeTimeout:   Duration{3 * time.Second},
			SyncInterval:   Duration{30 * time.Second},
			PushFanout:     3,
			PushBatchDelay: Duration{2 * time.Millisecond},
			PushBatchSize:  256 * KiB,
			PushPeerBound:  8 * MiB,
		},
		API: defaultAPI(),
		Reducers: []Reducer{{
			Name:        "r",
			Wasm:        "r.wasm",
			Inputs:      []string{"machines"},
			Outputs:     []string{"placements"},
			Debounce:    Duration{250 * time.Millisecond},
			Timeout:     Duration{2 * time.Second},
			MemoryLimit: 64 * MiB,
			MaxOutput:   4 * MiB,
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", c, want)
	}

	// Without [global] the node is not a gateway.
	if c := mustParse(t, minimal); c.Global != nil {
		t.Errorf("Global = %+v without a [global] section, want nil", c.Global)
	}
}

func TestDefaultNodeWithoutHostname(t *testing.T) {
	old := hostname
	hostname = func() (string, error) { return "", errors.New("no hostname") }
	t.Cleanup(func() { hostname = old })

	_, err := Parse([]byte(minimal), "agent.toml")
	assertProblems(t, err, `agent.toml: node: missing, and the host name is not available; set a name unique in the fleet, e.g. node = "ord-1"`)
}

func TestFull(t *testing.T) {
	c, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{
		Node:          "ord-1",
		Cluster:       "prod",
		DataDir:       "/var/lib/strata",
		MaxClockDrift: Duration{30 * time.Second},
		TombstoneTTL:  Duration{48 * time.Hour},
		LogLevel:      "debug",
		LogFormat:     "text",
		Contracts: Contracts{
			Dir:   filepath.Join("testdata", "contracts"),
			Files: []string{"fleet/v1/regional.proto", "fleet/v1/global.proto"},
		},
		Regional: Regional{
			Region:         "ord",
			Bind:           "10.0.0.1:7946",
			Advertise:      "10.0.0.1:7946",
			Join:           []string{"ord-2.internal:7946", "ord-3.internal:7946"},
			Keyring:        filepath.Join("testdata", "keys/regional.key"),
			GossipInterval: Duration{150 * time.Millisecond},
			GossipNodes:    5,
			ProbeInterval:  Duration{2 * time.Second},
			ProbeTimeout:   Duration{time.Second},
			SyncInterval:   Duration{20 * time.Second},
			BroadcastQueue: 8192,
			FeedRetention:  50000,
			PushFanout:     4,
			PushBatchDelay: Duration{5 * time.Millisecond},
			PushBatchSize:  64 * KiB,
			PushPeerBound:  16 * MiB,
		},
		Global: &Global{
			Bind:           "10.0.0.1:7947",
			Advertise:      "203.0.113.7:7947",
			Join:           []string{"ams-1.example.net:7947"},
			Keyring:        filepath.Join("testdata", "keys/global.key"),
			StaleAfter:     Duration{time.Minute},
			GossipInterval: Duration{300 * time.Millisecond},
			GossipNodes:    2,
			ProbeInterval:  Duration{10 * time.Second},
			ProbeTimeout:   Duration{4 * time.Second},
			SyncInterval:   Duration{time.Minute},
			PushFanout:     3,
			PushBatchDelay: Duration{2 * time.Millisecond},
			PushBatchSize:  256 * KiB,
			PushPeerBound:  8 * MiB,
		},
		API: API{Addr: "0.0.0.0:8080", TokenFile: "/etc/strata/token", MaxBody: 8 * MiB,
			ReadHeaderTimeout: Duration{5 * time.Second}, ReadTimeout: Duration{20 * time.Second},
			WriteTimeout: Duration{40 * time.Second}, IdleTimeout: Duration{time.Minute},
			MaxHeaderBytes: 32 * KiB, MaxConnections: 256,
			WatchHeartbeat: Duration{10 * time.Second}, WatchWriteTimeout: Duration{20 * time.Second}, WatchMaxLag: 5000},
		Reducers: []Reducer{
			{
				Name:        "app-regions",
				Source:      filepath.Join("testdata", "plugins/app-regions"),
				Inputs:      []string{"machines"},
				Outputs:     []string{"app_placements"},
				Debounce:    Duration{500 * time.Millisecond},
				Timeout:     Duration{3 * time.Second},
				MemoryLimit: 128 * MiB,
				MaxOutput:   MiB,
			},
			{
				Name:        "capacity",
				Wasm:        filepath.Join("testdata", "plugins/capacity.wasm"),
				Inputs:      []string{"machines", "volumes"},
				Outputs:     []string{"region_capacity"},
				Debounce:    Duration{},
				Timeout:     Duration{500 * time.Millisecond},
				MemoryLimit: 16 * MiB,
				MaxOutput:   512 * KiB,
			},
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", c, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want an error matching os.ErrNotExist", err)
	}
}

func TestLoadReportsPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(path, []byte(minimal+"gosip = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	assertProblems(t, err, path+`:7: unknown key "gosip" in [regional]`)
}

func TestResolve(t *testing.T) {
	c := &Config{
		DataDir:   "data",
		Contracts: Contracts{Dir: "/abs/contracts", Files: []string{"a.proto"}},
		Regional:  Regional{Keyring: "keys/r.key"},
		Global:    &Global{Keyring: ""},
		API:       API{TokenFile: "./token"},
		Reducers:  []Reducer{{Source: "plugins/x"}, {Wasm: "../x.wasm"}},
	}
	c.Resolve("/etc/strata")
	want := &Config{
		DataDir:   "/etc/strata/data",
		Contracts: Contracts{Dir: "/abs/contracts", Files: []string{"a.proto"}},
		Regional:  Regional{Keyring: "/etc/strata/keys/r.key"},
		Global:    &Global{Keyring: ""},
		API:       API{TokenFile: "/etc/strata/token"},
		Reducers:  []Reducer{{Source: "/etc/strata/plugins/x"}, {Wasm: "/etc/x.wasm"}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Resolve =\n%+v\nwant\n%+v", c, want)
	}
}

func TestParseLeavesPaths(t *testing.T) {
	c := mustParse(t, `data_dir = "d"`+minimal)
	if c.DataDir != "d" || c.Contracts.Dir != "contracts" {
		t.Errorf("Parse resolved paths: data_dir %q, contracts.dir %q", c.DataDir, c.Contracts.Dir)
	}
}

func TestLevel(t *testing.T) {
	for _, level := range []string{"debug", "info", "warn", "error"} {
		c := &Config{LogLevel: level}
		if got := c.Level().String(); got != map[string]string{"debug": "DEBUG", "info": "INFO", "warn": "WARN", "error": "ERROR"}[level] {
			t.Errorf("Level() for %q = %s", level, got)
		}
	}
}

// defaultAPI is the [api] table with every default, written out as
// docs/CONFIG.md states them (not from setDefaults, which it checks).
func defaultAPI() API {
	return API{Addr: "127.0.0.1:7070", MaxBody: 4 << 20,
		ReadHeaderTimeout: Duration{10 * time.Second}, ReadTimeout: Duration{30 * time.Second},
		WriteTimeout: Duration{30 * time.Second}, IdleTimeout: Duration{2 * time.Minute},
		MaxHeaderBytes: 64 << 10, MaxConnections: 512,
		WatchHeartbeat: Duration{15 * time.Second}, WatchWriteTimeout: Duration{30 * time.Second},
		WatchMaxLag: 10000}
}
