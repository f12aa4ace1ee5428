package plumtree

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt")

// net is a scenario's network: nodes, and messages in flight in FIFO
// order. A cut link fails sends (the sender learns it, as a broken stream
// tells it).
type net struct {
	nodes   map[string]*Node
	names   []string
	flight  []flight
	cut     map[[2]string]bool
	now     time.Time
	applied map[string][]string // node → ids applied, in order
}

type flight struct {
	from string
	s    Send
}

// collect moves a node's Ready into the network and prints it.
func (w *net) collect(name string, out *strings.Builder) {
	n := w.nodes[name]
	rd := n.Ready()
	for _, d := range rd.Deliveries {
		w.applied[name] = append(w.applied[name], d.Item.ID.String())
	}
	for _, s := range rd.Sends {
		if w.cut[[2]string{name, s.To}] {
			fmt.Fprintf(out, "%s->%s failed: %s\n", name, s.To, s.Msg)
			n.SendFailed(s.To)
			continue
		}
		w.flight = append(w.flight, flight{name, s})
	}
	for _, p := range rd.AntiEntropy {
		fmt.Fprintf(out, "%s: anti-entropy with %s\n", name, p)
	}
	if n.HasReady() {
		w.collect(name, out)
	}
}

func (w *net) run(t *testing.T, cmd string, args []string) string {
	var out strings.Builder
	switch cmd {
	case "nodes": // nodes fanout=N a b c …
		var cfg Config
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "fanout="); ok {
				fmt.Sscan(v, &cfg.Fanout)
				continue
			}
			if v, ok := strings.CutPrefix(a, "cache="); ok {
				fmt.Sscan(v, &cfg.CacheBytes)
				continue
			}
			if v, ok := strings.CutPrefix(a, "window="); ok {
				fmt.Sscan(v, &cfg.Window)
				continue
			}
			c := cfg
			c.Self, c.Epoch = a, 1
			w.nodes[a] = New(c)
			w.names = append(w.names, a)
		}
		slices.Sort(w.names)
	case "restart": // restart a: a new epoch, no state
		n := w.nodes[args[0]]
		c := n.cfg
		c.Epoch++
		c.Rand = nil
		w.nodes[args[0]] = New(c)
		w.applied[args[0]] = nil
	case "up": // up a b c: a learns b and c speak the protocol
		for _, p := range args[1:] {
			w.nodes[args[0]].PeerUp(p)
		}
		w.collect(args[0], &out)
	case "down":
		for _, p := range args[1:] {
			w.nodes[args[0]].PeerDown(p)
		}
		w.collect(args[0], &out)
	case "mesh": // every node learns every other
		for _, a := range w.names {
			for _, b := range w.names {
				w.nodes[a].PeerUp(b)
			}
			w.collect(a, &out)
		}
	case "broadcast": // broadcast a x y
		var ps [][]byte
		for _, p := range args[1:] {
			ps = append(ps, []byte(p))
		}
		w.nodes[args[0]].Broadcast(ps...)
		w.collect(args[0], &out)
	case "deliver": // deliver [n]: deliver messages in flight (all, or n)
		limit := -1
		if len(args) > 0 {
			fmt.Sscan(args[0], &limit)
		}
		for len(w.flight) > 0 && limit != 0 {
			f := w.flight[0]
			w.flight = w.flight[1:]
			limit--
			fmt.Fprintf(&out, "%s->%s %s\n", f.from, f.s.To, f.s.Msg)
			if w.cut[[2]string{f.from, f.s.To}] {
				fmt.Fprintf(&out, "  lost\n")
				continue
			}
			n := w.nodes[f.s.To]
			n.Step(f.from, f.s.Msg)
			w.nodes[f.from].Sent(f.s.To)
			w.collect(f.s.To, &out)
		}
	case "drop": // drop: lose every message in flight
		for _, f := range w.flight {
			fmt.Fprintf(&out, "dropped %s->%s %s\n", f.from, f.s.To, f.s.Msg)
		}
		w.flight = nil
	case "cut": // cut a b: the link a-b fails both ways
		w.cut[[2]string{args[0], args[1]}] = true
		w.cut[[2]string{args[1], args[0]}] = true
	case "heal":
		clear(w.cut)
	case "tick": // tick 60ms: advance every node's clock
		d, err := time.ParseDuration(args[0])
		if err != nil {
			t.Fatal(err)
		}
		w.now = w.now.Add(d)
		for _, name := range w.names {
			w.nodes[name].Tick(w.now)
			w.collect(name, &out)
		}
	case "evict": // evict a b: a's queue to b overflowed and was dropped
		w.flight = slices.DeleteFunc(w.flight, func(f flight) bool {
			if f.from == args[0] && f.s.To == args[1] {
				fmt.Fprintf(&out, "dropped %s->%s %s\n", f.from, f.s.To, f.s.Msg)
				return true
			}
			return false
		})
		w.nodes[args[0]].Evicted(args[1])
		w.collect(args[0], &out)
	case "state":
		for _, name := range w.names {
			n := w.nodes[name]
			e, l := n.Peers()
			var heads []string
			for _, o := range sortedKeys(n.tracks) {
				if h, ok := n.head(o); ok {
					heads = append(heads, fmt.Sprintf("%s:%d", o, h.Seq))
				}
			}
			// Per-origin modes that differ from the link's: peer(origin:mode).
			var per []string
			for _, pn := range sortedKeys(n.peers) {
				for _, o := range sortedKeys(n.peers[pn].origins) {
					m := "eager"
					if n.peers[pn].origins[o] == lazy {
						m = "lazy"
					}
					per = append(per, fmt.Sprintf("%s(%s:%s)", pn, o, m))
				}
			}
			perStr := ""
			if len(per) > 0 {
				perStr = fmt.Sprintf(" for=%v", per)
			}
			fmt.Fprintf(&out, "%s: eager=%v lazy=%v%s heads=%v applied=%d %+v\n", name, e, l, perStr, heads, len(w.applied[name]), n.Stats())
		}
	default:
		t.Fatalf("unknown command %q", cmd)
	}
	return out.String()
}

// TestScenarios runs testdata/*.txt: each block is a command line, "----",
// and the expected output, ended by a blank line. -rewrite regenerates
// the expected outputs.
func TestScenarios(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			w := &net{nodes: map[string]*Node{}, cut: map[[2]string]bool{}, applied: map[string][]string{},
				now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			var rewritten strings.Builder
			lines := strings.Split(string(b), "\n")
			for i := 0; i < len(lines); i++ {
				line := lines[i]
				if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
					rewritten.WriteString(line + "\n")
					continue
				}
				fields := strings.Fields(line)
				got := w.run(t, fields[0], fields[1:])
				var want strings.Builder
				j := i + 1
				if j < len(lines) && lines[j] == "----" {
					for j++; j < len(lines) && lines[j] != ""; j++ {
						want.WriteString(lines[j] + "\n")
					}
				}
				rewritten.WriteString(line + "\n----\n" + got + "\n")
				if !*rewrite && got != want.String() {
					t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", f, i+1, line, got, want.String())
				}
				i = j
			}
			if *rewrite {
				if err := os.WriteFile(f, []byte(strings.TrimRight(rewritten.String(), "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
