package plumtree

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// TestSimulation runs random regions through random broadcasts, message
// reordering, failed sends (reported to the sender, as a broken stream
// is) and messages dropped on arrival (reported to the receiver, as a full
// inbox is), then heals the network and checks the model: every node
// applied every message exactly once, or gave the rest up to anti-entropy
// and asked for it.
func TestSimulation(t *testing.T) {
	seeds := uint64(80)
	if testing.Short() || raceEnabled {
		seeds = 15
	}
	if v := os.Getenv("PLUMTREE_SEEDS"); v != "" { // a longer search: PLUMTREE_SEEDS=2000
		fmt.Sscan(v, &seeds)
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { simulate(t, seed) })
	}
}

func simulate(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	n := 2 + rng.IntN(10)
	fanout := 1 + rng.IntN(4)
	failRate, dropRate := rng.Float64()*0.2, rng.Float64()*0.2
	names := make([]string, n)
	nodes := map[string]*Node{}
	for i := range names {
		names[i] = fmt.Sprintf("n%02d", i)
		nodes[names[i]] = New(Config{Self: names[i], Epoch: 1, Fanout: fanout, Rand: rand.New(rand.NewPCG(seed, uint64(i)))})
	}
	type flight struct {
		from, to string
		msg      Message
	}
	var inFlight []flight
	applied := map[string]map[ID]int{}
	aeAsked := map[string]bool{}
	for _, name := range names {
		applied[name] = map[ID]int{}
	}
	faulty := true
	collect := func(name string) {
		for nodes[name].HasReady() {
			rd := nodes[name].Ready()
			for _, d := range rd.Deliveries {
				applied[name][d.Item.ID]++
			}
			for _, s := range rd.Sends {
				if faulty && rng.Float64() < failRate {
					nodes[name].SendFailed(s.To)
					continue
				}
				inFlight = append(inFlight, flight{name, s.To, s.Msg})
			}
			if len(rd.AntiEntropy) > 0 {
				aeAsked[name] = true
			}
		}
	}
	for _, a := range names {
		for _, b := range names {
			nodes[a].PeerUp(b)
		}
		collect(a)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var sent []ID
	seqs := map[string]uint64{}
	step := func() {
		switch r := rng.Float64(); {
		case r < 0.2 && faulty:
			o := names[rng.IntN(n)]
			k := 1 + rng.IntN(3)
			var ps [][]byte
			for range k {
				seqs[o]++
				sent = append(sent, ID{o, 1, seqs[o]})
				ps = append(ps, []byte(fmt.Sprintf("%s-%d", o, seqs[o])))
			}
			nodes[o].Broadcast(ps...)
			collect(o)
		case r < 0.3:
			now = now.Add(time.Duration(rng.IntN(60)) * time.Millisecond)
			for _, name := range names {
				nodes[name].Tick(now)
				collect(name)
			}
		case len(inFlight) > 0:
			i := rng.IntN(len(inFlight)) // any order
			f := inFlight[i]
			inFlight[i] = inFlight[len(inFlight)-1]
			inFlight = inFlight[:len(inFlight)-1]
			if faulty && rng.Float64() < dropRate {
				nodes[f.to].Resync(f.from)
				collect(f.to)
				return
			}
			nodes[f.to].Step(f.from, f.msg)
			nodes[f.from].Sent(f.to)
			collect(f.to)
		}
	}
	for range 1500 {
		step()
	}
	// Heal: no more faults; run until quiet, ticking through every
	// backoff.
	faulty = false
	for round := 0; round < 60; round++ {
		for len(inFlight) > 0 {
			step()
		}
		now = now.Add(300 * time.Millisecond)
		for _, name := range names {
			nodes[name].Tick(now)
			collect(name)
		}
	}
	if len(inFlight) > 0 {
		t.Fatalf("still %d messages in flight after the heal", len(inFlight))
	}
	for _, name := range names {
		missing := 0
		for _, id := range sent {
			c := applied[name][id]
			if c > 1 {
				t.Fatalf("%s applied %s %d times", name, id, c)
			}
			if c == 0 && id.Origin != name {
				missing++
			}
		}
		if missing > 0 && !aeAsked[name] {
			t.Errorf("n=%d fanout=%d fail=%.2f drop=%.2f: %s lacks %d of %d messages and never asked for anti-entropy",
				n, fanout, failRate, dropRate, name, missing, len(sent))
		}
	}
}
