package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent/api/client"
)

// clientFlags are the flags every client command shares.
type clientFlags struct {
	addr  string
	token string
}

func (f *clientFlags) client() *client.Client { return client.New(f.addr, f.apiToken()) }

// apiToken is --token, or else STRATA_TOKEN. The variable is read here,
// after the flags are parsed, never as the flag's default: a default is
// printed by --help, and the token must not be.
func (f *clientFlags) apiToken() string {
	if f.token != "" {
		return f.token
	}
	return os.Getenv("STRATA_TOKEN")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func addClientCommands(root *cobra.Command) {
	f := &clientFlags{}
	root.PersistentFlags().StringVar(&f.addr, "addr", envOr("STRATA_ADDR", "127.0.0.1:7070"), "agent API address (env STRATA_ADDR)")
	root.PersistentFlags().StringVar(&f.token, "token", "", "API bearer token (default: env STRATA_TOKEN)")
	root.AddCommand(putCmd(f), getCmd(f), delCmd(f), lsCmd(f), watchCmd(f), statusCmd(f), membersCmd(f), keysCmd(f),
		backupCmd(f), restoreCmd())
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// rowArg reads a JSON row argument; "-" reads standard input.
func rowArg(cmd *cobra.Command, arg string) (json.RawMessage, error) {
	b := []byte(arg)
	if arg == "-" {
		var err error
		if b, err = io.ReadAll(cmd.InOrStdin()); err != nil {
			return nil, err
		}
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		where := "the JSON argument is empty"
		if arg == "-" {
			where = "standard input is empty"
		}
		return nil, usageError{fmt.Errorf("no JSON given: %s", where)}
	}
	if !json.Valid(b) {
		return nil, usageError{fmt.Errorf("the row is not valid JSON: %.80s", b)}
	}
	return b, nil
}

func putCmd(f *clientFlags) *cobra.Command {
	var patch, batch bool
	cmd := &cobra.Command{
		Use:   "put TABLE KEY JSON | put --batch TABLE JSON",
		Short: "Write a row (JSON as an argument, or - for standard input)",
		Example: `  strata put machines m-1 '{"id":"m-1","app":"web","state":"MACHINE_STATE_STARTED","healthy":true}'
  strata put --patch machines m-1 '{"healthy":false}'
  strata put --batch machines - < rows.json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if batch {
				if len(args) != 2 {
					return usageError{fmt.Errorf("put --batch takes TABLE and a JSON array")}
				}
				rows, err := rowArg(cmd, args[1])
				if err != nil {
					return err
				}
				res, err := f.client().Batch(cmd.Context(), args[0], rows)
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), res)
			}
			if len(args) != 3 {
				return usageError{fmt.Errorf("put takes TABLE KEY JSON")}
			}
			row, err := rowArg(cmd, args[2])
			if err != nil {
				return err
			}
			c := f.client()
			write := c.Put
			if patch {
				write = c.Patch
			}
			res, err := write(cmd.Context(), args[0], args[1], row)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res)
		},
	}
	cmd.Flags().BoolVar(&patch, "patch", false, "write only the fields in JSON (PATCH) instead of replacing the row")
	cmd.Flags().BoolVar(&batch, "batch", false, "upsert a JSON array of rows in one transaction")
	return cmd
}

func getCmd(f *clientFlags) *cobra.Command {
	var global bool
	cmd := &cobra.Command{
		Use:   "get TABLE KEY | get --global RECORD [KEY]",
		Short: "Read one row, or a global record in every region that publishes it",
		Example: `  strata get machines m-1
  strata get --global app_placements web    # on a gateway: each region's record, published_at, stale
  strata get --global app_placements        # every key`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if global {
				var path string
				switch len(args) {
				case 1:
					path = "/v1/global/" + client.Segment(args[0])
				case 2:
					path = "/v1/global/" + client.Segment(args[0]) + "/" + client.Segment(args[1])
				default:
					return usageError{fmt.Errorf("get --global takes RECORD and an optional KEY")}
				}
				var res json.RawMessage
				if err := f.client().GetJSON(cmd.Context(), path, &res); err != nil {
					return err
				}
				var v any
				json.Unmarshal(res, &v)
				return printJSON(cmd.OutOrStdout(), v)
			}
			if len(args) != 2 {
				return usageError{fmt.Errorf("get takes TABLE KEY (or --global RECORD [KEY])")}
			}
			res, err := f.client().Get(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res)
		},
	}
	cmd.Flags().BoolVar(&global, "global", false, "read a global record (on a gateway)")
	return cmd
}

func delCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "del TABLE KEY",
		Short: "Delete one row",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := f.client().Delete(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res)
		},
	}
}

func lsCmd(f *clientFlags) *cobra.Command {
	var after, output string
	var limit int
	var all bool
	cmd := &cobra.Command{
		Use:   "ls TABLE",
		Short: "List rows of a table, in key order",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := f.client()
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if output == "text" {
				fmt.Fprintln(tw, "KEY\tSTAMP\tROW")
			}
			for {
				page, err := c.List(cmd.Context(), args[0], after, limit)
				if err != nil {
					return err
				}
				for _, r := range page.Rows {
					switch output {
					case "json":
						b, _ := json.Marshal(r)
						fmt.Fprintf(out, "%s\n", b)
					default:
						var compact bytes.Buffer
						json.Compact(&compact, r.Row)
						fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Key, r.Stamp, compact.String())
					}
				}
				if page.Next == "" || !all {
					if page.Next != "" && output == "text" {
						tw.Flush()
						fmt.Fprintf(cmd.ErrOrStderr(), "more rows: use --after %q or --all\n", page.Next)
					}
					break
				}
				after = page.Next
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&after, "after", "", "list keys after this one")
	cmd.Flags().IntVar(&limit, "limit", 100, "rows per page")
	cmd.Flags().BoolVar(&all, "all", false, "follow pages to the end")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (one row per line)")
	return cmd
}

func watchCmd(f *clientFlags) *cobra.Command {
	var since uint64
	var global bool
	cmd := &cobra.Command{
		Use:   "watch TABLE | watch --global RECORD",
		Short: "Stream a table: its rows, then every change (one JSON event per line)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			watch := f.client().Watch
			if global {
				watch = f.client().WatchGlobal
			}
			return watch(cmd.Context(), args[0], since, func(ev client.WatchEvent) error {
				line := struct {
					ID    uint64          `json:"id,omitempty"`
					Event string          `json:"event"`
					Data  json.RawMessage `json:"data"`
				}{ev.ID, ev.Name, ev.Data}
				b, err := json.Marshal(line)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(out, "%s\n", b)
				return err
			})
		},
	}
	cmd.Flags().Uint64Var(&since, "since", 0, "resume after this event id instead of starting with a snapshot")
	cmd.Flags().BoolVar(&global, "global", false, "watch a global record type (every region) instead of a table")
	return cmd
}

func statusCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the agent's status",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := f.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			var v any
			if err := json.Unmarshal(res, &v); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), v)
		},
	}
}

func membersCmd(f *clientFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the members of each tier this agent belongs to",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := f.client().Members(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIER\tNAME\tSTATE\tADDR\tREGION\tROLES\tAPI\tPROTOCOL\tBUILD\tKEYS\tDECRYPT_FAILURES")
			for _, tier := range []string{"regional", "global"} {
				for _, m := range res.Tiers[tier] {
					roles := m.Roles
					if m.Name == res.Publisher {
						// A marker, not an advertised role: the region's
						// publisher as the answering node sees it.
						roles = append(slices.Clip(roles), "publisher")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", tier, m.Name, m.State, m.Addr, m.Region, strings.Join(roles, ","), m.API, m.Protocol, m.Build, strings.Join(m.Keys, ","), m.DecryptFailures)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %d argument(s), got %d (usage: strata %s)", cmd.Name(), n, len(args), cmd.Use)}
		}
		return nil
	}
}
