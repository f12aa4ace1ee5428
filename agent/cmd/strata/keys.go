package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent/global"
)

// keysCmd manages the gossip encryption keys of a running agent's tiers.
func keysCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List and rotate the gossip encryption keys of an agent's tiers",
		Long: `Rotate a tier's key on every node of the tier, one step at a time, in
memberlist's order:

  strata keys add   regional NEWKEY    # on every node: accept the new key
  strata keys use   regional NEWKEY    # on every node: encrypt with it
  strata keys remove regional OLDKEY   # on every node: drop the old key

KEY is base64 (16, 24 or 32 bytes: AES-128/192/256; e.g. head -c 32
/dev/urandom | base64). Each step also rewrites the tier's keyring file, so
a restart keeps it. Keys are never shown, only their fingerprints.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "Show each tier's key fingerprints (the primary encrypts)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res json.RawMessage
			if err := f.client().GetJSON(cmd.Context(), "/v1/keys", &res); err != nil {
				return err
			}
			var v any
			json.Unmarshal(res, &v)
			return printJSON(cmd.OutOrStdout(), v)
		},
	})
	for _, op := range []string{"add", "use", "remove"} {
		cmd.AddCommand(&cobra.Command{
			Use:   op + " TIER KEY",
			Short: strings.ToUpper(op[:1]) + op[1:] + " a key on one tier of this agent",
			Args:  exactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				key, err := base64.StdEncoding.DecodeString(args[1])
				if err != nil {
					return usageError{fmt.Errorf("KEY is not base64: %v", err)}
				}
				res, err := f.client().ChangeKey(cmd.Context(), args[0], op, key)
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), res)
			},
		})
	}
	cmd.AddCommand(genRegionCmd())
	return cmd
}

// genRegionCmd writes a new region signing key.
func genRegionCmd() *cobra.Command {
	var out string
	force := false
	cmd := &cobra.Command{
		Use:   "gen-region REGION -o FILE",
		Short: "Write a new Ed25519 signing key for a region's gateways",
		Long: `Write a new Ed25519 key that signs REGION's global changes to FILE (mode
0600), and print the line to append to every node's trusted_regions file:

  strata keys gen-region ord -o keys/ord.key >> keys/regions.pub

Give FILE to the region's gateways as [global] region_key. To rotate,
generate the next key, add its line to trusted_regions everywhere (two
keys per region are allowed), switch the gateways' region_key to it and
restart them one by one; once the publisher has re-signed the region's
records (GET /v1/reducers shows no writes pending), remove the old line.
This command runs locally; it does not talk to an agent.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			region := args[0]
			if out == "" {
				return usageError{fmt.Errorf("-o FILE is required: where to write the private key")}
			}
			if region == "" || strings.ContainsAny(region, " \t\n/") {
				return usageError{fmt.Errorf("REGION %q: want a region name without spaces or slashes", region)}
			}
			s, err := global.NewSigner(region)
			if err != nil {
				return err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(out, flags, 0o600)
			if err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("%s exists; a region key is not overwritten without --force", out)
				}
				return err
			}
			if err := f.Chmod(0o600); err != nil {
				f.Close()
				return err
			}
			if _, err := f.Write(s.PrivateKeyFile()); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), s.TrustLine())
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the private key to (mode 0600)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite FILE if it exists")
	return cmd
}
