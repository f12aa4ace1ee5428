package reducer

import (
	"context"
	"sync"

	"github.com/strata-state/strata/contracts/check"
)

// CheckHost runs reducers for `strata contract check --config`'s
// conformance step (package contracts/check): it loads each reducer once,
// on first use, in its Host, exactly as the agent does, and runs it on the
// fixtures' rows.
type CheckHost struct {
	h *Host

	mu     sync.Mutex
	loaded map[string]*Reducer
}

var _ check.Host = (*CheckHost)(nil)

// NewCheckHost returns a CheckHost running reducers in h.
func NewCheckHost(h *Host) *CheckHost {
	return &CheckHost{h: h, loaded: map[string]*Reducer{}}
}

// Run loads r (once) and runs it on in.
func (c *CheckHost) Run(ctx context.Context, r check.Reducer, in check.Input) ([]check.Output, error) {
	c.mu.Lock()
	red := c.loaded[r.Name]
	c.mu.Unlock()
	if red == nil {
		var err error
		red, err = c.h.Load(ctx, Config{Name: r.Name, Source: r.Source, Wasm: r.Wasm, Inputs: r.Inputs, Outputs: r.Outputs})
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.loaded[r.Name] = red
		c.mu.Unlock()
	}
	tables := make([]Table, len(in.Tables))
	for i, t := range in.Tables {
		tables[i] = Table{Name: t.Name, Rows: t.Rows}
	}
	res, err := red.Run(ctx, in.Region, tables)
	if err != nil {
		return nil, err
	}
	out := make([]check.Output, len(res.Records))
	for i, rec := range res.Records {
		out[i] = check.Output{Record: rec.Name, Key: rec.Key, Value: rec.Value}
	}
	return out, nil
}

// Close closes the reducers it loaded (not the Host).
func (c *CheckHost) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, r := range c.loaded {
		r.Close(ctx)
		delete(c.loaded, name)
	}
	return nil
}
