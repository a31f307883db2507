// Package procstats reads the Go runtime's figures of this process, which
// TaskManagers report to their JobManager for Flink's TaskManager pages.
package procstats

import (
	"math"
	"runtime"
	"runtime/debug"

	"loom/proto/flinkpb"
)

// Read is this process's figures now.
func Read() *flinkpb.ProcessStats {
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
	}
}
