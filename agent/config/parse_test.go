package config

import (
	"errors"
	"strings"
	"testing"
)

// assertProblems checks that err is an *Error with exactly the problems
// want, as formatted by Problem.Error, in order.
func assertProblems(t *testing.T, err error, want ...string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *Error with %q", err, err, want)
	}
	var got []string
	for i := range e.Problems {
		got = append(got, e.Problems[i].Error())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if e.Error() != strings.Join(got, "\n") {
		t.Errorf("Error() = %q, want the problems one a line", e.Error())
	}
}

func TestParseProblems(t *testing.T) {
	stubHostname(t)
	tests := []struct {
		name string
		src  string
		want []string
		kind error
	}{
		{
			name: "unknown key at top level",
			src: `node = "a"
x = 1
` + minimal,
			want: []string{`agent.toml:2: unknown key "x"`},
			kind: ErrUnknownKey,
		},
		{
			name: "unknown key in regional",
			src: `[contracts]
files = ["a.proto"]

[regional]
region = "ord"
bind = "0.0.0.0:7946"
gosip = 3
`,
			want: []string{`agent.toml:7: unknown key "gosip" in [regional]`},
			kind: ErrUnknownKey,
		},
		{
			name: "unknown key in second reducer",
			src: minimal + `
[[reducers]]
name = "a"
wasm = "a.wasm"
inputs = ["machines"]
outputs = ["placements"]

[[reducers]]
name = "b"
wasm = "b.wasm"
inputs = ["machines"]
outputs = ["placements"]
timout = "1s"
`,
			want: []string{`agent.toml:19: unknown key "timout" in reducers[1]; did you mean "timeout"?`},
			kind: ErrUnknownKey,
		},
		{
			name: "unknown key in global",
			src: minimal + `
[global]
bind = "0.0.0.0:7947"
region = "ord"
`,
			want: []string{`agent.toml:10: unknown key "region" in [global]`},
			kind: ErrUnknownKey,
		},
		{
			name: "key in the wrong case",
			src:  minimal + "Bind = \"0.0.0.0:1\"\n",
			want: []string{`agent.toml:7: unknown key "Bind" in [regional]; keys are case-sensitive: did you mean "bind"?`},
			kind: ErrUnknownKey,
		},
		{
			name: "unknown table",
			src:  minimal + "\n[regionl]\nregion = \"ord\"\n",
			want: []string{`agent.toml:8: unknown table [regionl]; did you mean "regional"?`},
			kind: ErrUnknownKey,
		},
		{
			name: "unknown sub-table",
			src:  minimal + "\n[regional.extra]\na = 1\n",
			want: []string{`agent.toml:8: unknown table [regional.extra]`},
			kind: ErrUnknownKey,
		},
		{
			name: "unknown dotted key",
			src:  "api.port = 1\n" + minimal,
			want: []string{`agent.toml:1: unknown key "port" in [api]`},
			kind: ErrUnknownKey,
		},
		{
			name: "unknown quoted key",
			src:  minimal + "\"gossip nodes\" = 1\n",
			want: []string{`agent.toml:7: unknown key "gossip nodes" in [regional]; did you mean "gossip_nodes"?`},
			kind: ErrUnknownKey,
		},
		{
			name: "bad duration",
			src:  minimal + "sync_interval = \"10 s\"\n",
			want: []string{`agent.toml:7: regional.sync_interval: invalid duration "10 s" (want a Go duration like "250ms" or "10s")`},
			kind: ErrInvalid,
		},
		{
			name: "duration as integer",
			src:  minimal + "sync_interval = 10\n",
			want: []string{`agent.toml:7: regional.sync_interval: want a Go duration like "250ms" or "10s", got integer 10`},
			kind: ErrInvalid,
		},
		{
			name: "bad size",
			src:  minimal + "\n[api]\nmax_body = \"4 MiB\"\n",
			want: []string{`agent.toml:9: api.max_body: invalid size "4 MiB" (want a size like "64MiB", "4MB" or "512KiB", or a number of bytes)`},
			kind: ErrInvalid,
		},
		{
			name: "negative size",
			src:  minimal + "\n[api]\nmax_body = -1\n",
			want: []string{`agent.toml:9: api.max_body: invalid size -1 (want a size like "64MiB", "4MB" or "512KiB", or a number of bytes)`},
			kind: ErrInvalid,
		},
		{
			name: "bad host:port",
			src:  minimal + "bind = \"0.0.0.0\"\n",
			want: []string{`agent.toml:7: regional.bind: invalid address "0.0.0.0" (want host:port, e.g. "0.0.0.0:7946")`},
			kind: ErrInvalid,
		},
		{
			name: "port out of range",
			src:  minimal + "bind = \"0.0.0.0:70000\"\n",
			want: []string{`agent.toml:7: regional.bind: invalid port in "0.0.0.0:70000" (want a number from 0 to 65535)`},
			kind: ErrInvalid,
		},
		{
			name: "named port",
			src:  "[api]\naddr = \"localhost:http\"\n" + minimal,
			want: []string{`agent.toml:2: api.addr: invalid port in "localhost:http" (want a number from 0 to 65535)`},
			kind: ErrInvalid,
		},
		{
			name: "join entry without host, in a multi-line array",
			src: minimal + `join = [
  "ord-2:7946",
  ":7946",
]
`,
			want: []string{`agent.toml:9: regional.join[1]: ":7946" has no host others can reach (want host:port, e.g. "ord-2.internal:7946")`},
			kind: ErrInvalid,
		},
		{
			name: "advertise on port 0",
			src:  minimal + "advertise = \"10.0.0.1:0\"\n",
			want: []string{`agent.toml:7: regional.advertise: invalid port in "10.0.0.1:0" (want a number from 1 to 65535)`},
			kind: ErrInvalid,
		},
		{
			name: "missing region",
			src:  "[contracts]\nfiles = [\"a.proto\"]\n\n[regional]\nbind = \"0.0.0.0:7946\"\n",
			want: []string{`agent.toml:4: regional.region: missing; set this node's region, e.g. region = "ord"`},
			kind: ErrInvalid,
		},
		{
			name: "missing regional and contracts sections",
			src:  "node = \"a\"\n",
			want: []string{
				`agent.toml: contracts.files: missing; list the .proto files to compile, relative to contracts.dir, e.g. files = ["fleet/v1/regional.proto"]`,
				`agent.toml: regional.region: missing; set this node's region, e.g. region = "ord"`,
			},
			kind: ErrInvalid,
		},
		{
			name: "bad region name",
			src:  "[contracts]\nfiles = [\"a.proto\"]\n[regional]\nregion = \"ORD\"\n",
			want: []string{`agent.toml:4: regional.region: invalid name "ORD" (want lower-case letters, digits and '-', at most 63 characters, e.g. "ord")`},
			kind: ErrInvalid,
		},
		{
			name: "bad cluster name",
			src:  "cluster = \"prod_1\"\n" + minimal,
			want: []string{`agent.toml:1: cluster: invalid name "prod_1" (want lower-case letters, digits and '-', at most 63 characters, e.g. "prod")`},
			kind: ErrInvalid,
		},
		{
			name: "duplicate reducer name",
			src: minimal + `
[[reducers]]
name = "a"
wasm = "a.wasm"
inputs = ["machines"]
outputs = ["placements"]

[[reducers]]
name = "a"
wasm = "b.wasm"
inputs = ["machines"]
outputs = ["placements"]
`,
			want: []string{`agent.toml:15: reducers[1].name: duplicate reducer name "a" (also reducers[0]); names must be unique`},
			kind: ErrInvalid,
		},
		{
			name: "source and wasm both set",
			src: minimal + `
[[reducers]]
name = "a"
source = "plugins/a"
wasm = "a.wasm"
inputs = ["machines"]
outputs = ["placements"]
`,
			want: []string{`agent.toml:11: reducers[0].wasm: both source and wasm are set; set exactly one`},
			kind: ErrInvalid,
		},
		{
			name: "neither source nor wasm",
			src: minimal + `
[[reducers]]
name = "a"
inputs = ["machines"]
outputs = ["placements"]
`,
			want: []string{`agent.toml:8: reducers[0].source: missing source or wasm; set source = "plugins/<name>" (a Go package dir) or wasm = "<file>.wasm"`},
			kind: ErrInvalid,
		},
		{
			name: "reducers as an inline array",
			src: minimal + `
reducers = [
  {name = "a", wasm = "a.wasm", inputs = ["m"], outputs = ["p"]},
  {name = "b", wasm = "b.wasm", inputs = [], outputs = ["p"]},
]
`,
			// The key reducers sits in [regional] here: the array must come
			// before any table header to be top level.
			want: []string{`agent.toml:8: unknown key "reducers" in [regional]`},
			kind: ErrUnknownKey,
		},
		{
			name: "reducer with empty inputs, inline array at top level",
			src: `reducers = [
  {name = "a", wasm = "a.wasm", inputs = ["m"], outputs = ["p"]},
  {name = "b", wasm = "b.wasm", inputs = [], outputs = ["p"]},
]
` + minimal,
			want: []string{`agent.toml:3: reducers[1].inputs: missing; list at least one, e.g. inputs = ["machines"]`},
			kind: ErrInvalid,
		},
		{
			name: "same port for both tiers",
			src: minimal + `
[global]
bind = "0.0.0.0:7946"
`,
			want: []string{`agent.toml:9: global.bind: port 7946 is also the port of regional.bind ("0.0.0.0:7946") on an overlapping address; give each its own port`},
			kind: ErrInvalid,
		},
		{
			name: "api on the regional port",
			src:  minimal + "bind = \"127.0.0.1:7070\"\n",
			want: []string{`agent.toml:7: api.addr: port 7070 is also the port of regional.bind ("127.0.0.1:7070") on an overlapping address; give each its own port`},
			kind: ErrInvalid,
		},
		{
			name: "zero written out is not replaced by the default",
			src:  minimal + "gossip_nodes = 0\n",
			want: []string{`agent.toml:7: regional.gossip_nodes: 0 is less than 1`},
			kind: ErrInvalid,
		},
		{
			name: "probe timeout not shorter than interval",
			src:  minimal + "probe_timeout = \"1s\"\n",
			want: []string{`agent.toml:7: regional.probe_timeout: 1s is not shorter than regional.probe_interval (1s); a probe must time out before the next one starts`},
			kind: ErrInvalid,
		},
		{
			name: "negative duration",
			src:  "tombstone_ttl = \"-1h\"\n" + minimal,
			want: []string{`agent.toml:1: tombstone_ttl: must be positive, got -1h`},
			kind: ErrInvalid,
		},
		{
			name: "wrong type",
			src:  minimal + "gossip_nodes = \"four\"\n",
			want: []string{`agent.toml:7: regional.gossip_nodes: want an integer, got string "four"`},
			kind: ErrInvalid,
		},
		{
			name: "table where a value belongs",
			src:  minimal + "\n[api.addr]\nhost = \"x\"\n",
			want: []string{`agent.toml:8: api.addr: want a string, got a table`},
			kind: ErrInvalid,
		},
		{
			name: "string where a list belongs",
			src:  "[contracts]\nfiles = \"a.proto\"\n[regional]\nregion = \"ord\"\n",
			want: []string{`agent.toml:2: contracts.files: want an array of strings, got string "a.proto"`},
			kind: ErrInvalid,
		},
		{
			name: "contract file outside dir",
			src:  "[contracts]\nfiles = [\"../a.proto\"]\n[regional]\nregion = \"ord\"\n",
			want: []string{`agent.toml:2: contracts.files[0]: invalid file "../a.proto" (want a path relative to contracts.dir, with / and no ..)`},
			kind: ErrInvalid,
		},
		{
			name: "bad log level",
			src:  "log_level = \"INFO\"\n" + minimal,
			want: []string{`agent.toml:1: log_level: invalid level "INFO" (want "debug", "info", "warn" or "error")`},
			kind: ErrInvalid,
		},
		{
			name: "memory limit too small",
			src: minimal + `
[[reducers]]
name = "a"
wasm = "a.wasm"
inputs = ["machines"]
outputs = ["placements"]
memory_limit = "1KiB"
`,
			want: []string{`agent.toml:13: reducers[0].memory_limit: 1KiB is out of range (want 64KiB to 4GiB: whole 64KiB Wasm pages, up to the 32-bit address space)`},
			kind: ErrInvalid,
		},
		{
			name: "shared keyring",
			src: minimal + `keyring = "keys/k"
[global]
keyring = "keys/./k"
`,
			want: []string{`agent.toml:9: global.keyring: "keys/./k" is also regional.keyring; each tier needs its own key, so that no node can cross tiers`},
			kind: ErrInvalid,
		},
		{
			name: "syntax error",
			src:  minimal + "bind = \"0.0.0.0:7946\n",
			want: []string{`agent.toml:7: strings cannot contain newlines`},
			kind: ErrSyntax,
		},
		{
			name: "duplicate key is a syntax error",
			src:  minimal + "region = \"ams\"\n",
			want: []string{`agent.toml:7: Key 'regional.region' has already been defined.`},
			kind: ErrSyntax,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.src), "agent.toml")
			if c != nil {
				t.Errorf("Parse returned a config with an error")
			}
			assertProblems(t, err, tt.want...)
			if !errors.Is(err, tt.kind) {
				t.Errorf("errors.Is(err, %v) = false", tt.kind)
			}
		})
	}
}

func TestParseReportsAllProblems(t *testing.T) {
	stubHostname(t)
	src := `cluster = "Prod"
gosip = 1

[contracts]
files = []

[regional]
region = "ord"
bind = "0.0.0.0:7946"
sync_interval = "10 s"
gossip_nodes = "4"

[global]
bind = "0.0.0.0:7946"

[[reducers]]
name = "a"
wasm = "a.wasm"
inputs = ["machines"]
outputs = ["placements"]

[[reducers]]
name = "b"
source = "plugins/b"
wasm = "b.wasm"
inputs = ["machines"]
outputs = ["placements"]
timeout = "0s"
color = "red"
`
	_, err := Parse([]byte(src), "agent.toml")
	assertProblems(t, err,
		`agent.toml:1: cluster: invalid name "Prod" (want lower-case letters, digits and '-', at most 63 characters, e.g. "prod")`,
		`agent.toml:2: unknown key "gosip"`,
		`agent.toml:5: contracts.files: missing; list the .proto files to compile, relative to contracts.dir, e.g. files = ["fleet/v1/regional.proto"]`,
		`agent.toml:10: regional.sync_interval: invalid duration "10 s" (want a Go duration like "250ms" or "10s")`,
		`agent.toml:11: regional.gossip_nodes: want an integer, got string "4"`,
		`agent.toml:14: global.bind: port 7946 is also the port of regional.bind ("0.0.0.0:7946") on an overlapping address; give each its own port`,
		`agent.toml:25: reducers[1].wasm: both source and wasm are set; set exactly one`,
		`agent.toml:28: reducers[1].timeout: must be positive, got 0s`,
		`agent.toml:29: unknown key "color" in reducers[1]`,
	)
	var e *Error
	errors.As(err, &e)
	p := e.Problems[1]
	if p.File != "agent.toml" || p.Line != 2 || p.Key != "gosip" || p.Kind != ErrUnknownKey {
		t.Errorf("Problems[1] = %+v", p)
	}
	if !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrInvalid) || errors.Is(err, ErrSyntax) {
		t.Errorf("errors.Is does not match the problems' kinds")
	}
	var pp *Problem
	if !errors.As(err, &pp) || pp.Key != "cluster" {
		t.Errorf("errors.As(*Problem) = %+v", pp)
	}
}

func TestValidate(t *testing.T) {
	c := mustParse(t, minimal)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate of a parsed config: %v", err)
	}
	c.Regional.Region = ""
	c.Reducers = []Reducer{{Name: "x y", Wasm: "a.wasm", Inputs: []string{"m", "m"}, Outputs: []string{"p"}, Timeout: Duration{1}, MemoryLimit: MiB, MaxOutput: 1}}
	assertProblems(t, c.Validate(),
		`config: regional.region: missing; set this node's region, e.g. region = "ord"`,
		`config: reducers[0].name: invalid name "x y" (want lower-case letters, digits and '-', at most 63 characters, e.g. "app-regions")`,
		`config: reducers[0].inputs[1]: "m" is listed twice`,
	)
}

func TestDurationAndSizeErrorsOutsideFiles(t *testing.T) {
	var d Duration
	err := d.UnmarshalText([]byte("10 s"))
	if err == nil || err.Error() != `config: invalid duration "10 s" (want a Go duration like "250ms" or "10s")` || !errors.Is(err, ErrInvalid) {
		t.Errorf("Duration.UnmarshalText: %v", err)
	}
	var s Size
	err = s.UnmarshalText([]byte("4 MiB"))
	if err == nil || err.Error() != `config: invalid size "4 MiB" (want a size like "64MiB", "4MB" or "512KiB", or a number of bytes)` || !errors.Is(err, ErrInvalid) {
		t.Errorf("Size.UnmarshalText: %v", err)
	}
}
