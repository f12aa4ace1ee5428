package check

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/contracts/compat")

// compatDir holds one directory per compatibility case: old/ and new/
// contract roots and expected.txt, the text report of checking new against
// old.
const compatDir = "../../testdata/contracts/compat"

// TestCompatGolden checks every case of testdata/contracts/compat: each rule
// has one, and the clean ones must report nothing. Positions are part of
// the golden text. Run with -update to rewrite expected.txt after a change,
// and review the diff.
func TestCompatGolden(t *testing.T) {
	cases, err := os.ReadDir(compatDir)
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(compatDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !c.IsDir() {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			t.Chdir(filepath.Join(abs, c.Name()))
			r, err := Run(context.Background(), Options{Dir: "new", Against: "old"})
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := r.WriteText(&got, false); err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile("expected.txt", got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile("expected.txt")
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("report differs from expected.txt (run with -update and review the diff)\ngot:\n%s\nwant:\n%s", got.Bytes(), want)
			}
		})
	}
}
