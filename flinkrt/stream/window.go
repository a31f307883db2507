package stream

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// TimeWindow is a span of time [Start, End). The global window spans all time.
type TimeWindow struct {
	Start, End int64
}

// GlobalWindow is the one window of GlobalWindows.
var GlobalWindow = TimeWindow{math.MinInt64, math.MaxInt64}

// MaxTimestamp is the last time in the window: the time of its results.
func (w TimeWindow) MaxTimestamp() int64 {
	if w.End == math.MaxInt64 {
		return math.MaxInt64
	}
	return w.End - 1
}

func (w TimeWindow) String() string {
	if w == GlobalWindow {
		return "GlobalWindow"
	}
	return fmt.Sprintf("TimeWindow{start=%d, end=%d}", w.Start, w.End)
}

func (w TimeWindow) intersects(o TimeWindow) bool { return w.Start <= o.End && o.Start <= w.End }

func (w TimeWindow) cover(o TimeWindow) TimeWindow {
	return TimeWindow{min(w.Start, o.Start), max(w.End, o.End)}
}

type assignerKind int

const (
	tumbling assignerKind = iota
	sliding
	session
	global
)

// WindowAssigner puts each record into windows.
type WindowAssigner struct {
	kind      assignerKind
	eventTime bool
	size      int64
	slide     int64
	offset    int64
	gap       int64
}

// TumblingEventTimeWindows are back-to-back windows of size by event time.
func TumblingEventTimeWindows(size time.Duration) WindowAssigner {
	return WindowAssigner{kind: tumbling, eventTime: true, size: size.Milliseconds()}
}

// TumblingProcessingTimeWindows are back-to-back windows of size by the
// wall clock.
func TumblingProcessingTimeWindows(size time.Duration) WindowAssigner {
	return WindowAssigner{kind: tumbling, size: size.Milliseconds()}
}

// SlidingEventTimeWindows are windows of size starting every slide, by
// event time.
func SlidingEventTimeWindows(size, slide time.Duration) WindowAssigner {
	return WindowAssigner{kind: sliding, eventTime: true, size: size.Milliseconds(), slide: slide.Milliseconds()}
}

// SlidingProcessingTimeWindows are windows of size starting every slide,
// by the wall clock.
func SlidingProcessingTimeWindows(size, slide time.Duration) WindowAssigner {
	return WindowAssigner{kind: sliding, size: size.Milliseconds(), slide: slide.Milliseconds()}
}

// EventTimeSessionWindows group records of a key that are less than gap
// apart in event time.
func EventTimeSessionWindows(gap time.Duration) WindowAssigner {
	return WindowAssigner{kind: session, eventTime: true, gap: gap.Milliseconds()}
}

// ProcessingTimeSessionWindows group records of a key that arrive less
// than gap apart.
func ProcessingTimeSessionWindows(gap time.Duration) WindowAssigner {
	return WindowAssigner{kind: session, gap: gap.Milliseconds()}
}

// GlobalWindows puts every record of a key in one window that never ends;
// it fires only by a trigger (CountTrigger, DeltaTrigger).
func GlobalWindows() WindowAssigner { return WindowAssigner{kind: global} }

// WithOffset shifts tumbling and sliding windows (for time zones).
func (a WindowAssigner) WithOffset(d time.Duration) WindowAssigner {
	a.offset = d.Milliseconds()
	return a
}

func (a WindowAssigner) validate() error {
	switch a.kind {
	case tumbling:
		if a.size <= 0 {
			return fmt.Errorf("tumbling windows need a size of at least 1 ms")
		}
	case sliding:
		if a.size <= 0 || a.slide <= 0 {
			return fmt.Errorf("sliding windows need a size and a slide of at least 1 ms")
		}
	case session:
		if a.gap <= 0 {
			return fmt.Errorf("session windows need a gap of at least 1 ms")
		}
	}
	return nil
}

// windowStart is Flink's TimeWindow.getWindowStartWithOffset.
func windowStart(ts, offset, size int64) int64 {
	return ts - ((ts-offset)%size+size)%size
}

func (a WindowAssigner) assign(ts int64) []TimeWindow {
	switch a.kind {
	case tumbling:
		start := windowStart(ts, a.offset, a.size)
		return []TimeWindow{{start, start + a.size}}
	case sliding:
		var ws []TimeWindow
		for start := windowStart(ts, a.offset, a.slide); start > ts-a.size; start -= a.slide {
			ws = append(ws, TimeWindow{start, start + a.size})
		}
		return ws
	case session:
		return []TimeWindow{{ts, ts + a.gap}}
	}
	return []TimeWindow{GlobalWindow}
}

// ----------------------------------------------------------------- triggers

// TriggerResult says what a trigger wants done with a window.
type TriggerResult int

// What a trigger can ask for.
const (
	Continue TriggerResult = iota
	Fire
	Purge
	FireAndPurge
)

func (r TriggerResult) fires() bool  { return r == Fire || r == FireAndPurge }
func (r TriggerResult) purges() bool { return r == Purge || r == FireAndPurge }

// TriggerContext is a trigger's view of one key's window.
type TriggerContext struct {
	state     *any
	merged    []any
	watermark int64
	regEvent  func(ts int64)
	delEvent  func(ts int64)
	regProc   func(ts int64)
	delProc   func(ts int64)
}

// State is the trigger's own value for this key and window.
func (c *TriggerContext) State() *any { return c.state }

// MergedStates are the states of the windows merged into this one (OnMerge).
func (c *TriggerContext) MergedStates() []any { return c.merged }

// CurrentWatermark is the operator's watermark.
func (c *TriggerContext) CurrentWatermark() int64 { return c.watermark }

// RegisterEventTimeTimer calls OnEventTime once the watermark reaches ts.
func (c *TriggerContext) RegisterEventTimeTimer(ts int64) { c.regEvent(ts) }

// DeleteEventTimeTimer removes an event-time timer of this window.
func (c *TriggerContext) DeleteEventTimeTimer(ts int64) { c.delEvent(ts) }

// RegisterProcessingTimeTimer calls OnProcessingTime at wall-clock ts.
func (c *TriggerContext) RegisterProcessingTimeTimer(ts int64) { c.regProc(ts) }

// DeleteProcessingTimeTimer removes a processing-time timer of this window.
func (c *TriggerContext) DeleteProcessingTimeTimer(ts int64) { c.delProc(ts) }

// Trigger decides when a window's function runs. A trigger is shared by
// every subtask; per-window state lives in ctx.State().
type Trigger[T any] interface {
	OnElement(v T, ts int64, w TimeWindow, ctx *TriggerContext) TriggerResult
	OnEventTime(ts int64, w TimeWindow, ctx *TriggerContext) TriggerResult
	OnProcessingTime(ts int64, w TimeWindow, ctx *TriggerContext) TriggerResult
	// OnMerge is called on the window that session windows merged into.
	OnMerge(w TimeWindow, ctx *TriggerContext)
	Clear(w TimeWindow, ctx *TriggerContext)
}

// EventTimeTrigger fires a window once the watermark passes its end: the
// default of event-time windows.
func EventTimeTrigger[T any]() Trigger[T] { return eventTimeTrigger[T]{} }

type eventTimeTrigger[T any] struct{}

func (eventTimeTrigger[T]) OnElement(_ T, _ int64, w TimeWindow, ctx *TriggerContext) TriggerResult {
	if w.MaxTimestamp() <= ctx.CurrentWatermark() {
		return Fire
	}
	ctx.RegisterEventTimeTimer(w.MaxTimestamp())
	return Continue
}

func (eventTimeTrigger[T]) OnEventTime(ts int64, w TimeWindow, _ *TriggerContext) TriggerResult {
	if ts == w.MaxTimestamp() {
		return Fire
	}
	return Continue
}

func (eventTimeTrigger[T]) OnProcessingTime(int64, TimeWindow, *TriggerContext) TriggerResult {
	return Continue
}

func (eventTimeTrigger[T]) OnMerge(w TimeWindow, ctx *TriggerContext) {
	if w.MaxTimestamp() > ctx.CurrentWatermark() {
		ctx.RegisterEventTimeTimer(w.MaxTimestamp())
	}
}

func (eventTimeTrigger[T]) Clear(w TimeWindow, ctx *TriggerContext) {
	ctx.DeleteEventTimeTimer(w.MaxTimestamp())
}

// ProcessingTimeTrigger fires a window when the wall clock passes its end:
// the default of processing-time windows.
func ProcessingTimeTrigger[T any]() Trigger[T] { return processingTimeTrigger[T]{} }

type processingTimeTrigger[T any] struct{}

func (processingTimeTrigger[T]) OnElement(_ T, _ int64, w TimeWindow, ctx *TriggerContext) TriggerResult {
	ctx.RegisterProcessingTimeTimer(w.MaxTimestamp())
	return Continue
}

func (processingTimeTrigger[T]) OnEventTime(int64, TimeWindow, *TriggerContext) TriggerResult {
	return Continue
}

func (processingTimeTrigger[T]) OnProcessingTime(int64, TimeWindow, *TriggerContext) TriggerResult {
	return Fire
}

func (processingTimeTrigger[T]) OnMerge(w TimeWindow, ctx *TriggerContext) {
	ctx.RegisterProcessingTimeTimer(w.MaxTimestamp())
}

func (processingTimeTrigger[T]) Clear(w TimeWindow, ctx *TriggerContext) {
	ctx.DeleteProcessingTimeTimer(w.MaxTimestamp())
}

// NeverTrigger never fires: the default of GlobalWindows.
func NeverTrigger[T any]() Trigger[T] { return neverTrigger[T]{} }

type neverTrigger[T any] struct{}

func (neverTrigger[T]) OnElement(T, int64, TimeWindow, *TriggerContext) TriggerResult {
	return Continue
}
func (neverTrigger[T]) OnEventTime(int64, TimeWindow, *TriggerContext) TriggerResult { return Continue }
func (neverTrigger[T]) OnProcessingTime(int64, TimeWindow, *TriggerContext) TriggerResult {
	return Continue
}
func (neverTrigger[T]) OnMerge(TimeWindow, *TriggerContext) {}
func (neverTrigger[T]) Clear(TimeWindow, *TriggerContext)   {}

// CountTrigger fires each time a window has received n more records.
func CountTrigger[T any](n int64) Trigger[T] { return countTrigger[T]{n} }

type countTrigger[T any] struct{ n int64 }

func (t countTrigger[T]) OnElement(_ T, _ int64, _ TimeWindow, ctx *TriggerContext) TriggerResult {
	count, _ := (*ctx.State()).(int64)
	count++
	if count >= t.n {
		*ctx.State() = int64(0)
		return Fire
	}
	*ctx.State() = count
	return Continue
}

func (countTrigger[T]) OnEventTime(int64, TimeWindow, *TriggerContext) TriggerResult { return Continue }
func (countTrigger[T]) OnProcessingTime(int64, TimeWindow, *TriggerContext) TriggerResult {
	return Continue
}

func (countTrigger[T]) OnMerge(_ TimeWindow, ctx *TriggerContext) {
	var sum int64
	for _, s := range ctx.MergedStates() {
		c, _ := s.(int64)
		sum += c
	}
	*ctx.State() = sum
}

func (countTrigger[T]) Clear(_ TimeWindow, ctx *TriggerContext) { *ctx.State() = nil }

// DeltaTrigger fires when delta(last fired record, record) exceeds
// threshold; the first record of a window only sets the reference.
func DeltaTrigger[T any](threshold float64, delta func(old, new T) float64) Trigger[T] {
	return deltaTrigger[T]{threshold, delta}
}

type deltaTrigger[T any] struct {
	threshold float64
	delta     func(old, new T) float64
}

func (t deltaTrigger[T]) OnElement(v T, _ int64, _ TimeWindow, ctx *TriggerContext) TriggerResult {
	last, ok := (*ctx.State()).(T)
	if !ok {
		*ctx.State() = v
		return Continue
	}
	if t.delta(last, v) > t.threshold {
		*ctx.State() = v
		return Fire
	}
	return Continue
}

func (deltaTrigger[T]) OnEventTime(int64, TimeWindow, *TriggerContext) TriggerResult { return Continue }
func (deltaTrigger[T]) OnProcessingTime(int64, TimeWindow, *TriggerContext) TriggerResult {
	return Continue
}
func (deltaTrigger[T]) OnMerge(TimeWindow, *TriggerContext)     {}
func (deltaTrigger[T]) Clear(_ TimeWindow, ctx *TriggerContext) { *ctx.State() = nil }

// PurgingTrigger makes every Fire of t a FireAndPurge.
func PurgingTrigger[T any](t Trigger[T]) Trigger[T] { return purging[T]{t} }

type purging[T any] struct{ Trigger[T] }

func purge(r TriggerResult) TriggerResult {
	if r == Fire {
		return FireAndPurge
	}
	return r
}

func (p purging[T]) OnElement(v T, ts int64, w TimeWindow, ctx *TriggerContext) TriggerResult {
	return purge(p.Trigger.OnElement(v, ts, w, ctx))
}

func (p purging[T]) OnEventTime(ts int64, w TimeWindow, ctx *TriggerContext) TriggerResult {
	return purge(p.Trigger.OnEventTime(ts, w, ctx))
}

func (p purging[T]) OnProcessingTime(ts int64, w TimeWindow, ctx *TriggerContext) TriggerResult {
	return purge(p.Trigger.OnProcessingTime(ts, w, ctx))
}

// ----------------------------------------------------------------- evictors

// Timestamped is a record in a window with its event time.
type Timestamped[T any] struct {
	Value T
	Time  int64
}

// Evictor removes records from a window before its function runs.
type Evictor[T any] interface {
	EvictBefore(elems []Timestamped[T], w TimeWindow) []Timestamped[T]
}

// CountEvictor keeps the last n records of a window.
func CountEvictor[T any](n int) Evictor[T] { return countEvictor[T]{n} }

type countEvictor[T any] struct{ n int }

func (e countEvictor[T]) EvictBefore(elems []Timestamped[T], _ TimeWindow) []Timestamped[T] {
	if len(elems) <= e.n {
		return elems
	}
	return append(elems[:0], elems[len(elems)-e.n:]...)
}

// TimeEvictor keeps the records within size of the newest record's time.
func TimeEvictor[T any](size time.Duration) Evictor[T] { return timeEvictor[T]{size.Milliseconds()} }

type timeEvictor[T any] struct{ size int64 }

func (e timeEvictor[T]) EvictBefore(elems []Timestamped[T], _ TimeWindow) []Timestamped[T] {
	newest := int64(math.MinInt64)
	for _, el := range elems {
		newest = max(newest, el.Time)
	}
	if newest == math.MinInt64 {
		return elems
	}
	cutoff := newest - e.size
	kept := elems[:0]
	for _, el := range elems {
		if el.Time > cutoff {
			kept = append(kept, el)
		}
	}
	return kept
}

// sortWindows orders a key's session windows by start.
func sortWindows(ws []TimeWindow) {
	sort.Slice(ws, func(i, j int) bool { return ws[i].Start < ws[j].Start })
}
