package publish

import (
	"bytes"
	"slices"
	"strings"

	"github.com/strata-state/strata/agent/global"
)

// Decide compares a reducer's complete output with the records its region
// has published of the same types, and returns the writes that make them
// equal: deletes (empty Value) of vanished records first, so that they
// free their slots of max_per_region before new records take them, then
// upserts of new or changed records, each group sorted by type and key. A
// published record for which resign reports true is written again even if
// unchanged (it carries an old key's signature). Regional churn that leaves
// the output unchanged decides nothing. Decide is pure; both inputs may be
// in any order.
func Decide(published []global.Stored, output []global.Record, resign func(global.Stored) bool) []global.Record {
	type nk struct{ name, key string }
	have := make(map[nk]global.Stored, len(published))
	for _, s := range published {
		have[nk{s.Name, s.Key}] = s
	}
	var upserts, deletes []global.Record
	for _, r := range output {
		id := nk{r.Name, r.Key}
		s, ok := have[id]
		if !ok || !bytes.Equal(s.Value, r.Value) || (resign != nil && resign(s)) {
			upserts = append(upserts, r)
		}
		delete(have, id)
	}
	for _, s := range have {
		deletes = append(deletes, global.Record{Name: s.Name, Region: s.Region, Key: s.Key})
	}
	cmp := func(a, b global.Record) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	}
	slices.SortFunc(upserts, cmp)
	slices.SortFunc(deletes, cmp)
	return append(deletes, upserts...)
}
