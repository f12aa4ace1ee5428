package crashtest

// Environment (docs/RELIABILITY.md):
//
//	STRATA_CRASH_ROUNDS         rounds with one node (default 3)
//	STRATA_CRASH_REGION_ROUNDS  rounds with a 3-node region (default 2)
//	STRATA_CRASH_SEED           the seed (default: random; a failure prints it)

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-state/strata/internal/testbin"
	"github.com/strata-state/strata/internal/testenv"
	"github.com/strata-state/strata/internal/waitfor"
)

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) { os.Exit(testbin.Run(m)) }

// agent is one strata agent process and its data directory, kept across
// its restarts.
type agent struct {
	t           *testing.T
	bin, name   string
	dir         string
	api, gossip string
	join        []string
	cmd         *exec.Cmd
	exited      chan struct{}
	http        *http.Client
}

func newAgent(t *testing.T, bin, name string, join []string) *agent {
	return &agent{t: t, bin: bin, name: name, dir: t.TempDir(), api: testbin.FreeAddr(t, false), gossip: testbin.FreeAddr(t, true),
		join: join, http: &http.Client{Timeout: 10 * time.Second}}
}

func (a *agent) start() {
	t := a.t
	t.Helper()
	contracts, err := filepath.Abs("../../contracts")
	if err != nil {
		t.Fatal(err)
	}
	var join []string
	for _, j := range a.join {
		join = append(join, strconv.Quote(j))
	}
	conf := fmt.Sprintf(`node = %q
cluster = "crash"
data_dir = "data"
[contracts]
dir = %q
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "r1"
bind = %q
join = [%s]
sync_interval = "300ms"
[api]
addr = %q
`, a.name, contracts, a.gossip, strings.Join(join, ", "), a.api)
	if err := os.WriteFile(filepath.Join(a.dir, "agent.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(filepath.Join(a.dir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(a.bin, "agent", "--config", filepath.Join(a.dir, "agent.toml"))
	a.cmd.Dir = a.dir
	a.cmd.Stdout, a.cmd.Stderr = log, log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log.Close()
	a.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(a.cmd, a.exited)
	t.Cleanup(a.kill)
	waitfor.Until(t, 30*time.Second, a.name+" answers /v1/health", func() error {
		select {
		case <-a.exited:
			t.Fatalf("%s exited while starting:\n%s", a.name, a.logTail())
		default:
		}
		resp, err := a.http.Get("http://" + a.api + "/v1/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// kill sends SIGKILL and waits for the process to be gone.
func (a *agent) kill() {
	if a.cmd == nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
	a.cmd = nil
}

func (a *agent) logTail() string {
	b, _ := os.ReadFile(filepath.Join(a.dir, "agent.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// checkFiles runs bbolt's consistency check on the stopped agent's files.
func (a *agent) checkFiles() error {
	files, _ := filepath.Glob(filepath.Join(a.dir, "data", "*.db"))
	if len(files) == 0 {
		return errors.New("no .db files in " + filepath.Join(a.dir, "data"))
	}
	for _, f := range files {
		db, err := bolt.Open(f, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		var errs []error
		err = db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				errs = append(errs, err)
			}
			return nil
		})
		db.Close()
		if err = errors.Join(append(errs, err)...); err != nil {
			return fmt.Errorf("%s: bbolt check: %w", f, err)
		}
	}
	return nil
}

// state is a row as the model knows it.
type state struct {
	Alive     bool
	App, Host string
}

func (s state) String() string {
	if !s.Alive {
		return "absent"
	}
	return fmt.Sprintf("app=%s host=%s", s.App, s.Host)
}

// keyModel is what one key may hold: its state after the last
// acknowledged operation, and the state an operation in flight at the
// kill would leave (batch: the batch, whose keys must move together).
type keyModel struct {
	acked   state
	pending *state
	batch   int // the unacknowledged batch pending belongs to, or 0
}

// client writes to one agent, to keys only it writes, one operation at
// a time, and records each outcome.
type client struct {
	id    int
	rng   *rand.Rand
	a     *agent
	keys  []string
	model map[string]*keyModel
	err   error // a broken promise seen while the agent was up
	ops   int   // acknowledged
}

type outcome int

const (
	acked outcome = iota
	refused
	unknown // no answer: the process died, or an error that may have applied
)

func (c *client) do(method, path string, body []byte) (outcome, int, string) {
	req, err := http.NewRequest(method, "http://"+c.a.api+path, bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.a.http.Do(req)
	if err != nil {
		return unknown, 0, err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return acked, resp.StatusCode, ""
	case resp.StatusCode == http.StatusNotFound:
		return refused, resp.StatusCode, ""
	}
	return unknown, resp.StatusCode, string(b)
}

func rowJSON(key string, s state) map[string]any {
	return map[string]any{"id": key, "app": s.App, "state": "MACHINE_STATE_STARTED", "healthy": true, "host": s.Host}
}

// run writes until stop is closed or the agent stops answering.
func (c *client) run(stop <-chan struct{}, batches *int, mu *sync.Mutex) {
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		tag := fmt.Sprintf("c%d-s%d-%x", c.id, seq, c.rng.Uint32()&0xffff)
		key := c.keys[c.rng.IntN(len(c.keys))]
		m := c.model[key]
		var (
			out    outcome
			status int
			reply  string
			next   = map[string]state{}
			op     string
		)
		switch r := c.rng.IntN(100); {
		case r < 35:
			op = "PUT"
			s := state{Alive: true, App: "a" + tag, Host: "h" + tag}
			body, _ := json.Marshal(rowJSON(key, s))
			out, status, reply = c.do("PUT", "/v1/regional/machines/"+key, body)
			next[key] = s
		case r < 60:
			op = "PATCH"
			body, _ := json.Marshal(map[string]any{"host": "p" + tag})
			out, status, reply = c.do("PATCH", "/v1/regional/machines/"+key, body)
			s := m.acked
			s.Host = "p" + tag
			next[key] = s
			if out == refused && m.acked.Alive {
				c.err = fmt.Errorf("PATCH %s: 404, but its last acknowledged state is %v", key, m.acked)
				return
			}
		case r < 80:
			op = "DELETE"
			out, status, reply = c.do("DELETE", "/v1/regional/machines/"+key, nil)
			next[key] = state{}
			if out == refused && m.acked.Alive {
				c.err = fmt.Errorf("DELETE %s: 404, but its last acknowledged state is %v", key, m.acked)
				return
			}
		default:
			op = "POST (batch)"
			var rows []map[string]any
			for _, i := range c.rng.Perm(len(c.keys))[:2+c.rng.IntN(3)] {
				k := c.keys[i]
				s := state{Alive: true, App: "b" + tag, Host: "b" + tag}
				rows = append(rows, rowJSON(k, s))
				next[k] = s
			}
			body, _ := json.Marshal(rows)
			out, status, reply = c.do("POST", "/v1/regional/machines", body)
		}
		switch out {
		case acked:
			c.ops++
			for k, s := range next {
				c.model[k].acked = s
			}
		case refused:
			if m.acked.Alive {
				c.err = fmt.Errorf("%s %s: refused with %d, its last acknowledged state is %v", op, key, status, m.acked)
			}
		case unknown:
			if status != 0 {
				c.err = fmt.Errorf("%s %s: status %d: %s", op, key, status, reply)
				return
			}
			mu.Lock()
			*batches++
			id := *batches
			mu.Unlock()
			for k, s := range next {
				s := s
				c.model[k].pending = &s
				c.model[k].batch = id
			}
			return // the agent is going away (or failed): the client stops
		}
	}
}

// get reads a key from an agent: its state, or an error.
func get(a *agent, key string) (state, error) {
	resp, err := a.http.Get("http://" + a.api + "/v1/regional/machines/" + key)
	if err != nil {
		return state{}, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotFound:
		return state{}, nil
	case http.StatusOK:
	default:
		b, _ := io.ReadAll(resp.Body)
		return state{}, fmt.Errorf("GET %s: %d %s", key, resp.StatusCode, b)
	}
	var body struct {
		Row struct{ App, Host string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return state{}, err
	}
	return state{Alive: true, App: body.Row.App, Host: body.Row.Host}, nil
}

// verify checks the keys' states as read (through read) against the
// model, and moves the model to what was read. An operation in flight at
// the kill (a batch: several keys) must show on all of its keys or none.
func verify(model map[string]*keyModel, read func(string) (state, error)) error {
	keys := make([]string, 0, len(model))
	for k := range model {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	applied := map[int]map[bool][]string{} // in-flight operation → applied? → keys that tell
	var errs []error
	for _, k := range keys {
		m := model[k]
		got, err := read(k)
		if err != nil {
			return err
		}
		switch {
		case m.pending != nil && *m.pending != m.acked && (got == m.acked || got == *m.pending):
			if applied[m.batch] == nil {
				applied[m.batch] = map[bool][]string{}
			}
			applied[m.batch][got == *m.pending] = append(applied[m.batch][got == *m.pending], k)
		case got == m.acked:
		default:
			want := m.acked.String()
			if m.pending != nil {
				want += " or, if the operation in flight applied, " + m.pending.String()
			}
			errs = append(errs, fmt.Errorf("%s: %v, want %s (an acknowledged operation lost or undone)", k, got, want))
		}
		m.acked, m.pending, m.batch = got, nil, 0
	}
	for id, by := range applied {
		if len(by[true]) > 0 && len(by[false]) > 0 {
			errs = append(errs, fmt.Errorf("operation %d in flight at the kill is half applied: on %v, not on %v", id, by[true], by[false]))
		}
	}
	return errors.Join(errs...)
}

// TestCrashRounds kills one agent with SIGKILL while clients write to
// it, restarts it and checks what it acknowledged.
func TestCrashRounds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent")
	}
	seed := testenv.Int(t, "STRATA_CRASH_SEED", int64(rand.Uint32()))
	rounds := int(testenv.Int(t, "STRATA_CRASH_ROUNDS", 3))
	rng := rand.New(rand.NewPCG(uint64(seed), 0xc4a5))
	replay := fmt.Sprintf("replay: STRATA_CRASH_SEED=%d STRATA_CRASH_ROUNDS=%d go test -count=1 -run TestCrashRounds ./internal/crashtest (kill times vary with timing)", seed, rounds)
	a := newAgent(t, testbin.Strata(t), "solo", nil)
	clients := newClients(rng, []*agent{a, a, a, a})
	total, unknowns := 0, 0
	for round := range rounds {
		a.start()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		batches := round * 1000
		for _, c := range clients {
			wg.Add(1)
			go func() { defer wg.Done(); c.run(stop, &batches, &mu) }()
		}
		// The load's length, not a synchronisation: the kill lands at a
		// random moment of it.
		time.Sleep(time.Duration(50+rng.IntN(700)) * time.Millisecond)
		a.kill()
		close(stop)
		wg.Wait()
		for _, c := range clients {
			if c.err != nil {
				t.Fatalf("seed %d round %d: client %d: %v\n%s", seed, round, c.id, c.err, replay)
			}
		}
		if err := a.checkFiles(); err != nil {
			t.Fatalf("seed %d round %d: %v\n%s", seed, round, err, replay)
		}
		a.start()
		for _, c := range clients {
			for _, m := range c.model {
				if m.pending != nil {
					unknowns++
				}
			}
			if err := verify(c.model, func(k string) (state, error) { return get(a, k) }); err != nil {
				t.Fatalf("seed %d round %d, after restart: client %d: %v\n%s\nagent log:\n%s", seed, round, c.id, err, replay, a.logTail())
			}
		}
		a.kill()
	}
	for _, c := range clients {
		total += c.ops
	}
	t.Logf("seed %d: %d rounds, %d acknowledged operations, %d keys written by an operation in flight at a kill, 0 lost", seed, rounds, total, unknowns)
}

func newClients(rng *rand.Rand, agents []*agent) []*client {
	var clients []*client
	for i, a := range agents {
		c := &client{id: i, rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(i))), a: a, model: map[string]*keyModel{}}
		for k := range 12 {
			key := fmt.Sprintf("c%d-k%d", i, k)
			c.keys = append(c.keys, key)
			c.model[key] = &keyModel{}
		}
		clients = append(clients, c)
	}
	return clients
}

// TestCrashRoundsRegion runs a 3-node region with clients on every node;
// one node, at random, is killed with SIGKILL, restarted, rejoins, and the
// region converges to what was acknowledged.
func TestCrashRoundsRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent")
	}
	seed := testenv.Int(t, "STRATA_CRASH_SEED", int64(rand.Uint32()))
	rounds := int(testenv.Int(t, "STRATA_CRASH_REGION_ROUNDS", 2))
	rng := rand.New(rand.NewPCG(uint64(seed), 0x3e61))
	replay := fmt.Sprintf("replay: STRATA_CRASH_SEED=%d STRATA_CRASH_REGION_ROUNDS=%d go test -count=1 -run TestCrashRoundsRegion ./internal/crashtest (kill times vary with timing)", seed, rounds)
	bin := testbin.Strata(t)
	var agents []*agent
	for i := range 3 {
		var join []string
		for _, o := range agents {
			join = append(join, o.gossip)
		}
		a := newAgent(t, bin, fmt.Sprintf("n%d", i), join)
		a.start()
		agents = append(agents, a)
	}
	for _, a := range agents { // each joins all others on restart
		a.join = nil
		for _, o := range agents {
			if o != a {
				a.join = append(a.join, o.gossip)
			}
		}
	}
	waitAlive(t, agents)
	clients := newClients(rng, []*agent{agents[0], agents[1], agents[2], agents[0], agents[1], agents[2]})
	model := map[string]*keyModel{}
	for _, c := range clients {
		for k, m := range c.model {
			model[k] = m
		}
	}
	total, unknowns := 0, 0
	for round := range rounds {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		batches := round * 1000
		for _, c := range clients {
			wg.Add(1)
			go func() { defer wg.Done(); c.run(stop, &batches, &mu) }()
		}
		victim := agents[rng.IntN(len(agents))]
		time.Sleep(time.Duration(50+rng.IntN(700)) * time.Millisecond) // the load's length
		victim.kill()
		close(stop)
		wg.Wait()
		for _, c := range clients {
			if c.err != nil {
				t.Fatalf("seed %d round %d: client %d: %v\n%s", seed, round, c.id, c.err, replay)
			}
		}
		if err := victim.checkFiles(); err != nil {
			t.Fatalf("seed %d round %d: %s: %v\n%s", seed, round, victim.name, err, replay)
		}
		victim.start()
		waitAlive(t, agents)
		for _, m := range model {
			if m.pending != nil {
				unknowns++
			}
		}
		// Converged: every node reads every key alike.
		waitfor.Until(t, 60*time.Second, fmt.Sprintf("seed %d round %d: the region converges after %s restarts", seed, round, victim.name), func() error {
			for k := range model {
				first, err := get(agents[0], k)
				if err != nil {
					return err
				}
				for _, a := range agents[1:] {
					s, err := get(a, k)
					if err != nil {
						return err
					}
					if s != first {
						return fmt.Errorf("%s: %s has %v, %s has %v", k, agents[0].name, first, a.name, s)
					}
				}
			}
			return nil
		})
		for _, a := range agents {
			snapshot := map[string]*keyModel{}
			for k, m := range model {
				cp := *m
				snapshot[k] = &cp
			}
			if err := verify(snapshot, func(k string) (state, error) { return get(a, k) }); err != nil {
				t.Fatalf("seed %d round %d, after %s restarted: on %s: %v\n%s\n%s log:\n%s", seed, round, victim.name, a.name, err, replay, victim.name, victim.logTail())
			}
		}
		verify(model, func(k string) (state, error) { return get(agents[0], k) })
	}
	for _, c := range clients {
		total += c.ops
	}
	t.Logf("seed %d: %d rounds, %d acknowledged operations, %d keys written by an operation in flight at a kill, 0 lost", seed, rounds, total, unknowns)
}

// waitAlive waits until every agent sees the three alive.
func waitAlive(t *testing.T, agents []*agent) {
	t.Helper()
	waitfor.Until(t, 60*time.Second, "every node sees all alive", func() error {
		for _, a := range agents {
			resp, err := a.http.Get("http://" + a.api + "/v1/members")
			if err != nil {
				return err
			}
			var body struct {
				Tiers map[string][]struct{ Name, State string }
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			alive := 0
			for _, m := range body.Tiers["regional"] {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != len(agents) {
				return fmt.Errorf("%s sees %d alive", a.name, alive)
			}
		}
		return nil
	})
}
