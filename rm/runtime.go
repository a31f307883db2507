package rm

import (
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// The RM's soft memory limit: at least minMemoryLimit, and room for the
// live heap to double once the cluster makes it larger.
const (
	minMemoryLimit = 72 << 20
	liveHeadroom   = 2
)

// TuneRuntime sets the garbage collector for a ResourceManager process
// unless the operator set GOGC or GOMEMLIMIT, and returns the function
// that stops following the heap. The RM's live heap is small on a small
// cluster (about 31 MiB with 5,000 nodes and 10,000 containers) and its
// apply path allocates a lot, so collecting at 400% growth instead of
// 100% buys ~20% scheduling throughput, and a 72 MiB soft limit keeps the
// process, with the raft log's mapped pages and the binary's, within 128
// MiB. A fixed limit below what the process needs makes the collector
// run without pause (at 1,000 NodeManagers and 18,000 containers it took
// half the CPU), so the limit follows the process: every few seconds it
// becomes what the runtime holds besides the heap (goroutine stacks, a
// few for each connection: 36 MiB at 10,000 NodeManagers) plus twice the
// live heap, and never less than 72 MiB.
func TuneRuntime() (stop func()) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	debug.SetMemoryLimit(minMemoryLimit)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		samples := make([]rtmetrics.Sample, len(memorySamples))
		for i, name := range memorySamples {
			samples[i].Name = name
		}
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			rtmetrics.Read(samples)
			var v [len(memorySamples)]uint64
			ok := true
			for i, s := range samples {
				if s.Value.Kind() != rtmetrics.KindUint64 {
					ok = false
					break
				}
				v[i] = s.Value.Uint64()
			}
			if !ok {
				continue
			}
			// What counts against the limit and is not the heap's.
			heap := v[2] + v[3] + v[4]
			var other uint64
			if v[1] > v[5]+heap {
				other = v[1] - v[5] - heap
			}
			debug.SetMemoryLimit(memoryLimitFor(v[0], other))
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// memorySamples are the runtime metrics the limit follows, in the order
// TuneRuntime reads them.
var memorySamples = [...]string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
}

// memoryLimitFor is the soft limit for a live heap of live bytes in a
// process that holds other bytes besides its heap.
func memoryLimitFor(live, other uint64) int64 {
	return max(minMemoryLimit, int64(other)+int64(live)*liveHeadroom)
}
