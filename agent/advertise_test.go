package agent

import (
	"strings"
	"testing"

	"github.com/strata-state/strata/agent/config"
)

// A gateway whose API is on loopback while its regional tier reaches
// other hosts is warned at start: the region's other nodes would forward
// global reads to their own loopback.
func TestLoopbackGatewayAPIWarning(t *testing.T) {
	for _, tc := range []struct {
		api, bind, advertise string
		warn                 bool
	}{
		{"127.0.0.1:7070", "127.0.0.1:7946", "", false}, // a one-host region: fine
		{"127.0.0.1:7070", "0.0.0.0:7946", "", true},    // the tier listens everywhere
		{"127.0.0.1:7070", "10.0.0.5:7946", "", true},   // the tier is on the network
		{"127.0.0.1:7070", "0.0.0.0:7946", "10.0.0.5:7946", true},
		{"127.0.0.1:7070", "0.0.0.0:7946", "127.0.0.1:7946", false},
		{"10.0.0.5:7070", "0.0.0.0:7946", "", false}, // a reachable API
		{"[::1]:7070", "[::]:7946", "", true},
	} {
		w := loopbackGatewayAPI(tc.api, config.Regional{Bind: tc.bind, Advertise: tc.advertise})
		if (w != "") != tc.warn {
			t.Errorf("api %s, bind %s, advertise %q: warning %q, want one: %v", tc.api, tc.bind, tc.advertise, w, tc.warn)
		}
		if w != "" && !strings.Contains(w, "api.addr") {
			t.Errorf("warning %q does not say which setting to change", w)
		}
	}
}
