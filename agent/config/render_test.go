package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestTOMLRoundTrip(t *testing.T) {
	stubHostname(t)
	full, err := os.ReadFile("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  string
	}{
		{"embedded default", ""},
		{"minimal", minimal},
		{"full", string(full)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *Config
			if tt.src == "" {
				if c, err = Default(); err != nil {
					t.Fatal(err)
				}
			} else {
				c = mustParse(t, tt.src)
			}
			out, err := c.TOML()
			if err != nil {
				t.Fatalf("TOML: %v", err)
			}
			back, err := Parse(out, "rendered.toml")
			if err != nil {
				t.Fatalf("Parse of TOML():\n%s\n%v", out, err)
			}
			if !reflect.DeepEqual(back, c) {
				t.Errorf("round trip changed the config:\n%+v\nwant\n%+v\nTOML:\n%s", back, c, out)
			}
		})
	}
}

// TestTOMLShowsDefaults checks that the effective configuration spells out
// defaults that the file left out.
func TestTOMLShowsDefaults(t *testing.T) {
	stubHostname(t)
	out, err := mustParse(t, minimal).TOML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`node = "host-1"`,
		`tombstone_ttl = "24h"`,
		`sync_interval = "10s"`,
		`max_body = "4MiB"`,
		"[regional]\nregion = \"ord\"\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("TOML() lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "[global]") {
		t.Errorf("TOML() has [global] for a node that is not a gateway:\n%s", out)
	}
}
