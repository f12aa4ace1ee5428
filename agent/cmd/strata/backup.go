package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent/store"
)

func backupCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Save a consistent online backup of the agent's stores to FILE",
		Long: `backup asks the running agent (GET /v1/backup) for a consistent copy of
each of its stores (regional, and global on a gateway) and writes it to
FILE, a tar archive. The agent keeps serving and committing meanwhile.
FILE is written under a temporary name and renamed when complete.`,
		Example: `  strata backup /backups/ord-1.tar
  strata restore /backups/ord-1.tar --data-dir /var/lib/strata   # agent stopped, empty dir`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			tmp, err := os.CreateTemp(filepath.Dir(path), ".strata-backup-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			n, err := f.client().Backup(cmd.Context(), tmp)
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes)\n", path, n)
			return nil
		},
	}
}

func restoreCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR",
		Short: "Restore a backup into an empty data_dir (offline)",
		Long: `restore writes the stores of a backup taken with "strata backup" into DIR,
which must be empty or not exist; start the agent on DIR afterwards. It
runs without an agent (the node is stopped). The restored node rejoins its
region and catches up on what changed since the backup.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" {
				return usageError{fmt.Errorf("restore needs --data-dir DIR")}
			}
			in, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			files, err := store.RestoreBackup(in, dataDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s into %s\n", strings.Join(files, ", "), dataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data_dir to restore into (empty or new)")
	return cmd
}
