package procstats

import (
	"testing"
	"time"
)

// CPU time grows with work, and the load since the last figures is a
// share of the host's CPUs.
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
	if b.CpuLoad <= 0 || b.CpuLoad > 1 {
		t.Errorf("load %v after a busy loop, want in (0, 1]", b.CpuLoad)
	}
	sum := Add(a, b)
	if sum.CpuTimeNs != a.CpuTimeNs+b.CpuTimeNs || sum.Processes != 2 {
		t.Errorf("sum %+v", sum)
	}
}
