package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/global"
)

// keysCmd manages the gossip encryption keys of a running agent's tiers.
func keysCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List and rotate the gossip encryption keys of an agent's tiers",
		Long: `Rotate a tier's key on every node of the tier in one command:

  strata keys rotate regional --key-file new.key

or one step at a time, on every node, in memberlist's order:

  strata keys add    regional --key-file new.key   # accept the new key
  strata keys use    regional --key-file new.key   # encrypt with it
  strata keys remove regional --key-file old.key   # drop the old key

A key is base64 (16, 24 or 32 bytes: AES-128/192/256; e.g. head -c 32
/dev/urandom | base64 > new.key), read from --key-file FILE, from standard
input ("-" in place of the key, or --key-file -), or from the argument
(visible to other users in ps: avoid).
Each step also rewrites the tier's keyring file, so a restart keeps it.

Keys are never shown, only their fingerprints: the first 8 bytes of the
key's SHA-256, in hex (strata keys list). Each node advertises the first 8
hex digits of its keys' fingerprints to its tier (strata members shows
them), so "use" refuses while an alive member does not hold the key
(--force overrides: that member stops hearing this node).`,
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
		var keyFile, fingerprint string
		var force bool
		c := &cobra.Command{
			Use:   op + " TIER [KEY|-]",
			Short: strings.ToUpper(op[:1]) + op[1:] + " a key on one tier of this agent",
			Args: func(cmd *cobra.Command, args []string) error {
				if len(args) < 1 || len(args) > 2 {
					return usageError{fmt.Errorf("%s takes TIER and, unless --key-file is given, KEY or - (usage: strata keys %s)", op, cmd.Use)}
				}
				return nil
			},
			RunE: func(cmd *cobra.Command, args []string) error {
				kc := api.KeyChange{Force: force}
				if fingerprint != "" {
					if len(args) > 1 || keyFile != "" {
						return usageError{fmt.Errorf("give the key to remove by --fingerprint or by its value, not both")}
					}
					kc.Fingerprint = fingerprint
				} else {
					key, err := readKey(cmd.InOrStdin(), args[1:], keyFile)
					if err != nil {
						return err
					}
					kc.Key = base64.StdEncoding.EncodeToString(key)
				}
				res, err := f.client().ChangeKeyWith(cmd.Context(), args[0], op, kc)
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), res)
			},
		}
		c.Flags().StringVar(&keyFile, "key-file", "", "read the key from this file (its first line that is not blank or a # comment); - reads standard input")
		switch op {
		case "use":
			c.Flags().BoolVar(&force, "force", false, "use the key even while alive members of the tier do not hold it (they stop hearing this node)")
		case "remove":
			c.Flags().StringVar(&fingerprint, "fingerprint", "", "remove the key with this fingerprint (from strata keys list) instead of giving its value")
		}
		cmd.AddCommand(c)
	}
	cmd.AddCommand(genRegionCmd())
	cmd.AddCommand(keysRotateCmd(f))
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

// readKey reads a base64 key from file (when set), from in (arg "-", or
// --key-file -) or from the argument. In a file or on standard input, blank lines and lines
// starting with # are skipped, as in a keyring file, and the first other
// line is the key.
func readKey(in io.Reader, args []string, file string) ([]byte, error) {
	var text, where string
	switch {
	case file != "" && len(args) > 0:
		return nil, usageError{fmt.Errorf("give the key by --key-file or as an argument, not both")}
	case file == "-" || (file == "" && len(args) == 1 && args[0] == "-"):
		b, err := io.ReadAll(io.LimitReader(in, 1<<16))
		if err != nil {
			return nil, fmt.Errorf("reading the key from standard input: %w", err)
		}
		text, where = firstKeyLine(string(b)), "standard input"
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--key-file: %w", err)
		}
		text, where = firstKeyLine(string(b)), file
	case len(args) == 1:
		text, where = args[0], "KEY"
	default:
		return nil, usageError{fmt.Errorf("no key: give --key-file FILE, - to read standard input, or KEY")}
	}
	if text == "" {
		return nil, usageError{fmt.Errorf("%s holds no key", where)}
	}
	key, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, usageError{fmt.Errorf("the key in %s is not base64: %v", where, err)}
	}
	return key, nil
}

func firstKeyLine(s string) string {
	for line := range strings.Lines(s) {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			return t
		}
	}
	return ""
}
