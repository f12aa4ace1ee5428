package client

import (
	"os/exec"
	"strings"
	"testing"
)

// The client needs only the standard library: a program that talks to an
// agent must not pull in bbolt, memberlist, wazero or protocompile.
func TestStdlibOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var outside []string
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/strata-state/strata/agent/api/client" {
			outside = append(outside, p)
		}
	}
	if len(outside) > 0 {
		t.Errorf("the client imports packages outside the standard library: %s", strings.Join(outside, ", "))
	}
}

func TestSegment(t *testing.T) {
	for in, want := range map[string]string{
		"m-1":    "m-1",
		"a/../b": "a%2F..%2Fb",
		"..":     "%2E%2E",
		".":      "%2E",
		"a b?#%": "a%20b%3F%23%25",
	} {
		if got := Segment(in); got != want {
			t.Errorf("Segment(%q) = %q, want %q", in, got, want)
		}
	}
}
