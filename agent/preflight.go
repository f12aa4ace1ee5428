package agent

import (
	"errors"
	"fmt"

	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/contracts/check"
)

// CheckFiles reads every file the configuration names that New would
// read at start-up besides the contract — the API token file, the tiers'
// keyrings, a gateway's region_key and trusted_regions, and
// api.trusted_regions — and returns every problem found, not just the
// first, each naming the key and the file. `strata agent --check` reports
// them.
func CheckFiles(cfg *config.Config) error {
	var errs []error
	if _, err := readToken(cfg.API.TokenFile); err != nil {
		errs = append(errs, err)
	}
	if _, err := cluster.LoadKeyring(cfg.Regional.Keyring); err != nil {
		errs = append(errs, fmt.Errorf("regional.keyring: %w", err))
	}
	if cfg.Global != nil {
		if _, err := cluster.LoadKeyring(cfg.Global.Keyring); err != nil {
			errs = append(errs, fmt.Errorf("global.keyring: %w", err))
		}
		if err := checkRegionKeys(cfg.Global, cfg.Regional.Region); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.API.TrustedRegions != "" {
		if _, err := global.LoadTrust(cfg.API.TrustedRegions); err != nil {
			errs = append(errs, fmt.Errorf("api.trusted_regions: %w", err))
		}
	}
	return errors.Join(errs...)
}

// checkRegionKeys reads [global] region_key and trusted_regions as
// start-up does (loadRegionKeys), but reports a problem in each file, not
// only in the first: the two files are checked against each other only
// when both load.
func checkRegionKeys(g *config.Global, region string) error {
	if g.RegionKey == "" && g.TrustedRegions == "" {
		return nil
	}
	_, keyErr := global.LoadSigner(g.RegionKey)
	_, trustErr := global.LoadTrust(g.TrustedRegions)
	if keyErr == nil && trustErr == nil {
		_, _, err := loadRegionKeys(g, region)
		return err
	}
	var errs []error
	if keyErr != nil {
		errs = append(errs, fmt.Errorf("global.region_key: %w", keyErr))
	}
	if trustErr != nil {
		errs = append(errs, fmt.Errorf("global.trusted_regions: %w", trustErr))
	}
	return errors.Join(errs...)
}

// reducerNotLoaded is logged at start-up for each reducer that does not
// load. The agent runs on without it by design: one region's broken
// plugin must not stop its regional tier, the API or the other reducers.
// `strata agent --check` builds and loads reducers the same way, to catch
// this before start-up.
const reducerNotLoaded = "reducer not loaded: the agent runs on without it by design, and the other reducers run; " +
	"what it published before stays as it was; " +
	"/v1/health still answers ok (it reports liveness), while GET /v1/reducers shows the reducer with its last_error; " +
	"fix it, check with strata agent --check, and restart"

// reducerConfigError checks a reducer's inputs and outputs against the
// contract, as `strata agent --check` and `strata contract check --config`
// do (check.ReducerConfig): nil when every input is a table and every
// output a record, else each problem with its fix.
func reducerConfigError(c *contracts.Contract, rc config.Reducer) error {
	var errs []error
	for _, f := range check.ReducerConfig(c, []check.Reducer{{Name: rc.Name, Source: rc.Source, Wasm: rc.Wasm, Inputs: rc.Inputs, Outputs: rc.Outputs}}) {
		errs = append(errs, fmt.Errorf("%s (fix: %s)", f.Message, f.Hint))
	}
	return errors.Join(errs...)
}
