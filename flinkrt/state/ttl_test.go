package state

import (
	"slices"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/task"
)

// A state with a TTL: an entry lives for the TTL after its key last
// wrote it, reads as absent after, and a checkpoint holds neither expired
// entries nor lost expiry times.
func TestTTL(t *testing.T) {
	now := int64(1_000_000)
	b := NewBackend[string]()
	b.SetClock(func() int64 { return now })
	v := NewValueTTL[string, int](b, "v", TTL(time.Minute))
	l := NewListTTL[string, int](b, "l", TTL(time.Minute))
	m := NewMapTTL[string, string, int](b, "m", TTL(time.Minute))
	plain := NewValue[string, int](b, "plain")

	b.SetCurrentKey("a")
	v.Update(1)
	l.Add(1)
	m.Put("x", 1)
	plain.Update(1)
	now += 30_000
	b.SetCurrentKey("b")
	v.Update(2)
	l.Add(2)
	m.Put("y", 2)

	now += 40_000 // a's entries are 70 s old, b's 40 s
	b.SetCurrentKey("a")
	if _, ok := v.Get(); ok {
		t.Error("a's value outlived its TTL")
	}
	if got := l.Get(); got != nil {
		t.Errorf("a's list outlived its TTL: %v", got)
	}
	if _, ok := m.Get("x"); ok || m.Len() != 0 {
		t.Error("a's map outlived its TTL")
	}
	if got, ok := plain.Get(); !ok || got != 1 {
		t.Error("a state without a TTL expired")
	}
	b.SetCurrentKey("b")
	if got, ok := v.Get(); !ok || got != 2 {
		t.Errorf("b's value: %d, %v; want 2 within its TTL", got, ok)
	}
	// A write restarts the time to live.
	l.Add(3)
	now += 50_000 // b's value 90 s old, its list 50 s
	if _, ok := v.Get(); ok {
		t.Error("b's value outlived its TTL")
	}
	if got := l.Get(); !slices.Equal(got, []int{2, 3}) {
		t.Errorf("b's list, written 50 s ago: %v", got)
	}

	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := NewBackend[string]()
	r.SetClock(func() int64 { return now })
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	rl := NewListTTL[string, int](r, "l", TTL(time.Minute))
	if len(rl.m) != 1 || len(rl.ttl.expires) != 1 {
		t.Errorf("restored list: %v with expiry %v; want b's entry only", rl.m, rl.ttl.expires)
	}
	r.SetCurrentKey("b")
	if got := rl.Get(); !slices.Equal(got, []int{2, 3}) {
		t.Errorf("restored b's list: %v", got)
	}
	now += 11_000 // 61 s after b's list was written
	if got := rl.Get(); got != nil {
		t.Errorf("the restored list kept no expiry time: %v", got)
	}
}

func TestReducingAndAggregating(t *testing.T) {
	b := NewBackend[string]()
	sum := NewReducing[string, int](b, "sum", func(a, c int) int { return a + c }, 0)
	type avg struct{ s, n int }
	mean := NewAggregating[string, int, avg, float64](b, "mean", func() avg { return avg{} },
		func(a avg, v int) avg { return avg{a.s + v, a.n + 1} }, func(a avg) float64 { return float64(a.s) / float64(a.n) }, 0)
	b.SetCurrentKey("k")
	if _, ok := mean.Get(); ok {
		t.Fatal("an empty aggregating state has a result")
	}
	for _, v := range []int{2, 4, 9} {
		sum.Add(v)
		mean.Add(v)
	}
	if s, _ := sum.Get(); s != 15 {
		t.Errorf("sum %d", s)
	}
	if m, _ := mean.Get(); m != 5 {
		t.Errorf("mean %v", m)
	}
	snap, _ := b.Snapshot()
	r := NewBackend[string]()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	rs := NewReducing[string, int](r, "sum", func(a, c int) int { return a + c }, 0)
	r.SetCurrentKey("k")
	rs.Add(1)
	if s, _ := rs.Get(); s != 16 {
		t.Errorf("restored sum + 1 = %d", s)
	}
}

// State restored at another parallelism: every key of every old
// subtask's state lands in exactly one new subtask, the one that owns its
// key group, with its value and its expiry time.
func TestRestoreKeyedRedistributesKeys(t *testing.T) {
	const maxPar = 128
	now := int64(5_000)
	hash := func(k int) uint64 { return uint64(k) * 0x9e3779b97f4a7c15 }
	owner := func(k, par int) int {
		for s := range par {
			if (task.KeyGroups{MaxParallelism: maxPar, Parallelism: par, Subtask: s}).Owns(hash(k)) {
				return s
			}
		}
		return -1
	}
	var snaps [][]byte
	for s := range 2 {
		b := NewBackend[int]()
		b.SetClock(func() int64 { return now })
		v := NewValue[int, int](b, "count")
		l := NewListTTL[int, string](b, "seen", TTL(time.Minute))
		for k := range 100 {
			if owner(k, 2) != s {
				continue
			}
			b.SetCurrentKey(k)
			v.Update(k * 10)
			l.Add("x")
		}
		snap, err := b.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, snap)
	}
	seen := map[int]int{}
	for s := range 3 {
		b := NewBackend[int]()
		b.SetClock(func() int64 { return now })
		if err := b.RestoreKeyed(snaps, func(k int) bool {
			return (task.KeyGroups{MaxParallelism: maxPar, Parallelism: 3, Subtask: s}).Owns(hash(k))
		}); err != nil {
			t.Fatal(err)
		}
		v := NewValue[int, int](b, "count")
		l := NewListTTL[int, string](b, "seen", TTL(time.Minute))
		for k, val := range v.m {
			if owner(k, 3) != s || val != k*10 {
				t.Errorf("subtask %d of 3 holds key %d = %d; its owner is %d", s, k, val, owner(k, 3))
			}
			seen[k]++
		}
		if len(l.m) != len(v.m) || len(l.ttl.expires) != len(v.m) {
			t.Errorf("subtask %d: %d lists with %d expiry times for %d values", s, len(l.m), len(l.ttl.expires), len(v.m))
		}
	}
	for k := range 100 {
		if seen[k] != 1 {
			t.Errorf("key %d is in %d subtasks after the rescale, want 1", k, seen[k])
		}
	}
}
