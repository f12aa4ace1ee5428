package agent

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// rejection is why a change from a peer was refused; Reason labels
// strata_gossip_rejected_total.
type rejection struct {
	reason string
	err    error
}

func (r *rejection) Error() string  { return r.err.Error() }
func (r *rejection) Unwrap() error  { return r.err }
func (r *rejection) Reason() string { return r.reason }

// acceptRegional checks a regional change received from a peer against the
// contract before it is merged: the table exists, every field is declared,
// the field bytes decode strictly (no unknown fields at any depth), and the
// fields present pass their protovalidate rules. A change may carry only
// some fields (a patch), so rules on absent fields and whole-message rules
// are left to the writer's node, which validated the whole row.
func acceptRegional(c *contracts.Contract) func(store.Change, string) error {
	return func(ch store.Change, from string) error {
		sch, ok := c.Table(ch.Table)
		if !ok {
			return &rejection{"unknown_table", fmt.Errorf("table %q is not in this node's contract", ch.Table)}
		}
		if !ch.Row.Alive() {
			return nil
		}
		fields := make([]contracts.FieldValue, len(ch.Row.Fields))
		present := map[string]bool{}
		for i, f := range ch.Row.Fields {
			fd := sch.Desc.Fields().ByNumber(protowire.Number(f.Num))
			if fd == nil {
				return &rejection{"unknown_field", fmt.Errorf("%s: field number %d is not in the contract", ch.Table, f.Num)}
			}
			present[string(fd.Name())] = true
			fields[i] = contracts.FieldValue{Num: protowire.Number(f.Num), Value: f.Value}
		}
		// Join checks each value holds only its own field number, then
		// decodes strictly.
		m, err := sch.Join(fields)
		if err != nil {
			return &rejection{"decode", err}
		}
		if err := sch.Validate(m); err != nil {
			if ve, ok := err.(*contracts.ValidationError); ok {
				for _, v := range ve.Violations {
					top, _, _ := strings.Cut(v.Field, ".")
					top, _, _ = strings.Cut(top, "[")
					if present[top] {
						return &rejection{"validate", fmt.Errorf("%s/%s: %s", ch.Table, ch.Key, v)}
					}
				}
				return nil
			}
			return &rejection{"validate", err}
		}
		return nil
	}
}
