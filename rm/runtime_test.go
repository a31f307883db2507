package rm

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

// The soft limit leaves the live heap room to double on top of what the
// process holds besides its heap (goroutine stacks, a few for each
// connection): twice the heap alone would leave the collector less room
// the more connections there are.
func TestMemoryLimitLeavesTheHeapRoomBesideStacks(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, other uint64
		want        int64
	}{
		{10 * mib, 5 * mib, minMemoryLimit},
		{100 * mib, 0, 200 * mib},
		{100 * mib, 250 * mib, 450 * mib},
	} {
		if got := memoryLimitFor(c.live, c.other); got != c.want {
			t.Errorf("live %d MiB, other %d MiB: limit %d MiB, want %d MiB", c.live/mib, c.other/mib, got/mib, c.want/mib)
		}
	}
}

// The limit follows the heap after each collection, not seconds later:
// a cluster filling up doubles its heap in seconds.
func TestMemoryLimitFollowsEachCollection(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOMEMLIMIT is set: the RM leaves the limit to it")
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1)) // -1 reads it
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	stop := TuneRuntime()
	defer stop()
	live := make([]*[1 << 20]byte, 96) // 96 MiB that stay live
	for i := range live {
		live[i] = new([1 << 20]byte)
	}
	want := int64(2 * 96 << 20)
	deadline := time.Now().Add(30 * time.Second)
	for debug.SetMemoryLimit(-1) < want {
		if time.Now().After(deadline) {
			t.Fatalf("the limit is %d MiB with 96 MiB live; want at least %d MiB", debug.SetMemoryLimit(-1)>>20, want>>20)
		}
		runtime.GC()
		runtime.Gosched()
	}
	runtime.KeepAlive(live)
}

func TestAfterEachGCStops(t *testing.T) {
	var calls atomic.Int64
	stop := afterEachGC(func() { calls.Add(1) })
	deadline := time.Now().Add(30 * time.Second)
	for calls.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("called %d times", calls.Load())
		}
		runtime.GC()
		runtime.Gosched()
	}
	stop()
	n := calls.Load()
	for range 3 {
		runtime.GC()
	}
	if got := calls.Load(); got != n {
		t.Errorf("called %d times after stop", got-n)
	}
}
