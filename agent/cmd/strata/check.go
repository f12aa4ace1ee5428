package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-state/strata/agent"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/reducer"
	"github.com/strata-state/strata/contracts"
)

// checkAgent is `strata agent --check` past parsing: the contract, the
// reducers' inputs and outputs, the files start-up reads (token, keyrings)
// and, on a gateway, a build and load of every reducer. It reports every
// problem at once, not the first only.
func checkAgent(ctx context.Context, path string, cfg *config.Config, c *contracts.Contract, contractErr error) error {
	var errs []error
	if contractErr != nil {
		errs = append(errs, contractErr)
	} else if err := reducerConfigError(path, c, cfg); err != nil {
		errs = append(errs, err)
	}
	if err := agent.CheckFiles(cfg); err != nil {
		errs = append(errs, err)
	}
	if err := loadReducers(ctx, cfg); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// loadReducers builds (source) or reads (wasm), compiles and instantiates
// every reducer a gateway would load at start-up, as the agent does: a
// reducer that fails here is one the agent would start without. Builds go
// to the user's build cache (the agent keeps its own under data_dir), so
// --check writes nothing under data_dir. Other nodes do not load reducers,
// and nothing is checked for them.
func loadReducers(ctx context.Context, cfg *config.Config) error {
	if cfg.Global == nil || len(cfg.Reducers) == 0 {
		return nil
	}
	host, err := reducer.NewHost(reducer.HostOptions{})
	if err != nil {
		return err
	}
	defer host.Close(context.Background())
	var errs []error
	for _, rc := range cfg.Reducers {
		r, err := host.Load(ctx, reducer.ConfigFrom(rc, ""))
		if err != nil {
			why := "the agent would start without it"
			if errors.Is(err, reducer.ErrNoGo) {
				why = "it cannot be built here, and an agent on this host would start without it"
			}
			errs = append(errs, fmt.Errorf("reducer %s (%s): %w\n  %s; fix the module or its configuration", rc.Name, source(rc), err, why))
			continue
		}
		r.Close(context.Background())
	}
	return errors.Join(errs...)
}

func source(rc config.Reducer) string {
	if rc.Source != "" {
		return "source " + rc.Source
	}
	return "wasm " + rc.Wasm
}
