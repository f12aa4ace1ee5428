package main

import (
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/contracts"
)

func newAgentCmd() *cobra.Command {
	var configPath string
	var check bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the strata agent",
		Long: `Run the strata agent with the configuration in --config, or with the
embedded default (a one-node deployment on loopback, region "local", data in
./data, the example contract) when --config is not given.

With --check, validate the configuration, the contract and the reducers'
inputs and outputs against it, print the effective configuration with
every default filled in, and exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, fsys, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			if check {
				if fsys == nil {
					fsys = os.DirFS(cfg.Contracts.Dir)
				}
				c, err := contracts.Compile(cmd.Context(), fsys, cfg.Contracts.Files)
				if err != nil {
					err = fmt.Errorf("contracts (dir %s): %w", cfg.Contracts.Dir, err)
				}
				if err := checkAgent(cmd.Context(), configPath, cfg, c, err); err != nil {
					return err
				}
				out, err := cfg.TOML()
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			log, level := newLogger(os.Stderr, cfg)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := agent.New(ctx, cfg, agent.Options{Logger: log, Level: level, Version: version, ContractFS: fsys})
			if err != nil {
				return err
			}
			reloadOnHUP(ctx, a, configPath, log)
			return a.Run(ctx)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "agent.toml to run (default: the embedded one-node default)")
	cmd.Flags().BoolVar(&check, "check", false, "validate the configuration and contract, print the effective configuration, and exit")
	return cmd
}

// loadConfig loads the config file, or the embedded default. For the
// embedded default it also returns the embedded example contract when
// contracts.dir does not exist here, so `strata agent` runs from any
// directory.
func loadConfig(path string) (*config.Config, fs.FS, error) {
	if path != "" {
		cfg, err := config.Load(path)
		return cfg, nil, err
	}
	cfg, err := config.Default()
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(cfg.Contracts.Dir); err != nil && slices.Equal(cfg.Contracts.Files, contracts.ExampleFiles()) {
		return cfg, contracts.Example, nil
	}
	return cfg, nil, nil
}
