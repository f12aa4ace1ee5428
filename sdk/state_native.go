//go:build !wasip1

package sdk

import "github.com/strata-state/strata/internal/abi"

// runState returns fresh state natively, where tests may run reducers
// concurrently.
func runState() (*abi.Request, *Input, *Output) { return new(abi.Request), new(Input), new(Output) }
