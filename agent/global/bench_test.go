package global

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/strata-state/strata/agent/hlc"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// BenchmarkReceive measures what a gateway spends on each record a peer
// sends, before the store, in three steps so that one run gives their
// ratios on a shared machine:
//
//   - checkwrite: contracts.CheckWrite alone (the contract's pipeline);
//   - pipeline: Batch.Check (count, rate, then CheckWrite), as Accept runs it;
//   - verify+pipeline: the region proof first (Verifier.Verify: the leaf
//     hash, about one node hash, one Ed25519 verification per batch of
//     MaxBatch records), then Batch.Check.
//
// Every batch is verified afresh in each round of 8,192 records: nothing
// comes from the verifier's cache of a previous round. records/cpu-s is
// records per second of CPU time used by the process (getrusage), which a
// loaded machine distorts far less than wall time.
func BenchmarkReceive(b *testing.B) {
	c := contract(b, 100_000)
	keys, trust := signers(b, "ord")
	const batches = 32
	recs := make([]Stored, 0, batches*MaxBatch)
	for i := range batches * MaxBatch {
		app := fmt.Sprintf("app-%d", i)
		recs = append(recs, Stored{Record: Record{Name: "app_placements", Region: "ord", Key: app, Value: placement(app)},
			CL: 1, Stamp: store.Stamp{HLC: hlc.New(int64(1000+i), 0), Node: 7}})
	}
	for i := 0; i < len(recs); i += MaxBatch {
		if err := keys["ord"].Sign(recs[i : i+MaxBatch]); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Unix(1, 0)
	budgets := NewBudgets(1e12, 1<<30)
	for _, step := range []string{"checkwrite", "pipeline", "verify+pipeline"} {
		b.Run(step, func(b *testing.B) {
			var v *Verifier
			b.ReportAllocs()
			cpu0 := cpuTime()
			for i := range b.N {
				j := i % len(recs)
				if j == 0 {
					v = NewVerifier(trust)
				}
				s := &recs[j]
				var err error
				switch step {
				case "checkwrite":
					err = c.CheckWrite(contracts.Write{Record: s.Name, Key: s.Key, Region: s.Region, Writer: s.Region,
						Value: s.Value, Count: j + 1, Budget: budgets.For(s.Name, s.Region), Now: now})
				case "verify+pipeline":
					err = v.Verify(s)
					fallthrough
				case "pipeline":
					if err == nil {
						// As Accept does: one Batch per received change.
						batch := &Batch{Contract: c, Holdings: counted(j), Budgets: budgets, Now: now}
						err = batch.check(Write{Record: s.Record, Writer: s.Region}, false)
					}
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "records/cpu-s")
		})
	}
}

// counted holds n records and not the one asked about.
type counted int

func (n counted) Holds(string, string, string) (bool, int, error) { return false, int(n), nil }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerify measures the region proof alone, per record, with each
// batch of MaxBatch records verified afresh once per round of 8,192
// records, as in BenchmarkReceive.
func BenchmarkVerify(b *testing.B) {
	keys, trust := signers(b, "ord")
	const batches = 32
	recs := make([]Stored, 0, batches*MaxBatch)
	for i := range batches * MaxBatch {
		app := fmt.Sprintf("app-%d", i)
		recs = append(recs, Stored{Record: Record{Name: "app_placements", Region: "ord", Key: app, Value: placement(app)},
			CL: 1, Stamp: store.Stamp{HLC: hlc.New(int64(1000+i), 0), Node: 7}})
	}
	for i := 0; i < len(recs); i += MaxBatch {
		if err := keys["ord"].Sign(recs[i : i+MaxBatch]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	var v *Verifier
	cpu0 := cpuTime()
	for i := range b.N {
		j := i % len(recs)
		if j == 0 {
			v = NewVerifier(trust)
		}
		if err := v.Verify(&recs[j]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "records/cpu-s")
}

// BenchmarkWriterWrite measures one write of one record (an update, as an
// API PUT or a publisher's run makes) by a gateway whose region holds
// that many records of the type, on a real store without fsync. The count
// budget needs the region's holdings; reading them from the store on
// every write made a write's cost grow with them.
func BenchmarkWriterWrite(b *testing.B) {
	ctx := context.Background()
	for _, held := range []int{100, 5000} {
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			keys, trust := signers(b, "ord")
			now := time.Unix(1_000_000, 0)
			clock := hlc.NewClock(nil, time.Minute)
			st, err := store.Open(filepath.Join(b.TempDir(), "global.db"), store.Options{Node: "ord-1", Clock: clock, NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			w := NewWriter(Options{Contract: contract(b, 10_000), Store: st, Clock: clock, Node: "ord-1", Region: "ord",
				Signer: keys["ord"], Trust: trust, Rate: 1e12, Burst: 1 << 30, Now: func() time.Time { return now }})
			recs := make([]Record, held)
			for i := range recs {
				app := fmt.Sprintf("app-%d", i)
				recs[i] = Record{Name: "app_placements", Key: app, Value: placement(app)}
			}
			for i := 0; i < held; i += MaxBatch {
				if _, err := w.Write(ctx, recs[i:min(i+MaxBatch, held)], nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				r := recs[i%held]
				r.Value = append(placement(r.Key), 0x20, byte(1+i%3))
				res, err := w.Write(ctx, []Record{r}, nil)
				if err != nil || res[0].Err != nil {
					b.Fatal(err, res[0].Err)
				}
			}
		})
	}
}
