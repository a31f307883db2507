package procstats

import (
	"runtime"
	"testing"
	"time"
)

// CPU time grows with work.
func TestCPUTime(t *testing.T) {
	a := Read()
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for cpuTime() < a.CpuTimeNs+int64(20*time.Millisecond) && time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
	}
	b := Read()
	if b.CpuTimeNs <= a.CpuTimeNs {
		t.Fatalf("CPU time went from %d to %d ns over a busy loop (%d)", a.CpuTimeNs, b.CpuTimeNs, x)
	}
	sum := Add(a, b)
	if sum.CpuTimeNs != a.CpuTimeNs+b.CpuTimeNs || sum.Processes != 2 {
		t.Errorf("sum %+v", sum)
	}
}

// The load is the share of the host's CPUs over a window of at least a
// second: a read within it answers the window before and moves nothing.
func TestCPULoadWindows(t *testing.T) {
	last.Lock()
	last.cpu, last.at, last.load = 0, time.Time{}, 0
	last.Unlock()
	n := int64(runtime.NumCPU())
	t0 := time.Unix(1000, 0)
	if l := cpuLoad(0, t0); l != 0 {
		t.Fatalf("first load %v, want 0", l)
	}
	// Half the CPUs busy for two seconds.
	if l := cpuLoad(n*int64(time.Second), t0.Add(2*time.Second)); l != 0.5 {
		t.Fatalf("load %v, want 0.5", l)
	}
	// A read 100 ms on answers the last window's load and keeps its mark.
	if l := cpuLoad(n*int64(time.Second)+n*int64(100*time.Millisecond), t0.Add(2100*time.Millisecond)); l != 0.5 {
		t.Fatalf("load %v within a window, want the last, 0.5", l)
	}
	// All CPUs busy for the next second, from the window's start.
	if l := cpuLoad(n*int64(2*time.Second), t0.Add(3*time.Second)); l != 1 {
		t.Fatalf("load %v, want 1", l)
	}
}
