package stream

import (
	"container/heap"
	"math"
	"time"

	"github.com/loom-project/loom/flinkrt/task"
)

// timer is one registered timer: a time, the key it fires for, and a
// namespace (the window it belongs to, or nothing).
type timer[K comparable, N comparable] struct {
	ts  int64
	key K
	ns  N
}

type timerHeap[K comparable, N comparable] []timer[K, N]

func (h timerHeap[K, N]) Len() int           { return len(h) }
func (h timerHeap[K, N]) Less(i, j int) bool { return h[i].ts < h[j].ts }
func (h timerHeap[K, N]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap[K, N]) Push(x any)        { *h = append(*h, x.(timer[K, N])) }
func (h *timerHeap[K, N]) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// timerQueue is a heap of timers with at most one timer per (time, key,
// namespace); deleted timers are skipped when they come up.
type timerQueue[K comparable, N comparable] struct {
	heap timerHeap[K, N]
	set  map[timer[K, N]]struct{}
}

func (q *timerQueue[K, N]) add(t timer[K, N]) bool {
	if q.set == nil {
		q.set = map[timer[K, N]]struct{}{}
	}
	if _, ok := q.set[t]; ok {
		return false
	}
	q.set[t] = struct{}{}
	heap.Push(&q.heap, t)
	return true
}

func (q *timerQueue[K, N]) remove(t timer[K, N]) { delete(q.set, t) }

// popUntil removes and returns the earliest live timer at or before ts.
func (q *timerQueue[K, N]) popUntil(ts int64) (timer[K, N], bool) {
	for len(q.heap) > 0 && q.heap[0].ts <= ts {
		t := heap.Pop(&q.heap).(timer[K, N])
		if _, ok := q.set[t]; ok {
			delete(q.set, t)
			return t, true
		}
	}
	return timer[K, N]{}, false
}

// next is the time of the earliest timer, live or not.
func (q *timerQueue[K, N]) next() (int64, bool) {
	if len(q.heap) == 0 {
		return 0, false
	}
	return q.heap[0].ts, true
}

// timerService holds a keyed operator's event-time and processing-time
// timers. Event-time timers fire as the watermark passes them; processing-
// time timers fire from the task's mailbox when the wall clock does.
type timerService[K comparable, N comparable] struct {
	ctx         *task.OperatorContext
	event       timerQueue[K, N]
	proc        timerQueue[K, N]
	watermark   int64
	onEvent     func(t timer[K, N])
	onProc      func(t timer[K, N])
	armedAt     int64
	stopArmed   func()
	currentTime func() int64
}

func newTimerService[K comparable, N comparable](onEvent, onProc func(timer[K, N])) *timerService[K, N] {
	return &timerService[K, N]{
		watermark:   math.MinInt64,
		onEvent:     onEvent,
		onProc:      onProc,
		armedAt:     math.MaxInt64,
		currentTime: func() int64 { return time.Now().UnixMilli() },
	}
}

func (s *timerService[K, N]) open(ctx *task.OperatorContext) { s.ctx = ctx }

func (s *timerService[K, N]) registerEvent(ts int64, key K, ns N) {
	s.event.add(timer[K, N]{ts, key, ns})
}

func (s *timerService[K, N]) deleteEvent(ts int64, key K, ns N) {
	s.event.remove(timer[K, N]{ts, key, ns})
}

func (s *timerService[K, N]) registerProc(ts int64, key K, ns N) {
	if s.proc.add(timer[K, N]{ts, key, ns}) && ts < s.armedAt {
		s.arm(ts)
	}
}

func (s *timerService[K, N]) deleteProc(ts int64, key K, ns N) {
	s.proc.remove(timer[K, N]{ts, key, ns})
}

// advance fires every event-time timer at or before wm.
func (s *timerService[K, N]) advance(wm int64) {
	s.watermark = wm
	for {
		t, ok := s.event.popUntil(wm)
		if !ok {
			return
		}
		s.onEvent(t)
	}
}

// arm schedules a wake-up for the processing time ts.
func (s *timerService[K, N]) arm(ts int64) {
	if s.stopArmed != nil {
		s.stopArmed()
	}
	s.armedAt = ts
	d := time.Duration(ts-s.currentTime()) * time.Millisecond
	s.stopArmed = s.ctx.After(max(d, 0), s.fireProc)
}

func (s *timerService[K, N]) fireProc() {
	s.armedAt, s.stopArmed = math.MaxInt64, nil
	now := s.currentTime()
	for {
		t, ok := s.proc.popUntil(now)
		if !ok {
			break
		}
		s.onProc(t)
	}
	if next, ok := s.proc.next(); ok {
		s.arm(next)
	}
}
