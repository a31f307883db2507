package worker

import (
	"math"
	"sync"
	"time"

	"github.com/loom-project/loom/proto/flinkpb"
)

// io is the subtask's counts so far: records read from its gate and
// written to its record writers, and the bytes of them that crossed the
// network. Each is published batch by batch by the subtask's goroutine;
// reading them takes nothing from the data path.
func (b *built) io() *flinkpb.IOMetrics {
	m := &flinkpb.IOMetrics{RecordsIn: b.ctx.RecordsIn.Load(), BytesIn: b.ctx.BytesIn.Load(), IdleMs: b.ctx.IdleNanos.Load() / 1e6}
	var waited int64
	for _, w := range b.writers {
		if c, ok := w.(interface {
			RecordsOut() int64
			BytesOut() int64
			BackPressuredNanos() int64
		}); ok {
			m.RecordsOut += c.RecordsOut()
			m.BytesOut += c.BytesOut()
			waited += c.BackPressuredNanos()
		}
	}
	m.BackPressuredMs = waited / 1e6
	for _, w := range b.writers {
		if o, ok := w.(interface{ OutputWatermark() (int64, bool) }); ok {
			if wm, sent := o.OutputWatermark(); sent && (!m.HasOutputWatermark || wm > m.OutputWatermark) {
				m.OutputWatermark, m.HasOutputWatermark = wm, true
			}
		}
	}
	m.LateRecordsDropped = b.ctx.LateRecordsDropped.Load()
	m.Accumulators = b.ctx.Accumulators.Values()
	m.UserMetrics = b.ctx.Metrics.Values(time.Now())
	if wm := b.ctx.InputWatermark.Load(); wm != math.MinInt64 && b.source == nil {
		m.InputWatermark, m.HasInputWatermark = wm, true
	}
	return m
}

// Live holds a worker's running subtasks, whose counts it reports to its
// TaskManager now and then; a subtask leaves it when it ends.
type Live struct {
	mu sync.Mutex
	m  map[*built]bool
}

// NewLive makes an empty set.
func NewLive() *Live { return &Live{m: map[*built]bool{}} }

func (l *Live) add(b *built) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[b] = true
}

func (l *Live) remove(b *built) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, b)
}

// Metrics are the running subtasks' counts.
func (l *Live) Metrics() []*flinkpb.SubtaskMetrics {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*flinkpb.SubtaskMetrics, 0, len(l.m))
	for b := range l.m {
		out = append(out, &flinkpb.SubtaskMetrics{Vertex: int32(b.id.Vertex), Subtask: int32(b.id.Index), Attempt: int32(b.id.Attempt), Io: b.io()})
	}
	return out
}

// metricsInterval is how often a worker reports its subtasks' counts.
const metricsInterval = time.Second
