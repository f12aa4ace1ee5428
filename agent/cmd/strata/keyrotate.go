package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/api/client"
	"github.com/strata-state/strata/agent/cluster"
)

// keysRotateCmd is `strata keys rotate TIER`: add, use and remove across
// the whole tier, in that order.
//
// It reaches the other nodes through their HTTP APIs, at the address each
// advertises in its member meta (strata members shows it), with this
// command's --token. Going through the APIs, rather than a gossip message,
// keeps key changes behind the API token: holding a tier's gossip key does
// not let a node change other nodes' keyrings.
func keysRotateCmd(f *clientFlags) *cobra.Command {
	var keyFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rotate TIER [KEY|-]",
		Short: "Rotate a tier's key on every alive member: add everywhere, then use, then remove the old keys",
		Long: `Rotate a tier's key on every alive member of the tier, as this agent sees
the tier: first "add" the new key on every member; then "use" it on every
member (each member refuses until it sees that every alive member holds the
key, so rotate retries until --timeout); then remove every other key from
every member. The command reaches each member through the API address the
member advertises (strata members), with this command's --token: every
member's API must be reachable from here and accept the token. A member
whose API listens on loopback on another host cannot be reached: rotate
refuses before changing anything. Members that are not alive (dead,
suspect) or that left the tier do not block the rotation and are not
changed: the command names them, before the first step and at the end,
and each needs the new key (strata keys add on it, or in its keyring
file before it starts) to rejoin the tier.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError{fmt.Errorf("rotate takes TIER and, unless --key-file is given, KEY or - (usage: strata keys %s)", cmd.Use)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := readKey(cmd.InOrStdin(), args[1:], keyFile)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return rotateKey(ctx, cmd.OutOrStdout(), f, args[0], key)
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "", "read the new key from this file (its first line that is not blank or a # comment); - reads standard input")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long (members must learn of each other's new key in between steps)")
	return cmd
}

// rotateKey runs the three steps of a rotation on every alive member.
func rotateKey(ctx context.Context, out io.Writer, f *clientFlags, tier string, key []byte) error {
	res, err := f.client().Members(ctx)
	if err != nil {
		return err
	}
	members, ok := res.Tiers[tier]
	if !ok {
		return usageError{fmt.Errorf("the agent at %s has no %q tier", f.addr, tier)}
	}
	alive, away, left := splitMembers(members)
	if err := reachable(alive); err != nil {
		return err
	}
	fp := cluster.Fingerprint(key)
	kc := client.KeyChange{Key: base64.StdEncoding.EncodeToString(key)}
	memberClient := func(m client.Member) *client.Client { return client.New(m.API, f.apiToken()) }

	fmt.Fprintf(out, "rotating the %s tier to key %s on %d alive members\n", tier, fp, len(alive))
	if len(away) > 0 {
		fmt.Fprintf(out, "not alive, not changed: %s: if one is running behind a partition, it cannot rejoin once the old key is removed: run strata keys add on it, or put the new key in its keyring file before it restarts\n", strings.Join(away, ", "))
	}
	if len(left) > 0 {
		fmt.Fprintf(out, "left the tier, not changed: %s: put the new key in its keyring file before it starts again\n", strings.Join(left, ", "))
	}
	for _, m := range alive {
		if _, err := memberClient(m).ChangeKeyWith(ctx, tier, "add", kc); err != nil {
			return fmt.Errorf("add on %s (%s): %w; nothing encrypts with the new key yet: fix and run rotate again", m.Name, m.API, err)
		}
		fmt.Fprintf(out, "  add     %s\n", m.Name)
	}
	for _, m := range alive {
		if err := retryUse(ctx, memberClient(m), tier, kc); err != nil {
			return fmt.Errorf("use on %s (%s): %w; members before it encrypt with the new key, every member holds it: run rotate again", m.Name, m.API, err)
		}
		fmt.Fprintf(out, "  use     %s\n", m.Name)
	}
	for _, m := range alive {
		c := memberClient(m)
		var all struct {
			Tiers map[string]client.KeyInfo `json:"tiers"`
		}
		if err := c.GetJSON(ctx, "/v1/keys", &all); err != nil {
			return fmt.Errorf("listing keys on %s: %w", m.Name, err)
		}
		for _, old := range all.Tiers[tier].Keys {
			if old == fp {
				continue
			}
			if _, err := c.ChangeKeyWith(ctx, tier, "remove", client.KeyChange{Fingerprint: old}); err != nil {
				return fmt.Errorf("remove %s on %s: %w", old, m.Name, err)
			}
			fmt.Fprintf(out, "  remove  %s %s\n", m.Name, old)
		}
	}
	fmt.Fprintf(out, "done: every alive member of the %s tier holds and uses only key %s\n", tier, fp)
	notChanged := slices.Clone(away)
	for _, name := range left {
		notChanged = append(notChanged, name+" (left)")
	}
	if len(notChanged) > 0 {
		fmt.Fprintf(out, "not changed: %s: each needs the new key (strata keys add on it, or its keyring file) to rejoin\n", strings.Join(notChanged, ", "))
	}
	return nil
}

// splitMembers sorts a tier's members for a rotation, as Consul's keyring
// operations do: the alive members are rotated; members that are not
// alive (dead: failed or cut off; suspect) do not block the rotation but
// are named, with their state, before and after it, since one still
// running behind a partition cannot rejoin without the new key; members
// that left the tier gracefully do not block it either and are named
// apart, since they are gone until restarted.
func splitMembers(members []client.Member) (alive []client.Member, away, left []string) {
	for _, m := range members {
		switch m.State {
		case "alive":
			alive = append(alive, m)
		case "left":
			left = append(left, m.Name)
		default:
			away = append(away, m.Name+" ("+m.State+")")
		}
	}
	return alive, away, left
}

// retryUse makes the key primary on one member, retrying while the member
// refuses because it has not yet seen every alive member hold the key.
func retryUse(ctx context.Context, c *client.Client, tier string, kc client.KeyChange) error {
	for {
		_, err := c.ChangeKeyWith(ctx, tier, "use", kc)
		var ae *client.Error
		if err == nil || !errors.As(err, &ae) || ae.Code != api.CodeKeyNotHeld {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting for every member to advertise the key: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// reachable refuses a rotation whose members cannot all be reached
// through their advertised API addresses: missing, shared by several
// members, or on loopback while the member gossips from another host.
func reachable(members []client.Member) error {
	seen := map[string]string{}
	for _, m := range members {
		if m.API == "" {
			return fmt.Errorf("member %s advertises no API address: run the rotation's steps on it by hand (strata keys add|use|remove)", m.Name)
		}
		if other, dup := seen[m.API]; dup {
			return fmt.Errorf("members %s and %s advertise the same API address %s (a loopback [api] addr on each host?): they cannot be told apart from here; run the steps on each host by hand", other, m.Name, m.API)
		}
		seen[m.API] = m.Name
		apiHost, _, _ := net.SplitHostPort(m.API)
		gossipHost, _, _ := net.SplitHostPort(m.Addr)
		if ip := net.ParseIP(apiHost); ip != nil && ip.IsLoopback() && !slices.Contains([]string{apiHost, "localhost"}, gossipHost) {
			if g := net.ParseIP(gossipHost); g == nil || !g.IsLoopback() {
				return fmt.Errorf("member %s's API listens on loopback (%s) but it gossips from %s: it cannot be reached from here; run the steps on each host by hand", m.Name, m.API, m.Addr)
			}
		}
	}
	return nil
}
