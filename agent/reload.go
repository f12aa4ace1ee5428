package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/global"
)

// reloadState is what Reload keeps between reloads.
type reloadState struct {
	reloadMu sync.Mutex
	running  *config.Config // in effect; nil: a.cfg
	token    string
	level    *slog.LevelVar
}

// ReloadReport says what a Reload applied and what it could not.
type ReloadReport struct {
	// Applied are the settings now in effect, by agent.toml key
	// ("api.token_file" when the token file's content changed,
	// "regional.keyring" when the keyring file's keys changed).
	Applied []string
	// NeedRestart are the changed settings that take effect only at the
	// next start.
	NeedRestart []string
	// Errors are the reloadable settings that could not be applied (the
	// previous value stays in effect for each), and the changed files
	// that need a restart but would not load at the next start (a new
	// keyring path, region_key, trusted_regions): the agent would not
	// start on them.
	Errors []error
}

// reloadable are the agent.toml keys Reload applies while running; every
// other changed key needs a restart.
var reloadable = []string{"log_level", "api.token_file", "api.public_metrics", "regional.keyring", "global.keyring"}

// Reload applies what can change safely while the agent runs, from cfg
// (the configuration file read again): the API token (the token file is
// read again even when its path did not change), api.public_metrics, the
// log level (through Options.Level) and the tiers' keyrings (the keys in
// the keyring files; a new primary key is used only when every alive
// member of the tier holds it). Everything else that differs from the
// running configuration, reducers included, is listed as needing a
// restart; a changed file among those (a new keyring path, region_key,
// trusted_regions) is read, and one that would not load is reported as an
// error. A setting that fails to apply keeps its previous value. The
// agent logs the report; `strata agent` calls Reload on SIGHUP.
func (a *Agent) Reload(cfg *config.Config) ReloadReport {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	running := a.running
	if running == nil {
		running = a.cfg
	}
	next := *running // what is in effect after this reload
	var r ReloadReport
	for _, key := range changedKeys(running, cfg) {
		if !slices.Contains(reloadable, key) {
			r.NeedRestart = append(r.NeedRestart, key)
		}
	}

	if cfg.LogLevel != running.LogLevel {
		if a.level != nil {
			a.level.Set(cfg.Level())
			next.LogLevel = cfg.LogLevel
			r.Applied = append(r.Applied, "log_level")
		} else {
			r.NeedRestart = append(r.NeedRestart, "log_level")
		}
	}
	if tok, err := readToken(cfg.API.TokenFile); err != nil {
		r.Errors = append(r.Errors, err)
	} else if tok == "" && a.token != "" {
		// token_file removed from the configuration: turning
		// authentication off on a running agent is not a reload's to do.
		r.NeedRestart = append(r.NeedRestart, "api.token_file")
	} else if tok != a.token {
		a.api.SetToken(tok)
		a.token = tok
		next.API.TokenFile = cfg.API.TokenFile
		r.Applied = append(r.Applied, "api.token_file")
	}
	if cfg.API.PublicMetrics != running.API.PublicMetrics {
		a.api.SetPublicMetrics(cfg.API.PublicMetrics)
		next.API.PublicMetrics = cfg.API.PublicMetrics
		r.Applied = append(r.Applied, "api.public_metrics")
	}
	reloadKeys := func(key, oldPath, newPath string, t *cluster.Tier) {
		if t == nil {
			return
		}
		if oldPath != newPath {
			r.NeedRestart = append(r.NeedRestart, key)
			if _, err := cluster.LoadKeyring(newPath); err != nil {
				r.Errors = append(r.Errors, fmt.Errorf("%s (needs a restart, which would fail): %w", key, err))
			}
			return
		}
		keys, err := cluster.LoadKeyring(newPath)
		if err != nil {
			r.Errors = append(r.Errors, fmt.Errorf("%s: %w", key, err))
			return
		}
		changed, err := t.ReloadKeys(keys)
		if err != nil {
			r.Errors = append(r.Errors, fmt.Errorf("%s: %w", key, err))
		}
		if changed {
			r.Applied = append(r.Applied, key)
		}
	}
	reloadKeys("regional.keyring", running.Regional.Keyring, cfg.Regional.Keyring, a.tier)
	if running.Global != nil && cfg.Global != nil {
		reloadKeys("global.keyring", running.Global.Keyring, cfg.Global.Keyring, a.globalTier)
	} else if running.Global == nil && cfg.Global != nil {
		if _, err := cluster.LoadKeyring(cfg.Global.Keyring); err != nil {
			r.Errors = append(r.Errors, fmt.Errorf("global.keyring (needs a restart, which would fail): %w", err))
		}
	}
	// Files that need a restart are read now, so that a mistake shows at
	// the reload rather than as an agent that does not start.
	if g := cfg.Global; g != nil && (running.Global == nil || g.RegionKey != running.Global.RegionKey || g.TrustedRegions != running.Global.TrustedRegions) {
		if err := checkRegionKeys(g, cfg.Regional.Region); err != nil {
			r.Errors = append(r.Errors, fmt.Errorf("needs a restart, which would fail: %w", err))
		}
	}
	if p := cfg.API.TrustedRegions; p != "" && p != running.API.TrustedRegions {
		if _, err := global.LoadTrust(p); err != nil {
			r.Errors = append(r.Errors, fmt.Errorf("api.trusted_regions (needs a restart, which would fail): %w", err))
		}
	}
	a.running = &next
	slices.Sort(r.NeedRestart)
	r.NeedRestart = slices.Compact(r.NeedRestart)

	args := []any{"applied", r.Applied, "restart_needed", r.NeedRestart}
	if err := errors.Join(r.Errors...); err != nil {
		a.log.Error("configuration reloaded with errors (a reloadable setting keeps its previous value; a file that needs a restart would stop the next start)", append(args, "err", err)...)
	} else {
		a.log.Info("configuration reloaded", args...)
	}
	return r
}

// changedKeys lists the agent.toml keys whose values differ between a and
// b, as dotted names ("regional.bind"); a whole section added or removed
// ([global]) or any change to [[reducers]] is one name.
func changedKeys(a, b *config.Config) []string {
	var out []string
	var walk func(prefix string, x, y reflect.Value)
	walk = func(prefix string, x, y reflect.Value) {
		t := x.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			key := prefix + name
			fx, fy := x.Field(i), y.Field(i)
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type.NumField() > 1 && hasTOMLTags(f.Type):
				walk(key+".", fx, fy)
			case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
				if fx.IsNil() != fy.IsNil() {
					out = append(out, key)
				} else if !fx.IsNil() {
					walk(key+".", fx.Elem(), fy.Elem())
				}
			case !reflect.DeepEqual(fx.Interface(), fy.Interface()):
				out = append(out, key)
			}
		}
	}
	walk("", reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem())
	return out
}

func hasTOMLTags(t reflect.Type) bool {
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("toml") != "" {
			return true
		}
	}
	return false
}
