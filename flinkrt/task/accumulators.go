package task

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Bounds on a subtask's accumulators, which travel with its metrics.
const (
	MaxAccumulators       = 256
	MaxAccumulatorNameLen = 128
)

// Accumulators are a subtask's user counters (Flink's LongCounter
// accumulators) by name; the job's value of one is the sum over its
// subtasks.
type Accumulators struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

// Counter returns the counter called name, made on first use.
func (a *Accumulators) Counter(name string) (*atomic.Int64, error) {
	if name == "" || len(name) > MaxAccumulatorNameLen {
		return nil, fmt.Errorf("accumulator name %q: want 1 to %d bytes", name, MaxAccumulatorNameLen)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.m[name]; ok {
		return c, nil
	}
	if len(a.m) >= MaxAccumulators {
		return nil, fmt.Errorf("accumulator %q: a subtask has at most %d", name, MaxAccumulators)
	}
	if a.m == nil {
		a.m = map[string]*atomic.Int64{}
	}
	c := &atomic.Int64{}
	a.m[name] = c
	return c, nil
}

// Values are the counters' values now, nil when there are none.
func (a *Accumulators) Values() map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(a.m))
	for k, c := range a.m {
		out[k] = c.Load()
	}
	return out
}
