package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
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
	return cmd
}
