package config

import (
	"reflect"
	"testing"
)

func TestScanLines(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want keyLines
	}{
		{
			name: "tables and keys",
			src:  "a = 1\n\n[t]\nb = 2 # c = 3\n  c = 'x'\n",
			want: keyLines{"a": 1, "t": 3, "t.b": 4, "t.c": 5},
		},
		{
			name: "dotted and quoted keys",
			src:  "a.b = 1\n\"x y\".'z' = 2\n[ \"q.r\" . s ]\nk = 1\n",
			want: keyLines{"a": 1, "a.b": 1, `"x y"`: 2, `"x y".z`: 2, `"q.r"`: 3, `"q.r".s`: 3, `"q.r".s.k`: 4},
		},
		{
			name: "escapes in quoted keys",
			src:  "\"a\\u0041\\\"\" = 1\n",
			want: keyLines{`"aA\""`: 1},
		},
		{
			name: "arrays of tables and their sub-tables",
			src:  "[[r]]\nn = 1\n[r.sub]\nx = 1\n[[r]]\nn = 2\n[[r.list]]\ny = 1\n[[r.list]]\ny = 2\n",
			want: keyLines{
				"r": 1, "r[0]": 1, "r[0].n": 2, "r[0].sub": 3, "r[0].sub.x": 4,
				"r[1]": 5, "r[1].n": 6,
				"r[1].list": 7, "r[1].list[0]": 7, "r[1].list[0].y": 8, "r[1].list[1]": 9, "r[1].list[1].y": 10,
			},
		},
		{
			name: "multi-line strings hide keys",
			src:  "a = \"\"\"\nb = 1\n\"\"\"\nc = '''\nd = 2''''\ne = \"\"\"\\\n  f = \\\"\"\"\" \ng = 3\n",
			want: keyLines{"a": 1, "c": 4, "e": 6, "g": 8},
		},
		{
			name: "multi-line arrays",
			src:  "a = [\n  1, # x = 1\n  [2, 3],\n  \"]\",\n]\nb = 2\n",
			want: keyLines{"a": 1, "a[0]": 2, "a[1]": 3, "a[1][0]": 3, "a[1][1]": 3, "a[2]": 4, "b": 6},
		},
		{
			name: "inline tables",
			src:  "t = {a = 1, b.c = [{d = 2}]}\nu = {\n  e = 1, # TOML 1.1\n  f = {g = 2},\n}\n",
			want: keyLines{
				"t": 1, "t.a": 1, "t.b": 1, "t.b.c": 1, "t.b.c[0]": 1, "t.b.c[0].d": 1,
				"u": 2, "u.e": 3, "u.f": 4, "u.f.g": 4,
			},
		},
		{
			name: "date-times and CRLF",
			src:  "a = 1979-05-27 07:32:00Z\r\nb = 1\r\n",
			want: keyLines{"a": 1, "b": 2},
		},
		{
			name: "byte-order mark",
			src:  "\xef\xbb\xbfa = 1\n",
			want: keyLines{"a": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeTOML([]byte(tt.src)); err != nil {
				t.Fatalf("test input is not valid TOML: %v", err)
			}
			if got := scanLines([]byte(tt.src)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("scanLines =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

func TestLineOf(t *testing.T) {
	l := keyLines{"reducers": 3, "reducers[1]": 9, "reducers[1].name": 10}
	for path, want := range map[string]int{
		"reducers[1].name":    10,
		"reducers[1].timeout": 9,
		"reducers[2].name":    3,
		"regional.region":     0,
	} {
		if got := l.lineOf(path); got != want {
			t.Errorf("lineOf(%q) = %d, want %d", path, got, want)
		}
	}
}
