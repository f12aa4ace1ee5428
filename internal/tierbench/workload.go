package tierbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// appsPerRegion is how many apps the loaded machines belong to.
const appsPerRegion = 20

// churnInFlight bounds the churn writes in flight per region.
const churnInFlight = 32

// visibleWithin bounds how long a probe waits for a write to be seen
// everywhere; beyond it the write is counted as missed.
const visibleWithin = 30 * time.Second

// machine is the workload's view of one machine row.
type machine struct {
	id, app string
	started bool
	healthy bool
}

func (m *machine) json(ip int) json.RawMessage {
	state := "MACHINE_STATE_STOPPED"
	if m.started {
		state = "MACHINE_STATE_STARTED"
	}
	return json.RawMessage(fmt.Sprintf(`{"id":%q,"app":%q,"state":%q,"healthy":%v,"host":"h-%02d","private_ip":"10.%d.%d.%d"}`,
		m.id, m.app, state, m.healthy, ip%32, 1+ip/65536, ip/256%256, ip%256))
}

// regionLoad is one region's machines and random source; the random
// source is seeded from the run's seed and the region's index, so both
// topologies see the same sequence of writes.
type regionLoad struct {
	mu       sync.Mutex
	rng      *rand.Rand
	machines []*machine
}

// workload drives the fleet.
type workload struct {
	cfg     Config
	apps    []string
	regions []*regionLoad
	writes  atomic.Int64
	skipped atomic.Int64 // churn ticks skipped: churnInFlight writes in flight
}

func newWorkload(cfg Config) *workload {
	w := &workload{cfg: cfg}
	for i := 0; i < appsPerRegion; i++ {
		w.apps = append(w.apps, fmt.Sprintf("app-%02d", i))
	}
	for ri := 0; ri < cfg.Regions; ri++ {
		rl := &regionLoad{rng: rand.New(rand.NewPCG(cfg.Seed, uint64(ri)))}
		for i := 0; i < cfg.Machines; i++ {
			rl.machines = append(rl.machines, &machine{id: fmt.Sprintf("%s-m%05d", regionName(ri), i),
				app: w.apps[i%len(w.apps)], started: true, healthy: true})
		}
		w.regions = append(w.regions, rl)
	}
	return w
}

// load writes every region's machines in batches through the API of the
// region's running nodes in turn, the regions at once.
func (w *workload) load(ctx context.Context, f *fleet) error {
	const batch = 200
	errs := make([]error, len(w.regions))
	var wg sync.WaitGroup
	for ri, rl := range w.regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes := f.regions[ri]
			for i := 0; i < len(rl.machines); i += batch {
				rows := []byte{'['}
				for j := i; j < min(i+batch, len(rl.machines)); j++ {
					if j > i {
						rows = append(rows, ',')
					}
					rows = append(rows, rl.machines[j].json(j)...)
				}
				rows = append(rows, ']')
				if _, err := nodes[(i/batch)%len(nodes)].client.Batch(ctx, "machines", rows); err != nil {
					errs[ri] = fmt.Errorf("loading %s's machines: %w", regionName(ri), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// churn flips machines' health (4 in 5) or state (1 in 5), Churn times a
// second in every region, through a random node of the region. Writes
// are sent without waiting for the previous one, up to churnInFlight per
// region; a tick that finds that many in flight is skipped and counted.
func (w *workload) churn(ctx context.Context, f *fleet) {
	if w.cfg.Churn == 0 {
		return
	}
	var wg sync.WaitGroup
	for ri, rl := range w.regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inFlight := make(chan struct{}, churnInFlight)
			t := time.NewTicker(time.Second / time.Duration(w.cfg.Churn))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				select {
				case inFlight <- struct{}{}:
				default:
					w.skipped.Add(1)
					continue
				}
				rl.mu.Lock()
				i := rl.rng.IntN(len(rl.machines))
				m := rl.machines[i]
				if rl.rng.IntN(5) == 0 {
					m.started = !m.started
				} else {
					m.healthy = !m.healthy
				}
				row, id := m.json(i), m.id
				n := f.regions[ri][rl.rng.IntN(len(f.regions[ri]))]
				rl.mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-inFlight }()
					if _, err := n.client.Put(ctx, "machines", id, row); err == nil {
						w.writes.Add(1)
					}
				}()
			}
		}()
	}
	wg.Wait()
}

// placements starts and stops apps in every region, Placements times a
// minute per region: each event writes (or deletes) the one machine of an
// app that runs nowhere else, and times until every other region sees the
// change; others gets the samples of the regions but the first, which a
// fault run compares. It returns when the window ends and its probes are
// done.
func (f *fleet) placements(ctx context.Context, w *workload, s, others *samples) {
	if w.cfg.Placements == 0 {
		<-ctx.Done()
		return
	}
	var wg sync.WaitGroup
	every := time.Minute / time.Duration(w.cfg.Placements)
	for ri := range f.regions {
		if w.cfg.Fault != FaultNone && ri == faultRegion {
			continue // with a fault, the other regions' propagation is what counts
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			region := regionName(ri)
			rng := rand.New(rand.NewPCG(w.cfg.Seed, 1000+uint64(ri)))
			// Stagger the regions over the first interval.
			first := every * time.Duration(ri) / time.Duration(len(f.regions))
			t := time.NewTimer(first)
			defer t.Stop()
			running := map[int]bool{}
			var probes sync.WaitGroup
			defer probes.Wait()
			for k := 0; ; k++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				t.Reset(every)
				app := rng.IntN(4)
				start := !running[app]
				running[app] = start
				name := "mv-" + region + "-" + strconv.Itoa(app)
				// The id differs from the app: ids are regional_only, and
				// the leak guard refuses a record that carries one.
				m := &machine{id: name + "-m1", app: name, started: true, healthy: true}
				n := f.regions[ri][rng.IntN(len(f.regions[ri]))]
				t0 := time.Now()
				var err error
				if start {
					_, err = n.client.Put(ctx, "machines", m.id, m.json(k))
				} else {
					_, err = n.client.Delete(ctx, "machines", m.id)
				}
				if err != nil {
					continue
				}
				w.writes.Add(1)
				probes.Add(1)
				go func() {
					defer probes.Done()
					if f.waitPlacement(region, m.id, m.app, start) {
						d := time.Since(t0)
						s.add(d)
						if ri != faultRegion {
							others.add(d)
						}
					} else {
						s.miss()
					}
				}()
			}
		}()
	}
	wg.Wait()
}

// waitPlacement polls every consumer outside region until all see the app
// started (or stopped) there: every gateway's app_placements record in
// two-tier, every node's machine row in single.
func (f *fleet) waitPlacement(region, id, app string, started bool) bool {
	deadline := time.Now().Add(visibleWithin)
	for time.Now().Before(deadline) {
		all := true
		for _, n := range f.all() {
			if n.region == region {
				continue
			}
			var seen bool
			if f.topo == TwoTier {
				if !n.gateway {
					continue
				}
				_, err := global.Get(n.a.Global(), "app_placements", region, app)
				seen = err == nil
			} else {
				_, err := n.a.Store().Get("machines", id)
				seen = err == nil
			}
			if seen != started {
				all = false
				break
			}
		}
		if all {
			return true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return false
}

// probeRegional writes a probe machine (stopped, so it changes no
// placement) in every region every 250 ms and times until every node of
// its region holds that version.
func (f *fleet) probeRegional(ctx context.Context, s *samples) {
	var wg sync.WaitGroup
	for ri := range f.regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			region := regionName(ri)
			nodes := f.regions[ri]
			id := "probe-" + region
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for k := 0; ; k++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				m := &machine{id: id, app: "probe", healthy: k%2 == 0}
				writer := nodes[k%len(nodes)]
				t0 := time.Now()
				if _, err := writer.client.Put(ctx, "machines", id, m.json(k)); err != nil {
					continue
				}
				want, err := writer.a.Store().Get("machines", id)
				if err != nil {
					continue // overwritten or deleted meanwhile: not a sample
				}
				if f.waitRow(nodes, id, want) {
					s.add(time.Since(t0))
				} else {
					s.miss()
				}
			}
		}()
	}
	wg.Wait()
}

// waitRow polls until every node holds row id at want's version or later.
func (f *fleet) waitRow(nodes []*node, id string, want store.Row) bool {
	deadline := time.Now().Add(visibleWithin)
	for time.Now().Before(deadline) {
		all := true
		for _, n := range nodes {
			got, err := n.a.Store().GetAny("machines", id)
			if err != nil || got.Latest().Compare(want.Latest()) < 0 {
				all = false
				break
			}
		}
		if all {
			return true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return false
}

// invalidRecords counts the global records held by any gateway that fail
// the contract's write checks.
func (f *fleet) invalidRecords() (int, error) {
	bad := 0
	for _, n := range f.all() {
		if !n.gateway {
			continue
		}
		recs, err := global.List(n.a.Global(), "app_placements", "")
		if err != nil {
			return 0, err
		}
		for _, r := range recs {
			err := n.a.Contract().CheckWrite(contracts.Write{Record: r.Name, Key: r.Key, Region: r.Region, Writer: r.Region, Value: r.Value})
			if err != nil && !errors.Is(err, contracts.ErrRejected) {
				return 0, err
			}
			if err != nil {
				bad++
			}
		}
	}
	return bad, nil
}

func listPlacements(n *node, region string) ([]global.Stored, error) {
	return global.List(n.a.Global(), "app_placements", region)
}

// invalidWrites counts FaultWrites' writes.
type invalidWrites struct{ sent, acked atomic.Int64 }

// invalidBodies break the contract each in its own way: a key that is not
// an app name, a field the contract lacks, a key field that disagrees
// with the key, and (for rows) an id with capitals and spaces.
var (
	invalidRecords = []struct{ key, body string }{
		{"Bad App", `{"app":"Bad App","serving":true}`},
		{"web", `{"app":"web","serving":true,"machine_ip":"10.0.0.1"}`},
		{"web", `{"app":"api","serving":true}`},
	}
	invalidRows = []struct{ key, body string }{
		{"BAD ID", `{"id":"BAD ID","app":"web","state":"MACHINE_STATE_STARTED","healthy":true}`},
		{"ord-bad", `{"id":"ord-bad","app":"web","state":"MACHINE_STATE_STARTED","machine_ip":"x"}`},
		{"ord-bad2", `{"id":"ord-bad2","app":"Web!","state":"MACHINE_STATE_STARTED"}`},
	}
)

// invalidWrites sends the fault region 100 invalid writes a second through
// its nodes' APIs: global records to its gateways (two-tier), machine
// rows to its nodes (single).
func (f *fleet) invalidWrites(ctx context.Context, c *invalidWrites) {
	nodes := f.regions[faultRegion]
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := nodes[k%len(nodes)]
		var err error
		if f.topo == TwoTier {
			gws := nodes[:f.cfg.Gateways]
			n = gws[k%len(gws)]
			w := invalidRecords[k%len(invalidRecords)]
			err = n.client.PutJSON(ctx, "/v1/global/app_placements/"+url.PathEscape(w.key), []byte(w.body), nil)
		} else {
			w := invalidRows[k%len(invalidRows)]
			_, err = n.client.Put(ctx, "machines", w.key, json.RawMessage(w.body))
		}
		if ctx.Err() != nil {
			return
		}
		c.sent.Add(1)
		if err == nil {
			c.acked.Add(1)
		}
	}
}
