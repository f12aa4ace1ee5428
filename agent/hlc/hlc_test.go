package hlc

import (
	"errors"
	"testing"
	"time"
)

// fakeTime is a settable physical clock.
type fakeTime struct{ t time.Time }

func (f *fakeTime) now() time.Time { return f.t }

func TestTimestampPacking(t *testing.T) {
	ts := New(1764167620123, 7)
	if ts.Millis() != 1764167620123 || ts.Logical() != 7 {
		t.Fatalf("got %d.%d", ts.Millis(), ts.Logical())
	}
	if got, want := ts.String(), "1764167620123.7"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if !(New(5, 0xffff) < New(6, 0)) {
		t.Fatal("logical counter must order below the next millisecond")
	}
}

func TestNowIsStrictlyIncreasing(t *testing.T) {
	ft := &fakeTime{t: time.UnixMilli(1000)}
	c := NewClock(ft.now, time.Minute)
	prev := c.Now()
	for i := 0; i < 70000; i++ { // crosses a logical-counter overflow
		ts := c.Now()
		if ts <= prev {
			t.Fatalf("step %d: %s not after %s", i, ts, prev)
		}
		prev = ts
	}
	// Physical time moving backwards does not move stamps backwards.
	ft.t = time.UnixMilli(10)
	if ts := c.Now(); ts <= prev {
		t.Fatalf("after clock went back: %s not after %s", ts, prev)
	}
	// Physical time moving forward resets the logical counter.
	ft.t = time.UnixMilli(5000000)
	if ts := c.Now(); ts != New(5000000, 0) {
		t.Fatalf("got %s, want 5000000.0", ts)
	}
}

func TestUpdateOrdersAfterRemote(t *testing.T) {
	ft := &fakeTime{t: time.UnixMilli(1000)}
	c := NewClock(ft.now, time.Minute)
	remote := New(1000+30_000, 3) // 30 s ahead: within drift
	if err := c.Update(remote); err != nil {
		t.Fatal(err)
	}
	if ts := c.Now(); ts <= remote {
		t.Fatalf("local %s does not order after remote %s", ts, remote)
	}
}

func TestUpdateRejectsDrift(t *testing.T) {
	ft := &fakeTime{t: time.UnixMilli(1000)}
	c := NewClock(ft.now, time.Minute)
	before := c.Last()
	err := c.Update(New(1000+61_000, 0))
	if !errors.Is(err, ErrDrift) {
		t.Fatalf("err = %v, want ErrDrift", err)
	}
	if c.Last() != before {
		t.Fatal("a rejected update moved the clock")
	}
	if err := c.Check(New(1000+60_000, 0)); err != nil {
		t.Fatalf("exactly at the limit must pass: %v", err)
	}
	if err := NewClock(ft.now, 0).Update(New(1<<40, 0)); err != nil {
		t.Fatalf("drift guard disabled but got %v", err)
	}
}
