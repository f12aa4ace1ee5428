//go:build wasip1

package sdk

import "github.com/strata-state/strata/internal/abi"

// The request, Input and Output of the current run. The host calls a module
// once at a time, so they are reused from run to run: every allocation in
// the guest costs (see Yield).
var (
	scratchReq abi.Request
	scratchIn  Input
	scratchOut Output
)

func runState() (*abi.Request, *Input, *Output) { return &scratchReq, &scratchIn, &scratchOut }
