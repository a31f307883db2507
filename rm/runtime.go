package rm

import (
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
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
// half the CPU), so the limit follows the process: after every
// collection it becomes what the runtime holds besides the heap's
// objects (goroutine stacks, a few for each connection: 36 MiB at 10,000
// NodeManagers; the heap's fragmentation) plus twice the live heap, and
// never less than 72 MiB.
//
// Following each collection, rather than a clock, matters while the
// heap grows: a cluster filling up doubles it in seconds, and a limit a
// few seconds behind had the collector run back to back, 40% of the
// CPU, through the fill.
func TuneRuntime() (stop func()) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	debug.SetMemoryLimit(minMemoryLimit)
	samples := make([]rtmetrics.Sample, len(memorySamples))
	for i, name := range memorySamples {
		samples[i].Name = name
	}
	return afterEachGC(func() {
		rtmetrics.Read(samples)
		var v [len(memorySamples)]uint64
		for i, s := range samples {
			if s.Value.Kind() != rtmetrics.KindUint64 {
				return
			}
			v[i] = s.Value.Uint64()
		}
		// What counts against the limit besides the heap's objects and
		// free pages: the runtime's own memory, goroutine stacks, and
		// the heap's fragmentation (unused bytes of its spans). The
		// fragmentation left when a large heap shrinks (applications
		// ending) is charged to the heap too, so without it here the
		// goal fell to the live heap and the collector ran back to back.
		heap := v[2] + v[4]
		var other uint64
		if v[1] > v[5]+heap {
			other = v[1] - v[5] - heap
		}
		debug.SetMemoryLimit(memoryLimitFor(v[0], other))
	})
}

// afterEachGC calls fn on the runtime's finalizer goroutine after every
// garbage collection, until stop returns: a sentinel that only the
// runtime holds is finalized by each collection, and its finalizer arms
// the next. fn must be quick, as every finalizer waits behind it.
func afterEachGC(fn func()) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var arm func()
	arm = func() {
		// A pointer field keeps the sentinel out of the tiny allocator,
		// whose blocks are finalized only when all they hold is dead.
		runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) {
			mu.Lock()
			defer mu.Unlock()
			if stopped {
				return
			}
			fn()
			arm()
		})
	}
	arm()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
	}
}

type gcSentinel struct{ _ *byte }

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
