package main

import "github.com/spf13/cobra"

// newContractCmd is replaced by the contract check work (issue 6).
func newContractCmd() *cobra.Command {
	return &cobra.Command{Use: "contract", Short: "Check contracts (not yet available)", Hidden: true}
}
