package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/strata-state/strata/agent"
	"github.com/strata-state/strata/agent/config"
)

// newLogger returns the agent's logger, in cfg's log_format, with a level
// that a reload can change.
func newLogger(w io.Writer, cfg *config.Config) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(cfg.Level())
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

// reloadOnHUP reloads the configuration into a on every SIGHUP until ctx
// ends: the file at path is read and validated again (the embedded
// default when path is empty), and Agent.Reload applies what can change
// while running and logs what needs a restart. A file that no longer
// parses is logged and changes nothing.
func reloadOnHUP(ctx context.Context, a *agent.Agent, path string, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the configuration", "config", path)
				cfg, _, err := loadConfig(path)
				if err != nil {
					log.Error("configuration not reloaded: it does not load; the running configuration stays", "err", err)
					continue
				}
				a.Reload(cfg)
			}
		}
	}()
}
