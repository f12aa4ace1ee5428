package tierbench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// arrivals is how many changes a tier's nodes applied, by the path they
// arrived on (push, repair, anti_entropy, gossip): the agents'
// strata_changes_applied_total, summed.
type arrivals map[string]float64

// arrivals reads every node's /metrics and sums the changes applied on
// tier by path; for the global tier only gateways count.
func (f *fleet) arrivals(ctx context.Context, tier string) (arrivals, error) {
	out := arrivals{}
	for _, n := range f.all() {
		if tier == "global" && !n.gateway {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.a.Addr()+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%s: metrics: %w", n.name, err)
		}
		err = parseApplied(bufio.NewScanner(resp.Body), tier, out)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: metrics: %w", n.name, err)
		}
	}
	return out, nil
}

// parseApplied adds the strata_changes_applied_total samples of tier in
// the Prometheus text format read by sc to out, by path.
func parseApplied(sc *bufio.Scanner, tier string, out arrivals) error {
	const name = "strata_changes_applied_total{"
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		labels, value, ok := strings.Cut(line[len(name):], "} ")
		if !ok {
			return fmt.Errorf("unreadable sample %q", line)
		}
		var path, t string
		for _, l := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(l, "=")
			v = strings.Trim(v, `"`)
			switch k {
			case "path":
				path = v
			case "tier":
				t = v
			}
		}
		if t != tier {
			continue
		}
		x, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return fmt.Errorf("sample %q: %w", line, err)
		}
		out[path] += x
	}
	return sc.Err()
}

// since is a minus before, path by path.
func (a arrivals) since(before arrivals) arrivals {
	out := arrivals{}
	for p, n := range a {
		if d := n - before[p]; d > 0 {
			out[p] = d
		}
	}
	return out
}

// String is "push 97.1 %, repair 2.0 %, anti_entropy 0.9 % of N".
func (a arrivals) String() string {
	var total float64
	for _, n := range a {
		total += n
	}
	if total == 0 {
		return "none"
	}
	var parts []string
	for _, p := range []string{"push", "repair", "anti_entropy", "gossip"} {
		if n, ok := a[p]; ok {
			parts = append(parts, fmt.Sprintf("%s %.1f %%", p, 100*n/total))
		}
	}
	return fmt.Sprintf("%s of %.0f", strings.Join(parts, ", "), total)
}
