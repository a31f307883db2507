package rm

import (
	"sync"
	"time"
)

// fakeClock is a Clock a test moves: Advance moves its time and fires
// every ticker that comes due, so that liveness, expiry and retention are
// tested without waiting for real time.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	tickers []*fakeTicker
}

type fakeTicker struct {
	c       chan time.Time
	every   time.Duration
	next    time.Time
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.UnixMilli(1_800_000_000_000)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Tick(d time.Duration) (<-chan time.Time, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTicker{c: make(chan time.Time, 1), every: d, next: f.now.Add(d)}
	f.tickers = append(f.tickers, t)
	return t.c, func() {
		f.mu.Lock()
		t.stopped = true
		f.mu.Unlock()
	}
}

// Advance moves the clock by d and fires the tickers that came due (a
// ticker behind by several periods fires once, as time.Ticker drops
// ticks).
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	for _, t := range f.tickers {
		if t.stopped || t.next.After(f.now) {
			continue
		}
		for !t.next.After(f.now) {
			t.next = t.next.Add(t.every)
		}
		select {
		case t.c <- f.now:
		default:
		}
	}
}

// advanceBy moves the clock by total, step by step, letting the loops the
// ticks wake run between steps.
func (f *fakeClock) advanceBy(step, total time.Duration) {
	for moved := time.Duration(0); moved < total; moved += step {
		f.Advance(step)
		time.Sleep(5 * time.Millisecond)
	}
}

// advanceUntil moves the clock by step until cond holds, failing the test
// after limit of fake time.
func (f *fakeClock) advanceUntil(t interface {
	Helper()
	Fatalf(string, ...any)
}, step, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for moved := time.Duration(0); !cond(); moved += step {
		if moved > limit {
			t.Fatalf("%s did not happen within %s of the RM's clock", what, limit)
		}
		f.Advance(step)
		// Let the loops the ticks woke run.
		deadline := time.Now().Add(50 * time.Millisecond)
		for !cond() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
}
