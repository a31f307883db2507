// Package procstats reads the Go runtime's figures of this process, which
// TaskManagers report to their JobManager for Flink's TaskManager pages.
package procstats

import (
	"math"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/loom-project/loom/proto/flinkpb"
)

// last is the CPU time at the start of the current load window, and
// the load of the window before.
var last struct {
	sync.Mutex
	cpu  int64
	at   time.Time
	load float64
}

// loadWindow is the shortest span a load is measured over, so that a
// reader that reads often (a scrape beside the heartbeat) does not cut
// the windows another reader sees.
const loadWindow = time.Second

// cpuTime is the user and system CPU time this process used so far.
func cpuTime() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// cpuLoad is the share of the host's CPUs used over the last window of at
// least loadWindow, given the CPU time used by now.
func cpuLoad(cpu int64, now time.Time) float64 {
	last.Lock()
	defer last.Unlock()
	wall := now.Sub(last.at)
	switch {
	case last.at.IsZero():
	case wall < loadWindow:
		return last.load
	default:
		last.load = min(max(float64(cpu-last.cpu)/float64(wall.Nanoseconds())/float64(runtime.NumCPU()), 0), 1)
	}
	last.cpu, last.at = cpu, now
	return last.load
}

// Read is this process's figures now.
func Read() *flinkpb.ProcessStats {
	cpu := cpuTime()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	limit := debug.SetMemoryLimit(-1)
	max := int64(-1)
	if limit != math.MaxInt64 {
		max = limit
	}
	return &flinkpb.ProcessStats{
		HeapUsed:      int64(ms.HeapAlloc),
		HeapCommitted: int64(ms.HeapSys - ms.HeapReleased),
		HeapMax:       max,
		NonHeapUsed:   int64(ms.StackSys + ms.MSpanSys + ms.MCacheSys + ms.GCSys + ms.OtherSys + ms.BuckHashSys),
		Goroutines:    int64(runtime.NumGoroutine()),
		GcCount:       int64(ms.NumGC),
		GcTimeMs:      int64(ms.PauseTotalNs / 1e6),
		Processes:     1,
		CpuTimeNs:     cpu,
		CpuLoad:       cpuLoad(cpu, time.Now()),
	}
}

// Add sums two processes' figures; a limit of either that is unset
// leaves the sum's unset.
func Add(a, b *flinkpb.ProcessStats) *flinkpb.ProcessStats {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	max := a.HeapMax + b.HeapMax
	if a.HeapMax < 0 || b.HeapMax < 0 {
		max = -1
	}
	return &flinkpb.ProcessStats{
		HeapUsed: a.HeapUsed + b.HeapUsed, HeapCommitted: a.HeapCommitted + b.HeapCommitted, HeapMax: max,
		NonHeapUsed: a.NonHeapUsed + b.NonHeapUsed, Goroutines: a.Goroutines + b.Goroutines,
		GcCount: a.GcCount + b.GcCount, GcTimeMs: a.GcTimeMs + b.GcTimeMs, Processes: a.Processes + b.Processes,
		CpuTimeNs: a.CpuTimeNs + b.CpuTimeNs, CpuLoad: min(a.CpuLoad+b.CpuLoad, 1),
	}
}
