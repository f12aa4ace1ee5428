package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/strata-state/strata/agent"
	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/agent/api/client"
	"github.com/strata-state/strata/agent/cluster"
	"github.com/strata-state/strata/agent/config"
	"github.com/strata-state/strata/contracts"
	"github.com/strata-state/strata/internal/waitfor"
)

// keyedAgent is an in-process agent of a three-node region whose regional
// tier is encrypted.
type keyedAgent struct {
	a    *agent.Agent
	name string
	addr string // the regional tier's gossip address
	stop func() // stops the agent as SIGTERM does (it leaves its tiers)
}

// startKeyedRegion starts n agents (real memberlist on loopback, real
// HTTP) sharing the keyring key, joined into one region.
func startKeyedRegion(t *testing.T, n int, key []byte) []*keyedAgent {
	return startKeyedRegionOn(t, n, key, nil)
}

// startKeyedRegionOn is startKeyedRegion with the regional tiers on the
// faulty network faults (nil: the plain loopback network).
func startKeyedRegionOn(t *testing.T, n int, key []byte, faults *cluster.Faults) []*keyedAgent {
	t.Helper()
	var out []*keyedAgent
	var join string
	for i := range n {
		dir := t.TempDir()
		keyring := filepath.Join(dir, "regional.key")
		if err := os.WriteFile(keyring, []byte("# test keyring\n"+base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("k%d", i+1)
		cfg, err := config.Parse([]byte(fmt.Sprintf(`node = %q
cluster = "keys"
data_dir = %q
[contracts]
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "r1"
bind = "127.0.0.1:0"
join = [%s]
keyring = %q
gossip_interval = "50ms"
probe_interval = "200ms"
probe_timeout = "100ms"
[api]
addr = "127.0.0.1:0"
`, name, filepath.Join(dir, "data"), join, keyring)), "agent.toml")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		opts := agent.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ContractFS: contracts.Example}
		if faults != nil {
			opts.Transport = func(tier string) (memberlist.NodeAwareTransport, error) {
				return cluster.NewFaultTransport(faults)
			}
		}
		a, err := agent.New(ctx, cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		stop := sync.OnceFunc(func() { cancel(); <-done })
		t.Cleanup(stop)
		if i == 0 {
			join = fmt.Sprintf("%q", a.Tier().Addr())
		}
		out = append(out, &keyedAgent{a: a, name: name, addr: a.Tier().Addr(), stop: stop})
	}
	waitfor.Until(t, 15*time.Second, "every agent sees the region's members alive", func() error {
		for _, k := range out {
			if n := k.a.Tier().NumAlive(); n != len(out) {
				return fmt.Errorf("%s sees %d alive", k.name, n)
			}
		}
		return nil
	})
	return out
}

func newKey(t *testing.T) []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// member finds name in the regional tier as seen through the API at addr.
func member(ctx context.Context, addr, name string) (client.Member, error) {
	res, err := api.NewClient(addr, "").Members(ctx)
	if err != nil {
		return client.Member{}, err
	}
	for _, m := range res.Tiers[cluster.Regional] {
		if m.Name == name {
			return m, nil
		}
	}
	return client.Member{}, fmt.Errorf("no member %s", name)
}

// TestKeysUseRefusedWhileAMemberLacksTheKey: over three real agents, `keys
// use` on one node with a key only it holds is refused, naming the members
// that lack it; members advertise their keys' fingerprints; with --force
// the others count decrypt failures from that node in members and
// metrics; and `keys rotate` (key from a file) then brings the whole tier
// to the new key, the old one removed everywhere.
func TestKeysUseRefusedWhileAMemberLacksTheKey(t *testing.T) {
	ctx := context.Background()
	oldKey, newK := newKey(t), newKey(t)
	as := startKeyedRegion(t, 3, oldKey)
	addr := as[0].a.Addr()
	keyFile := filepath.Join(t.TempDir(), "new.key")
	os.WriteFile(keyFile, []byte("# the new regional key\n\n"+base64.StdEncoding.EncodeToString(newK)+"\n"), 0o600)

	if out, err := runStrata(t, "--addr", addr, "keys", "add", "regional", "--key-file", keyFile); err != nil {
		t.Fatalf("keys add: %v\n%s", err, out)
	}
	short := cluster.MetaFingerprint(newK)
	waitfor.Until(t, 10*time.Second, "k2 sees k1 advertise the added key", func() error {
		m, err := member(ctx, as[1].a.Addr(), "k1")
		if err != nil {
			return err
		}
		if !slices.Equal(m.Keys, []string{cluster.MetaFingerprint(oldKey), short}) {
			return fmt.Errorf("k1 advertises %v", m.Keys)
		}
		return nil
	})

	// Stdin this time: the key never appears in argv.
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(base64.StdEncoding.EncodeToString(newK) + "\n"))
	root.SetArgs([]string{"--addr", addr, "keys", "use", "regional", "-"})
	err := root.Execute()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 409 || ae.Code != api.CodeKeyNotHeld || !strings.Contains(ae.Message, "k2, k3") {
		t.Fatalf("keys use with a key k2 and k3 lack: err = %v, want 409 %s naming k2, k3\n%s", err, api.CodeKeyNotHeld, out.String())
	}
	if info, _ := as[0].a.Tier().Keys(); info.Primary != cluster.Fingerprint(oldKey) {
		t.Fatalf("the refused use changed the primary to %s", info.Primary)
	}

	if out, err := runStrata(t, "--addr", addr, "keys", "use", "regional", "--force", "--key-file", keyFile); err != nil {
		t.Fatalf("keys use --force: %v\n%s", err, out)
	}
	waitfor.Until(t, 15*time.Second, "k2 counts decrypt failures from k1", func() error {
		m, err := member(ctx, as[1].a.Addr(), "k1")
		if err != nil {
			return err
		}
		if m.DecryptFailures == 0 {
			return fmt.Errorf("k2's members shows no decrypt failures from k1")
		}
		return nil
	})
	resp, err := http.Get("http://" + as[1].a.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(body)
	if !strings.Contains(metrics, `strata_gossip_decrypt_failed_total{peer="k1",tier="regional"}`) {
		t.Errorf("k2's metrics lack decrypt failures from k1:\n%s", grepLines(metrics, "decrypt"))
	}

	// rotate completes the rotation on every member.
	if out, err := runStrata(t, "--addr", addr, "keys", "rotate", "regional", "--key-file", keyFile, "--timeout", "30s"); err != nil {
		t.Fatalf("keys rotate: %v\n%s", err, out)
	}
	for _, k := range as {
		info, _ := k.a.Tier().Keys()
		if info.Primary != cluster.Fingerprint(newK) || len(info.Keys) != 1 {
			t.Errorf("%s after rotate: %+v, want only %s", k.name, info, cluster.Fingerprint(newK))
		}
	}
	out2, err := runStrata(t, "--addr", as[1].a.Addr(), "members")
	if err != nil || !strings.Contains(out2, "DECRYPT_FAILURES") || !regexp.MustCompile(`(?m)^regional\s+k1\s+.*\s[1-9][0-9]*\s*$`).MatchString(out2) {
		t.Errorf("strata members on k2 does not show k1's decrypt failures (%v):\n%s", err, out2)
	}
	waitfor.Until(t, 15*time.Second, "the tier stays whole on the new key", func() error {
		for _, k := range as {
			if n := k.a.Tier().NumAlive(); n != 3 {
				return fmt.Errorf("%s sees %d alive", k.name, n)
			}
		}
		return nil
	})
}

func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// `--key-file -` reads the key from standard input, as README.md says:
// `keys add` over a real agent adds the key piped in.
func TestKeyFileDashReadsStdin(t *testing.T) {
	oldKey, newK := newKey(t), newKey(t)
	as := startKeyedRegion(t, 1, oldKey)
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader("# piped\n" + base64.StdEncoding.EncodeToString(newK) + "\n"))
	root.SetArgs([]string{"--addr", as[0].a.Addr(), "keys", "add", "regional", "--key-file", "-"})
	if err := root.Execute(); err != nil {
		t.Fatalf("keys add --key-file -: %v\n%s", err, out.String())
	}
	info, err := as[0].a.Tier().Keys()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Keys, cluster.Fingerprint(newK)) {
		t.Errorf("after keys add --key-file -, the tier holds %v, not the piped key %s", info.Keys, cluster.Fingerprint(newK))
	}
}

// TestKeysRotateNamesMembersItCannotChange: over four real agents, one
// stopped (its peers list it as left) and one cut off by a partition
// (dead to the others, still running), `keys rotate` on the first is not
// blocked by either: it rotates the two alive members, leaves the others
// unchanged, and names both, with their state, before its first step and
// at the end.
func TestKeysRotateNamesMembersItCannotChange(t *testing.T) {
	faults := cluster.NewFaults()
	oldKey, newK := newKey(t), newKey(t)
	as := startKeyedRegionOn(t, 4, oldKey, faults)
	as[3].stop()
	faults.Partition([]string{as[2].addr}, []string{as[0].addr, as[1].addr})
	waitfor.Until(t, 20*time.Second, "k1 and k2 see k3 dead and k4 left", func() error {
		for _, k := range as[:2] {
			if got := fmt.Sprint(memberStates(k.a.Tier().Members())); got != "[k1=alive k2=alive k3=dead k4=left]" {
				return fmt.Errorf("%s sees %s", k.name, got)
			}
		}
		return nil
	})
	keyFile := filepath.Join(t.TempDir(), "new.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(newK)+"\n"), 0o600)

	out, err := runStrata(t, "--addr", as[0].a.Addr(), "keys", "rotate", "regional", "--key-file", keyFile, "--timeout", "30s")
	if err != nil {
		t.Fatalf("keys rotate with a dead and a left member: %v\n%s", err, out)
	}
	for _, want := range []string{
		"on 2 alive members\nnot alive, not changed: k3 (dead): ",
		"\nleft the tier, not changed: k4: ",
		"\nnot changed: k3 (dead), k4 (left): each needs the new key",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("keys rotate output lacks %q:\n%s", want, out)
		}
	}
	for _, k := range as[:2] {
		if info, _ := k.a.Tier().Keys(); info.Primary != cluster.Fingerprint(newK) || len(info.Keys) != 1 {
			t.Errorf("%s after rotate: %+v, want only %s", k.name, info, cluster.Fingerprint(newK))
		}
	}
	if info, _ := as[2].a.Tier().Keys(); info.Primary != cluster.Fingerprint(oldKey) || len(info.Keys) != 1 {
		t.Errorf("rotate changed k3, which the others see dead: %+v", info)
	}
}

func memberStates(ms []cluster.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name+"="+m.State)
	}
	return out
}
