package global

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// contract compiles the example contract with app_placements' max_per_region
// set to maxPerRegion.
func contract(t testing.TB, maxPerRegion int) *contracts.Contract {
	t.Helper()
	fsys := fstest.MapFS{}
	for _, name := range []string{"fleet/v1/regional.proto", "fleet/v1/global.proto", "strata/v1/options.proto"} {
		b, err := contracts.Example.(interface{ ReadFile(string) ([]byte, error) }).ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "fleet/v1/global.proto" {
			b = []byte(strings.Replace(string(b), "max_per_region: 10000", fmt.Sprintf("max_per_region: %d", maxPerRegion), 1))
		}
		fsys[name] = &fstest.MapFile{Data: b}
	}
	c, err := contracts.Compile(context.Background(), fsys, contracts.ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// placement encodes app_placements {app: app, serving: true}.
func placement(app string) []byte {
	return append(append([]byte{0x0a, byte(len(app))}, app...), 0x10, 0x01)
}

func stored(region, key string, value []byte, ms int64) Stored {
	return Stored{Record: Record{Name: "app_placements", Region: region, Key: key, Value: value}, CL: 1,
		Stamp: store.Stamp{HLC: hlc.New(ms, 0), Node: store.NodeIDOf(region + "-1")}}
}

func signers(t testing.TB, regions ...string) (map[string]*Signer, *Trust) {
	t.Helper()
	trust := NewTrust()
	out := map[string]*Signer{}
	for _, r := range regions {
		s, err := NewSigner(r)
		if err != nil {
			t.Fatal(err)
		}
		out[r] = s
		if err := trust.Add(r, s.Public()); err != nil {
			t.Fatal(err)
		}
	}
	return out, trust
}

func TestProofsVerifyAndCatchForgeries(t *testing.T) {
	keys, trust := signers(t, "ord", "ams")
	stranger, _ := NewSigner("ord")
	for _, n := range []int{1, 2, 3, 5, 8, 13, 100, MaxBatch} {
		batch := make([]Stored, n)
		for i := range batch {
			batch[i] = stored("ord", fmt.Sprintf("app-%d", i), placement(fmt.Sprintf("app-%d", i)), 1000+int64(i))
		}
		if err := keys["ord"].Sign(batch); err != nil {
			t.Fatal(err)
		}
		v := NewVerifier(trust)
		for i := range batch {
			if err := v.Verify(&batch[i]); err != nil {
				t.Fatalf("batch of %d, record %d: %v", n, i, err)
			}
		}
		// Every part of what is signed is covered.
		for name, alter := range map[string]func(*Stored){
			"value":  func(s *Stored) { s.Value = placement("evil") },
			"key":    func(s *Stored) { s.Key = "other" },
			"region": func(s *Stored) { s.Region = "ams" },
			"stamp":  func(s *Stored) { s.Stamp.HLC++ },
			"node":   func(s *Stored) { s.Stamp.Node++ },
			"cl":     func(s *Stored) { s.CL = 3 },
			"type":   func(s *Stored) { s.Name = "other_records" },
			"delete": func(s *Stored) { s.Value = nil },
			"proof":  func(s *Stored) { s.Proof = append(append([]byte{}, s.Proof...), 0) },
		} {
			s := batch[n/2]
			alter(&s)
			err := NewVerifier(trust).Verify(&s)
			var pe *ProofError
			if !errors.As(err, &pe) || (pe.Reason != ReasonSignature && pe.Reason != ReasonWrongRegion) {
				t.Errorf("batch of %d: altered %s: err %v, want a refused signature", n, name, err)
			}
		}
	}
	for name, tc := range map[string]struct {
		signer *Signer
		region string
		want   string
	}{
		"unsigned":             {nil, "ord", ReasonUnsigned},
		"another region's key": {keys["ams"], "ord", ReasonWrongRegion},
		"a key nobody trusts":  {stranger, "ord", ReasonWrongRegion},
		"its own region's key": {keys["ams"], "ams", ""},
	} {
		s := stored(tc.region, "web", placement("web"), 1)
		if tc.signer != nil {
			// A signer signs only its own region: forge by relabelling.
			s.Region = tc.signer.Region
			one := []Stored{s}
			if err := tc.signer.Sign(one); err != nil {
				t.Fatal(err)
			}
			s.Proof, s.Region = one[0].Proof, tc.region
		}
		err := NewVerifier(trust).Verify(&s)
		var pe *ProofError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want != "" && (!errors.As(err, &pe) || pe.Reason != tc.want):
			t.Errorf("%s: err %v, want reason %s", name, err, tc.want)
		}
	}
}

func TestTrustFile(t *testing.T) {
	a, _ := NewSigner("ord")
	b, _ := NewSigner("ord")
	c, _ := NewSigner("ord")
	good := "# regions\n" + a.TrustLine() + "\n\n" + b.TrustLine() + "\n"
	if tr, err := ParseTrust([]byte(good), "regions.pub"); err != nil || tr.Regions() != 1 {
		t.Fatalf("two keys of one region (a rotation): %v", err)
	}
	for name, text := range map[string]string{
		"three keys":           good + c.TrustLine() + "\n",
		"one key, two regions": a.TrustLine() + "\nams " + strings.Fields(a.TrustLine())[1] + "\n",
		"not base64":           "ord !!!\n",
		"short key":            "ord AAAA\n",
		"one field":            "ord\n",
	} {
		if _, err := ParseTrust([]byte(text), "regions.pub"); !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), "regions.pub:") {
			t.Errorf("%s: err %v, want ErrKeyFile naming the line", name, err)
		}
	}
	path := filepath.Join(t.TempDir(), "ord.key")
	if err := writeFile(path, a.PrivateKeyFile()); err != nil {
		t.Fatal(err)
	}
	back, err := LoadSigner(path)
	if err != nil || back.Region != "ord" || !back.Public().Equal(a.Public()) {
		t.Fatalf("key file round trip: %v", err)
	}
}

func TestBatchCountsAndBudgets(t *testing.T) {
	c := contract(t, 3)
	b := &Batch{Contract: c, Holdings: NoHoldings{}, Budgets: NewBudgets(1, 5), Now: time.Unix(100, 0)}
	w := func(key string, value []byte) error {
		return b.Check(Write{Record: Record{Name: "app_placements", Region: "ord", Key: key, Value: value}, Writer: "ord"})
	}
	for _, k := range []string{"a", "b", "c"} {
		if err := w(k, placement(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w("d", placement("d")); Reason(err) != "budget" || !strings.Contains(err.Error(), "too_many") {
		t.Fatalf("fourth record: %v, want too_many (budget)", err)
	}
	if err := w("a", nil); err != nil { // a delete frees a slot
		t.Fatal(err)
	}
	if err := w("d", placement("d")); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
	// Five writes so far spent the burst of five.
	if err := w("b", placement("b")); Reason(err) != "budget" || !strings.Contains(err.Error(), "[rate]") {
		t.Fatalf("sixth write: %v, want rate (budget)", err)
	}
	b.Now = b.Now.Add(time.Second)
	if err := w("b", placement("b")); err != nil {
		t.Fatalf("a second later: %v", err)
	}
	if err := b.Check(Write{Record: Record{Name: "app_placements", Region: "ord", Key: "x", Value: placement("x")}, Writer: "ams"}); err == nil || !strings.Contains(err.Error(), "wrong_region") {
		t.Fatalf("write for another region: %v", err)
	}
}

// gateway is a Writer on a real store.
func gateway(t testing.TB, c *contracts.Contract, region string, signer *Signer, trust *Trust, now *time.Time) *Writer {
	t.Helper()
	clock := hlc.NewClock(nil, time.Minute)
	st, err := store.Open(filepath.Join(t.TempDir(), "global.db"), store.Options{Node: region + "-1", Clock: clock, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return NewWriter(Options{Contract: c, Store: st, Clock: clock, Node: region + "-1", Region: region,
		Signer: signer, Trust: trust, Rate: 1, Burst: 4, Now: func() time.Time { return *now }})
}

// changes returns what w's store holds, as a peer would send it.
func changes(t testing.TB, w *Writer, table string) []store.Change {
	t.Helper()
	rows, _, err := w.opts.Store.List(table, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]store.Change, len(rows))
	for i, kr := range rows {
		out[i] = store.Change{Table: table, Key: kr.Key, Row: kr.Row}
	}
	return out
}

func TestAcceptEnforcesSignaturesAndBudgets(t *testing.T) {
	ctx := context.Background()
	c := contract(t, 3)
	keys, trust := signers(t, "ord", "ams")
	now := time.Unix(1_000_000, 0)
	ord := gateway(t, c, "ord", keys["ord"], trust, &now)
	ams := gateway(t, c, "ams", keys["ams"], trust, &now)

	recs := []Record{{Name: "app_placements", Key: "a", Value: placement("a")}, {Name: "app_placements", Key: "b", Value: placement("b")}}
	if res, err := ord.Write(ctx, recs, nil); err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("write: %v %v", res, err)
	}
	if err := ord.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	in := append(changes(t, ord, "app_placements"), changes(t, ord, HeartbeatTable)...)
	for _, ch := range in {
		if err := ams.Accept(ch, "ord-1"); err != nil {
			t.Fatalf("a signed change of ord: %v", err)
		}
	}
	if _, rej, err := ams.opts.Store.Merge(ctx, in); err != nil || len(rej) > 0 {
		t.Fatal(err, rej)
	}
	// Delivered again (gossip, anti-entropy): nothing new, no budget spent.
	for range 10 {
		for _, ch := range in {
			if err := ams.Accept(ch, "x"); err != nil {
				t.Fatalf("a duplicate: %v", err)
			}
		}
	}
	// ams's own key cannot write for ord, and ord's records cannot be
	// altered on the way.
	forged := in[0]
	forged.Row.Fields = append([]store.Field{}, forged.Row.Fields...)
	forged.Row.Fields[0].Value = placement("a")
	forged.Row.Fields[0].Value[len(forged.Row.Fields[0].Value)-1] = 0 // serving: false
	if err := ams.Accept(forged, "x"); Reason(err) != ReasonSignature {
		t.Errorf("altered value: %v", err)
	}
	bare := in[0]
	bare.Row.Fields = bare.Row.Fields[:1]
	if err := ams.Accept(bare, "x"); Reason(err) != ReasonUnsigned {
		t.Errorf("unsigned: %v", err)
	}
	tomb := store.Change{Table: "app_placements", Key: "ord/a", Row: store.Row{CL: 2, Stamp: in[0].Row.Stamp}}
	if err := ams.Accept(tomb, "x"); Reason(err) != "layout" {
		t.Errorf("a bare store tombstone: %v", err)
	}
	// Budgets: ord holds 2 of max 3 and has spent 2 of its burst of 4 on
	// ams; a third record passes, a fourth is over max_per_region, and
	// the rate budget stops the rest.
	more := []Record{{Name: "app_placements", Key: "c", Value: placement("c")}, {Name: "app_placements", Key: "d", Value: placement("d")}}
	for _, r := range more {
		// ord's own writer would refuse "d" too; write it past the check
		// to play a region whose gateway is buggy.
		s, _ := ord.stamped(Record{Name: r.Name, Region: "ord", Key: r.Key, Value: r.Value})
		if err := ord.apply(ctx, []Stored{s}); err != nil {
			t.Fatal(err)
		}
	}
	var third, fourth store.Change
	for _, ch := range changes(t, ord, "app_placements") {
		switch ch.Key {
		case "ord/c":
			third = ch
		case "ord/d":
			fourth = ch
		}
	}
	if err := ams.Accept(third, "x"); err != nil {
		t.Fatalf("third record: %v", err)
	}
	// An update of a record ams holds, accepted twice before the store
	// merges it, takes no slot (ord's own writer, holding 4 now, would
	// refuse it: build it as the record was).
	upd := stampedUpdate(t, ord, "a", append(placement("a"), 0x20, 2))
	now = now.Add(time.Second) // a token for the update
	for range 2 {
		if err := ams.Accept(upd, "x"); err != nil {
			t.Fatalf("update of a held record: %v", err)
		}
	}
	if err := ams.Accept(fourth, "x"); Reason(err) != "budget" {
		t.Fatalf("fourth record, past max_per_region 3 while the third is still being merged: %v", err)
	}
	want := `
# HELP strata_global_received_rejected_total Global changes received from peers and refused (bad region proof, layout, contract, budget), by record and reason.
# TYPE strata_global_received_rejected_total counter
strata_global_received_rejected_total{reason="budget",record="app_placements"} 1
strata_global_received_rejected_total{reason="layout",record="app_placements"} 1
strata_global_received_rejected_total{reason="signature",record="app_placements"} 1
strata_global_received_rejected_total{reason="unsigned",record="app_placements"} 1
`
	if err := testutil.CollectAndCompare(ams.receivedRejected, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestWriterDeletesAreSignedWrites(t *testing.T) {
	ctx := context.Background()
	c := contract(t, 10)
	keys, trust := signers(t, "ord")
	now := time.Unix(1_000_000, 0)
	ord := gateway(t, c, "ord", keys["ord"], trust, &now)
	if _, err := ord.Write(ctx, []Record{{Name: "app_placements", Key: "a", Value: placement("a")}}, nil); err != nil {
		t.Fatal(err)
	}
	res, err := ord.Write(ctx, []Record{{Name: "app_placements", Key: "a"}, {Name: "app_placements", Key: "zz"}}, nil)
	if err != nil || res[0].Err != nil || !errors.Is(res[1].Err, store.ErrNotFound) {
		t.Fatalf("delete: %+v %v", res, err)
	}
	if _, err := Get(ord.opts.Store, "app_placements", "ord", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted record still read: %v", err)
	}
	ch := changes(t, ord, "app_placements")[0]
	s, err := FromRow(ch.Table, ch.Key, ch.Row)
	if err != nil || !s.Deleted() {
		t.Fatalf("the delete row: %+v %v", s, err)
	}
	if err := NewVerifier(trust).Verify(&s); err != nil {
		t.Fatalf("the delete is not signed: %v", err)
	}
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

// stampedUpdate is a signed update of w's record key, as w would write it.
func stampedUpdate(t *testing.T, w *Writer, key string, value []byte) store.Change {
	t.Helper()
	s, err := w.stamped(Record{Name: "app_placements", Region: w.opts.Region, Key: key, Value: value})
	if err != nil {
		t.Fatal(err)
	}
	one := []Stored{s}
	if err := w.opts.Signer.Sign(one); err != nil {
		t.Fatal(err)
	}
	return one[0].Change()
}

// TestUnknownRecordNamesShareOneLabel: global changes from peers under
// record names the contract does not know are counted under the record
// label "unknown", whatever names the peers choose.
func TestUnknownRecordNamesShareOneLabel(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	w := gateway(t, contract(t, 10), "ams", nil, nil, &now)
	row := store.Row{CL: 1, Fields: []store.Field{{Num: 1, Value: placement("web"), Stamp: store.Stamp{HLC: hlc.New(1000, 0), Node: store.NodeIDOf("ord-1")}}}}
	for i := 0; i < 100; i++ {
		if err := w.Accept(store.Change{Table: fmt.Sprintf("made-up-%d", i), Key: "ord/x", Row: row}, "peer"); err == nil {
			t.Fatal("an unknown record was accepted")
		}
	}
	if n := testutil.CollectAndCount(w.receivedRejected); n != 1 {
		t.Fatalf("rejections of 100 made-up record names counted under %d labels, want 1 (unknown)", n)
	}
}

// TestWarmVerifierChecksTheWholeProof: a record's proof is checked in
// full however much of its batch the verifier has already proven. The
// proof is stored and sent on with the record, so one that does not
// verify by itself must never be accepted: a receiver that had not seen
// the batch would refuse it, and stamps being equal, the larger proof
// bytes win the merge, so such a copy could replace the good one.
func TestWarmVerifierChecksTheWholeProof(t *testing.T) {
	keys, trust := signers(t, "ord")
	batch := make([]Stored, 8)
	for i := range batch {
		batch[i] = stored("ord", fmt.Sprintf("app-%d", i), placement(fmt.Sprintf("app-%d", i)), 1000+int64(i))
	}
	if err := keys["ord"].Sign(batch); err != nil {
		t.Fatal(err)
	}
	const head = 1 + 32 + 64 + 2 // version, key, signature, n, index
	for name, alter := range map[string]func(p []byte){
		"signature":     func(p []byte) { p[33] ^= 0xff },
		"batch size":    func(p []byte) { p[97] = 7 },
		"first sibling": func(p []byte) { p[head] ^= 0xff },
		"last sibling":  func(p []byte) { p[len(p)-1] ^= 0xff },
	} {
		for i := range batch {
			v := NewVerifier(trust)
			for j := range batch { // every other record first: the verifier knows the whole tree
				if j != i {
					if err := v.Verify(&batch[j]); err != nil {
						t.Fatal(err)
					}
				}
			}
			s := batch[i]
			s.Proof = append([]byte(nil), s.Proof...)
			alter(s.Proof)
			if err := v.Verify(&s); Reason(err) != ReasonSignature {
				t.Errorf("record %d with its proof's %s altered, verified after the rest of its batch: %v, want refused [signature]", i, name, err)
			}
		}
	}
}

// TestVerifierCacheNeverChangesAVerdict: through one verifier that has
// seen other records of the same batches, in any order, every record gets
// the verdict a fresh verifier gives it alone: good records pass, and a
// record altered, carrying another record's proof (of its own batch or of
// another batch: a replay), or with any byte of its proof changed is
// refused, and refusing it costs no other record anything.
func TestVerifierCacheNeverChangesAVerdict(t *testing.T) {
	keys, trust := signers(t, "ord", "ams")
	rng := rand.New(rand.NewPCG(1, 2))
	var all []Stored
	for b, n := range []int{1, 2, 3, 7, 64, 255, MaxBatch} {
		batch := make([]Stored, n)
		for i := range batch {
			k := fmt.Sprintf("app-%d-%d", b, i)
			batch[i] = stored("ord", k, placement(k), int64(1000*b+i))
		}
		if err := keys["ord"].Sign(batch); err != nil {
			t.Fatal(err)
		}
		all = append(all, batch...)
	}
	type item struct {
		s    Stored
		good bool
		what string
	}
	var items []item
	for i, s := range all {
		items = append(items, item{s, true, "as signed"})
		bad := s
		switch i % 5 {
		case 0:
			bad.Value = placement("evil")
			items = append(items, item{bad, false, "altered value"})
		case 1:
			bad.Proof = all[rng.IntN(len(all))].Proof // a replay, unless it drew its own proof
			items = append(items, item{bad, bytes.Equal(bad.Proof, s.Proof), "another record's proof"})
		case 2, 3:
			bad.Proof = append([]byte(nil), s.Proof...)
			bad.Proof[1+32+rng.IntN(len(bad.Proof)-33)] ^= byte(1 + rng.IntN(255)) // after the key
			items = append(items, item{bad, false, "a proof byte changed"})
		case 4:
			bad.Stamp.HLC++
			items = append(items, item{bad, false, "altered stamp"})
		}
	}
	for round := range 3 {
		rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
		v := NewVerifier(trust)
		for _, it := range items {
			s := it.s
			warm := v.Verify(&s)
			cold := NewVerifier(trust).Verify(&s)
			if (warm == nil) != it.good || (cold == nil) != it.good {
				t.Fatalf("round %d: %s (%s): warm verifier %v, fresh verifier %v, want accepted %v", round, s.Record, it.what, warm, cold, it.good)
			}
		}
	}
}

// TestVerifierForgetsTreesNotRoots: past treeCap nodes of proven trees,
// the oldest are dropped; records of their batches still verify (by their
// full path and the proven root) and forgeries are still refused.
func TestVerifierForgetsTreesNotRoots(t *testing.T) {
	keys, trust := signers(t, "ord")
	var batches [][]Stored
	for b := range 3 * treeCap / (2 * MaxBatch) {
		batch := make([]Stored, MaxBatch)
		for i := range batch {
			k := fmt.Sprintf("app-%d-%d", b, i)
			batch[i] = stored("ord", k, placement(k), int64(1000*b+i))
		}
		if err := keys["ord"].Sign(batch); err != nil {
			t.Fatal(err)
		}
		batches = append(batches, batch)
	}
	v := NewVerifier(trust)
	for round := range 2 {
		for b := range batches {
			for _, i := range []int{round, MaxBatch - 1 - round} {
				if err := v.Verify(&batches[b][i]); err != nil {
					t.Fatalf("round %d, batch %d, record %d: %v", round, b, i, err)
				}
				bad := batches[b][i]
				bad.Value = placement("evil")
				if err := v.Verify(&bad); Reason(err) != ReasonSignature {
					t.Fatalf("round %d, batch %d, record %d altered: %v", round, b, i, err)
				}
			}
		}
	}
	if len(v.roots) != len(batches) || v.curNodes > treeCap {
		t.Fatalf("%d roots for %d batches, %d nodes in the current generation (cap %d)", len(v.roots), len(batches), v.curNodes, treeCap)
	}
}

// TestAcceptKeepsGoodProofs: a gateway that holds a region's records
// refuses copies of them whose proof was garbled, although the rest of
// their batch is known to it; with equal stamps the larger proof bytes
// would win the merge, so accepting one would replace a good proof with
// one no other node can verify.
func TestAcceptKeepsGoodProofs(t *testing.T) {
	ctx := context.Background()
	c := contract(t, 10)
	keys, trust := signers(t, "ord", "ams")
	now := time.Unix(1_000_000, 0)
	ord := gateway(t, c, "ord", keys["ord"], trust, &now)
	ams := gateway(t, c, "ams", keys["ams"], trust, &now)
	var recs []Record
	for _, k := range []string{"a", "b", "c", "d"} {
		recs = append(recs, Record{Name: "app_placements", Key: k, Value: placement(k)})
	}
	if _, err := ord.Write(ctx, recs, nil); err != nil {
		t.Fatal(err)
	}
	in := changes(t, ord, "app_placements")
	for _, ch := range in {
		if err := ams.Accept(ch, "ord-1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, rej, err := ams.opts.Store.Merge(ctx, in); err != nil || len(rej) > 0 {
		t.Fatal(err, rej)
	}
	for _, ch := range in {
		for name, garble := range map[string]func(p []byte){
			"signature": func(p []byte) { p[33] ^= 0xff }, // flipped: setting a byte can leave it as it was
			"last hash": func(p []byte) { p[len(p)-32] ^= 0xff },
		} {
			forged := ch
			forged.Row.Fields = append([]store.Field(nil), ch.Row.Fields...)
			forged.Row.Fields[1].Value = append([]byte(nil), ch.Row.Fields[1].Value...)
			garble(forged.Row.Fields[1].Value)
			now = now.Add(time.Minute) // budget to spare: only the proof can refuse it
			err := ams.Accept(forged, "x")
			if Reason(err) != ReasonSignature {
				t.Errorf("%s with its proof's %s garbled: %v, want refused [signature]", ch.Key, name, err)
			}
			if err == nil { // as the tier would
				if _, _, err := ams.opts.Store.Merge(ctx, []store.Change{forged}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, ch := range changes(t, ams, "app_placements") {
		s, err := FromRow(ch.Table, ch.Key, ch.Row)
		if err != nil {
			t.Fatal(err)
		}
		if err := NewVerifier(trust).Verify(&s); err != nil {
			t.Errorf("ams holds %s with a proof that does not verify: %v", ch.Key, err)
		}
	}
}

// gatewayNode is a Writer of node for region on a real store opened with
// opts (Node, Clock and NoSync set here).
func gatewayNode(t testing.TB, c *contracts.Contract, node, region string, signer *Signer, trust *Trust, now *time.Time, opts store.Options) *Writer {
	t.Helper()
	clock := hlc.NewClock(nil, time.Minute)
	opts.Node, opts.Clock, opts.NoSync = node, clock, true
	st, err := store.Open(filepath.Join(t.TempDir(), "global.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return NewWriter(Options{Contract: c, Store: st, Clock: clock, Node: node, Region: region,
		Signer: signer, Trust: trust, Rate: 1e6, Burst: 1e6, Now: func() time.Time { return *now }})
}

// TestWriterCountFollowsTheStore: the count budget of a gateway's own
// writes sees the records its region's other gateway wrote and it
// received, and their deletes, also when more changes than the store's
// feed keeps were committed in between.
func TestWriterCountFollowsTheStore(t *testing.T) {
	ctx := context.Background()
	c := contract(t, 3)
	keys, trust := signers(t, "ord")
	now := time.Unix(1_000_000, 0)
	for _, retention := range []int{0, 4} {
		a := gatewayNode(t, c, "ord-1", "ord", keys["ord"], trust, &now, store.Options{FeedRetention: retention})
		b := gatewayNode(t, c, "ord-2", "ord", keys["ord"], trust, &now, store.Options{FeedRetention: retention})
		write := func(w *Writer, key string, value []byte) error {
			t.Helper()
			res, err := w.Write(ctx, []Record{{Name: "app_placements", Key: key, Value: value}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return res[0].Err
		}
		// b's store changes reach a's as the tier would bring them.
		deliver := func() {
			t.Helper()
			for _, ch := range changes(t, b, "app_placements") {
				if err := a.Accept(ch, "ord-2"); err != nil {
					t.Fatal(err)
				}
				if _, rej, err := a.opts.Store.Merge(ctx, []store.Change{ch}); err != nil || len(rej) > 0 {
					t.Fatal(err, rej)
				}
			}
		}
		for _, k := range []string{"a", "b"} {
			if err := write(a, k, placement(k)); err != nil {
				t.Fatal(err)
			}
		}
		if err := write(b, "c", placement("c")); err != nil {
			t.Fatal(err)
		}
		deliver()
		if err := write(a, "d", placement("d")); Reason(err) != "budget" {
			t.Fatalf("retention %d: a fourth record of max 3, the third written by the other gateway: %v, want refused [budget]", retention, err)
		}
		// Updates take no slot; and more commits than a short feed keeps
		// come between two writes.
		for i := range 3 {
			if err := write(a, "a", append(placement("a"), 0x20, byte(1+i))); err != nil {
				t.Fatalf("retention %d: update: %v", retention, err)
			}
		}
		for range 6 {
			if err := a.Beat(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := write(b, "c", nil); err != nil {
			t.Fatal(err)
		}
		deliver()
		if err := write(a, "d", placement("d")); err != nil {
			t.Fatalf("retention %d: after the other gateway's delete: %v", retention, err)
		}
		if err := write(a, "e", placement("e")); Reason(err) != "budget" {
			t.Fatalf("retention %d: a fourth record again: %v, want refused [budget]", retention, err)
		}
	}
}

// TestDeletesAreReaped: a record's signed delete is reaped from a global
// store opened with DeletedRow, as the agent opens it, once older than
// the horizon (now - tombstone_ttl), like a regional tombstone; the
// delete or the record it deleted, sent again by a peer that has not
// reaped yet, is refused as stale, and the region writes the key afresh.
func TestDeletesAreReaped(t *testing.T) {
	ctx := context.Background()
	c := contract(t, 10)
	keys, trust := signers(t, "ord")
	now := time.Unix(1_000_000, 0)
	a := gatewayNode(t, c, "ord-1", "ord", keys["ord"], trust, &now, store.Options{Deleted: DeletedRow})
	b := gatewayNode(t, c, "ord-2", "ord", keys["ord"], trust, &now, store.Options{Deleted: DeletedRow})
	write := func(w *Writer, key string, value []byte) {
		t.Helper()
		if res, err := w.Write(ctx, []Record{{Name: "app_placements", Key: key, Value: value}}, nil); err != nil || res[0].Err != nil {
			t.Fatal(err, res[0].Err)
		}
	}
	write(a, "kept", placement("kept"))
	write(a, "gone", placement("gone"))
	old := changes(t, a, "app_placements") // both live
	write(a, "gone", nil)
	for _, ch := range changes(t, a, "app_placements") {
		if _, rej, err := b.opts.Store.Merge(ctx, []store.Change{ch}); err != nil || len(rej) > 0 {
			t.Fatal(err, rej)
		}
	}
	horizon := a.opts.Clock.Now() // after every write so far
	if n, err := a.opts.Store.Reap(ctx, horizon); err != nil || n != 1 {
		t.Fatalf("reaped %d rows (%v), want the one delete", n, err)
	}
	rows := changes(t, a, "app_placements")
	if len(rows) != 1 || rows[0].Key != "ord/kept" {
		t.Fatalf("after reaping, the store holds %v, want ord/kept only", rows)
	}
	if n := a.opts.Store.Stats().Rows["app_placements"]; n != 1 {
		t.Fatalf("the store counts %d live rows, want 1", n)
	}
	// b has not reaped: its delete, and the record before it, come back
	// by anti-entropy and are refused.
	for _, ch := range append(changes(t, b, "app_placements"), old...) {
		if ch.Key != "ord/gone" {
			continue
		}
		if err := a.Accept(ch, "ord-2"); err != nil {
			t.Fatal(err)
		}
		if _, rej, err := a.opts.Store.Merge(ctx, []store.Change{ch}); err != nil || len(rej) != 1 || !errors.Is(rej[0].Err, store.ErrStale) {
			t.Fatalf("a reaped delete's row sent again: rejected %v (%v), want refused as stale", rej, err)
		}
	}
	write(a, "gone", placement("gone"))
	if _, err := Get(a.opts.Store, "app_placements", "ord", "gone"); err != nil {
		t.Fatalf("written afresh after the reap: %v", err)
	}
}

// TestVerifierConcurrent: goroutines verifying records of the same
// batches at once, in different orders, share the proven trees and each
// get the right verdicts (run with -race).
func TestVerifierConcurrent(t *testing.T) {
	keys, trust := signers(t, "ord")
	var all []Stored
	for b := range 6 {
		batch := make([]Stored, 100)
		for i := range batch {
			k := fmt.Sprintf("app-%d-%d", b, i)
			batch[i] = stored("ord", k, placement(k), int64(1000*b+i))
		}
		if err := keys["ord"].Sign(batch); err != nil {
			t.Fatal(err)
		}
		all = append(all, batch...)
	}
	v := NewVerifier(trust)
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for _, i := range rng.Perm(len(all)) {
				s := all[i]
				if err := v.Verify(&s); err != nil {
					errs <- fmt.Errorf("%s: %v", s.Record, err)
					return
				}
				s.Proof = append([]byte(nil), s.Proof...)
				s.Proof[len(s.Proof)-1-rng.IntN(32)] ^= 1
				if err := v.Verify(&s); Reason(err) != ReasonSignature {
					errs <- fmt.Errorf("%s with a path byte changed: %v", s.Record, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestWritesOfOtherRecordsGoOnDuringACommit: while one write is inside
// the store's commit (held there by the store's OnCommit hook), writes of
// other records are checked and answered, and the region's count budget
// still holds across them: of two new records written meanwhile with one
// slot left, one is refused at once (counting the record being committed
// and the other one checked before it). A write of the record being
// committed waits for that commit and gives up when its context ends,
// leaving nothing written.
func TestWritesOfOtherRecordsGoOnDuringACommit(t *testing.T) {
	ctx := context.Background()
	c := contract(t, 2)
	keys, trust := signers(t, "ord")
	now := time.Unix(1_000_000, 0)
	entered, release := make(chan struct{}), make(chan struct{})
	var once bool
	w := gatewayNode(t, c, "ord-1", "ord", keys["ord"], trust, &now, store.Options{OnCommit: func(_, remote []store.Change) {
		for _, ch := range remote {
			if ch.Key == "ord/a" && !once { // the commit loop's goroutine only
				once = true
				close(entered)
				<-release
			}
		}
	}})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	type outcome struct {
		key string
		res []Result
		err error
	}
	write := func(ctx context.Context, key string, value []byte, out chan<- outcome) {
		res, err := w.Write(ctx, []Record{{Name: "app_placements", Key: key, Value: value}}, nil)
		out <- outcome{key, res, err}
	}
	within := func(ch <-chan outcome, what string) outcome {
		t.Helper()
		select {
		case o := <-ch:
			return o
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer within 10s while a write of another record was being committed", what)
			return outcome{}
		}
	}

	aDone := make(chan outcome, 1)
	go write(ctx, "a", placement("a"), aDone)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the write of a never reached the store's commit")
	}

	// Two new records with one slot left: one is refused at once, the
	// other waits for the store, behind a.
	others := make(chan outcome, 2)
	go write(ctx, "b", placement("b"), others)
	go write(ctx, "c", placement("c"), others)
	refused := within(others, "a write of b or c")
	if refused.err != nil || Reason(refused.res[0].Err) != "budget" {
		t.Fatalf("first answer, for %s: %v %v; want refused [budget] (a and the other are counted)", refused.key, refused.res, refused.err)
	}

	// A write of a itself waits for a's commit, and gives up with its
	// context.
	cctx, cancel := context.WithCancel(ctx)
	same := make(chan outcome, 1)
	go write(cctx, "a", placement("a2"), same)
	cancel()
	if o := within(same, "a canceled write of a"); !errors.Is(o.err, context.Canceled) || errors.Is(o.err, store.ErrUnconfirmed) {
		t.Fatalf("canceled write of a while a was being committed: %v %v; want canceled before reaching the store", o.res, o.err)
	}

	close(release)
	released = true
	for _, o := range []outcome{within(aDone, "the write of a"), within(others, "the accepted one of b and c")} {
		if o.err != nil || o.res[0].Err != nil {
			t.Fatalf("write of %s: %v %v", o.key, o.res, o.err)
		}
	}
	got, err := List(w.opts.Store, "app_placements", "ord")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("region holds %d records, want 2 (max_per_region)", len(got))
	}
	if a, err := Get(w.opts.Store, "app_placements", "ord", "a"); err != nil || !bytes.Equal(a.Value, placement("a")) {
		t.Fatalf("a is %x %v, want the first write's value (the canceled one wrote nothing)", a.Value, err)
	}
	res, err := w.Write(ctx, []Record{{Name: "app_placements", Key: "d", Value: placement("d")}}, nil)
	if err != nil || Reason(res[0].Err) != "budget" {
		t.Fatalf("a third record once both committed: %v %v, want refused [budget]", res, err)
	}
}

// TestLiveCountsEveryRegionsLiveRecords: Writer.Live counts the live
// records of every region, regions first seen after the first count
// included, and not the signed deletes the store keeps.
func TestLiveCountsEveryRegionsLiveRecords(t *testing.T) {
	ctx := context.Background()
	c := contract(t, 10)
	keys, trust := signers(t, "ord", "ams")
	now := time.Unix(1_000_000, 0)
	ord := gatewayNode(t, c, "ord-1", "ord", keys["ord"], trust, &now, store.Options{})
	ams := gatewayNode(t, c, "ams-1", "ams", keys["ams"], trust, &now, store.Options{})
	write := func(w *Writer, key string, value []byte) {
		t.Helper()
		if res, err := w.Write(ctx, []Record{{Name: "app_placements", Key: key, Value: value}}, nil); err != nil || res[0].Err != nil {
			t.Fatalf("write %s: %v %v", key, res, err)
		}
	}
	deliver := func() {
		t.Helper()
		for _, ch := range changes(t, ams, "app_placements") {
			if err := ord.Accept(ch, "ams-1"); err != nil {
				t.Fatal(err)
			}
			if _, rej, err := ord.opts.Store.Merge(ctx, []store.Change{ch}); err != nil || len(rej) > 0 {
				t.Fatal(err, rej)
			}
		}
	}
	live := func(want int, when string) {
		t.Helper()
		if n, err := ord.Live("app_placements"); err != nil || n != want {
			t.Fatalf("%s: %d live records (%v), want %d", when, n, err, want)
		}
	}
	write(ord, "a", placement("a"))
	write(ord, "b", placement("b"))
	write(ord, "b", nil)
	live(1, "ord's a, b deleted")
	write(ams, "c", placement("c"))
	write(ams, "d", placement("d"))
	deliver()
	live(3, "ams first seen after the first count")
	write(ams, "c", nil)
	deliver()
	write(ord, "b", placement("b"))
	live(3, "ams's c deleted, ord's b written again")
	if rows := ord.opts.Store.Stats().Rows["app_placements"]; rows != 4 {
		t.Fatalf("the store holds %d rows, want 4 (a, b, and ams's c, d: c's delete is a live row)", rows)
	}
}

// TestConcurrentWritesKeepTheCountBudget: writers of new records racing
// each other (batches and single records, some of the same keys) never
// together exceed max_per_region: exactly that many are accepted, and the
// store holds them.
func TestConcurrentWritesKeepTheCountBudget(t *testing.T) {
	ctx := context.Background()
	c := contract(t, 10)
	keys, trust := signers(t, "ord")
	now := time.Unix(1_000_000, 0)
	w := gatewayNode(t, c, "ord-1", "ord", keys["ord"], trust, &now, store.Options{})
	accepted := make(chan string, 64)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			var recs []Record
			for i := range 1 + g%3 {
				k := fmt.Sprintf("k-%d", (g*3+i)%10) // k-2, k-3, k-6, k-7, k-8 by two writers
				recs = append(recs, Record{Name: "app_placements", Key: k, Value: placement(k)})
			}
			for range 2 {
				res, err := w.Write(ctx, recs, nil)
				if err != nil {
					errs <- err
					return
				}
				for i, r := range res {
					if r.Err == nil {
						accepted <- recs[i].Key
					} else if Reason(r.Err) != "budget" {
						errs <- r.Err
						return
					}
				}
				for i := range recs {
					recs[i].Key += "-again"
					recs[i].Value = placement(recs[i].Key)
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(accepted)
	distinct := map[string]bool{}
	for k := range accepted {
		distinct[k] = true
	}
	got, err := List(w.opts.Store, "app_placements", "ord")
	if err != nil {
		t.Fatal(err)
	}
	if len(distinct) != 10 || len(got) != 10 {
		t.Fatalf("%d distinct records accepted, %d stored; want 10 and 10 (max_per_region)", len(distinct), len(got))
	}
}
