package contracts

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

func BenchmarkDecodeJSONValidate(b *testing.B) {
	s := table(b, example(b), "machines")
	body := []byte(machineJSON)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := s.DecodeJSON(body)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Validate(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBinary(b *testing.B) {
	s := table(b, example(b), "machines")
	m, _ := s.DecodeJSON([]byte(machineJSON))
	fields, _ := s.Split(m)
	var wire []byte
	for _, fv := range fields {
		wire = append(wire, fv.Value...)
	}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.DecodeBinary(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSplit(b *testing.B) {
	s := table(b, example(b), "machines")
	m, err := s.DecodeJSON([]byte(machineJSON))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Split(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJoin(b *testing.B) {
	s := table(b, example(b), "machines")
	m, _ := s.DecodeJSON([]byte(machineJSON))
	fields, err := s.Split(m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Join(fields); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyOf(b *testing.B) {
	s := table(b, example(b), "machines")
	m, _ := s.DecodeJSON([]byte(machineJSON))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.KeyOf(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompileExample(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(b.Context(), Example, ExampleFiles()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckWrite measures the global-write pipeline on the example's
// app_placements, every step on: strict decode, protovalidate, key, region,
// size, count, rate budget and the dynamic leak guard against the
// regional_only values of 10,000 machines. The target is 300,000 records/s
// per core (issue 5); run with -cpu 1.
func BenchmarkCheckWrite(b *testing.B) {
	c := example(b)
	apps := record(b, c, "app_placements")
	machines := table(b, c, "machines")
	leaks := NewLeakSet()
	for i := range 10000 {
		row := rowOf(b, machines, fmt.Sprintf(`{"id": "m-%d", "app": "web", "state": "MACHINE_STATE_STARTED",
			"host": "host-%d.ord", "privateIp": "10.0.%d.%d"}`, i, i/40, i/256, i%256))
		if err := leaks.Collect(machines, row); err != nil {
			b.Fatal(err)
		}
	}
	values := make([][]byte, 64)
	for i := range values {
		values[i] = encode(b, apps, fmt.Sprintf(`{"app": "app-%d", "serving": true, "capacity": %d}`, i, 1+i%4))
	}
	budget := NewBudget(1e12, 1<<30)
	now := time.Unix(1e9, 0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		err := c.CheckWrite(Write{
			Record: "app_placements", Key: "app-" + strconv.Itoa(i%64), Region: "ord", Writer: "ord",
			Value: values[i%64], Count: 64, Budget: budget, Now: now, Leaks: leaks,
		})
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
