package rm

import "testing"

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
