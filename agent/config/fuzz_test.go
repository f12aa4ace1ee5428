package config

import (
	"os"
	"reflect"
	"regexp"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/strata-state/strata"
)

// FuzzParse checks that Parse never panics, that every problem is complete,
// and that a config it accepts survives a round trip through TOML.
func FuzzParse(f *testing.F) {
	full, err := os.ReadFile("testdata/full.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(strata.DefaultConfig)
	f.Add(full)
	f.Add([]byte(minimal))
	f.Add([]byte("a = \"\"\"\nb\"\"\"\n[[reducers]]\nname = 'x'\nt = {a = [1, {b = 2}]}\n"))
	f.Add([]byte("[regional\nregion = 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil {
			e, ok := err.(*Error)
			if !ok || len(e.Problems) == 0 {
				t.Fatalf("error %v (%T) is not an *Error with problems", err, err)
			}
			for _, p := range e.Problems {
				if p.File != "fuzz.toml" || p.Msg == "" || p.Kind == nil {
					t.Fatalf("incomplete problem %+v", p)
				}
			}
			return
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
			t.Fatalf("round trip changed the config:\n%+v\nwant\n%+v", back, c)
		}
	})
}

// FuzzScanLines checks that the line scanner finds every key the TOML
// parser finds, whatever the file's shape.
func FuzzScanLines(f *testing.F) {
	full, err := os.ReadFile("testdata/full.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add([]byte("a.'b'.\"c\" = [{d = 1}, {e = \"\"\"\nf = 2\"\"\"}]\n[[g]]\n[g.h]\ni = 1979-05-27 07:32:00\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var raw map[string]any
		md, err := toml.Decode(string(data), &raw)
		if err != nil {
			return
		}
		found := map[string]bool{}
		for path := range scanLines(data) {
			found[arrayIndex.ReplaceAllString(path, "")] = true
		}
		for _, k := range md.Keys() {
			path := ""
			for _, part := range k {
				path = child(path, part)
			}
			if !found[arrayIndex.ReplaceAllString(path, "")] {
				t.Fatalf("scanLines missed key %s; found %v", path, found)
			}
		}
	})
}

var arrayIndex = regexp.MustCompile(`\[[0-9]+\]`)
