package contracts

import (
	"context"
	"sync"
	"testing"
)

// TestConcurrentUse runs every Schema operation from several goroutines on
// a fresh contract (so protovalidate's lazy paths run concurrently too);
// run it with -race.
func TestConcurrentUse(t *testing.T) {
	c, err := Compile(context.Background(), Example, ExampleFiles())
	if err != nil {
		t.Fatal(err)
	}
	s := table(t, c, "machines")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				m, err := s.DecodeJSON([]byte(machineJSON))
				if err != nil {
					t.Error(err)
					return
				}
				if err := s.Validate(m); err != nil {
					t.Error(err)
				}
				if _, err := s.KeyOf(m); err != nil {
					t.Error(err)
				}
				fields, err := s.Split(m)
				if err != nil {
					t.Error(err)
				}
				if _, err := s.Join(fields); err != nil {
					t.Error(err)
				}
				if _, err := s.EncodeJSON(m); err != nil {
					t.Error(err)
				}
				if _, err := s.JSONFieldNumbers([]byte(machineJSON)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
