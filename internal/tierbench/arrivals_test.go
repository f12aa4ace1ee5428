package tierbench

import (
	"bufio"
	"strings"
	"testing"
)

func TestParseApplied(t *testing.T) {
	text := `# HELP strata_changes_applied_total x
# TYPE strata_changes_applied_total counter
strata_changes_applied_total{path="push",tier="regional"} 90
strata_changes_applied_total{path="anti_entropy",tier="regional"} 10
strata_changes_applied_total{path="push",tier="global"} 7
strata_changes_applied_total{path="repair",tier="global"} 3
strata_other_total{path="push",tier="global"} 1000
`
	out := arrivals{}
	if err := parseApplied(bufio.NewScanner(strings.NewReader(text)), "global", out); err != nil {
		t.Fatal(err)
	}
	if out["push"] != 7 || out["repair"] != 3 || len(out) != 2 {
		t.Fatalf("global arrivals %v, want push 7, repair 3", out)
	}
	if got := out.since(arrivals{"push": 2}).String(); got != "push 62.5 %, repair 37.5 % of 8" {
		t.Fatalf("since: %q", got)
	}
	if err := parseApplied(bufio.NewScanner(strings.NewReader(`strata_changes_applied_total{path="push",tier="global"} x`)), "global", arrivals{}); err == nil {
		t.Fatal("an unreadable value was accepted")
	}
}
