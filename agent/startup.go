package agent

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/strata-state/strata/agent/config"
)

// warnOpen warns at start when the API has no token while the API or a
// gossip tier listens on a non-loopback address: anyone who can reach the
// port can then write rows (and, without a keyring, join the tier).
func warnOpen(log *slog.Logger, cfg *config.Config, token string) {
	if token != "" {
		return
	}
	binds := map[string]string{"api.addr": cfg.API.Addr, "regional.bind": cfg.Regional.Bind}
	if cfg.Global != nil {
		binds["global.bind"] = cfg.Global.Bind
	}
	for _, key := range []string{"api.addr", "regional.bind", "global.bind"} {
		addr, ok := binds[key]
		if !ok {
			continue
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			continue
		}
		log.Warn("the API has no token while the agent listens beyond this host: anyone who reaches it can write rows and rotate keys; "+
			"set api.token_file to a file holding a secret (chmod 600)", "key", key, "addr", addr)
	}
}

// hasWritten reports whether this node has run with dataDir before: one
// of its files other than except exists and is not empty. An empty store
// file is then a truncated one, not a new one (store.Options.RefuseEmpty).
func hasWritten(dataDir, except string) bool {
	for _, name := range []string{"regional.db", "global.db", "peers-regional.json", "peers-global.json"} {
		if name == except {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dataDir, name)); err == nil && fi.Size() > 0 {
			return true
		}
	}
	return false
}
