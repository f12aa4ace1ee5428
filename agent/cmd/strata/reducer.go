package main

import "github.com/spf13/cobra"

// newReducerCmd is replaced by the reducer work (issue 4).
func newReducerCmd() *cobra.Command {
	return &cobra.Command{Use: "reducer", Short: "Build and test reducers (not yet available)", Hidden: true}
}
