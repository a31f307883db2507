package stream

import (
	"math"
	"time"

	"github.com/loom-project/loom/flinkrt/task"
)

// WatermarkStrategy says where a record's event time comes from, how the
// watermark follows the times seen, and when an input counts as idle.
type WatermarkStrategy[T any] struct {
	timestamp func(v T) int64
	generator func() WatermarkGenerator[T]
	idle      time.Duration
}

// WatermarkGenerator makes the watermarks of one subtask, as Flink's:
// OnEvent sees every record with its time, OnPeriodicEmit runs every
// auto-watermark interval (Env.SetAutoWatermarkInterval). Either may emit
// a watermark or mark the output idle.
type WatermarkGenerator[T any] interface {
	OnEvent(v T, ts int64, out *WatermarkOutput)
	OnPeriodicEmit(out *WatermarkOutput)
}

// WatermarkOutput is where a generator's watermarks go.
type WatermarkOutput struct{ op *watermarkOpState }

// EmitWatermark passes wm on if it is above every watermark emitted.
func (o *WatermarkOutput) EmitWatermark(wm int64) { o.op.emit(wm) }

// MarkIdle says this subtask has no records for now: consumers do not
// wait for its watermark until it emits a record or a watermark again.
func (o *WatermarkOutput) MarkIdle() { o.op.markIdle() }

// ForBoundedOutOfOrderness trails the largest event time seen by maxDelay:
// records may arrive up to maxDelay late and still count (Flink's
// BoundedOutOfOrdernessWatermarks). timestamp gives a record's time in ms.
func ForBoundedOutOfOrderness[T any](maxDelay time.Duration, timestamp func(v T) int64) WatermarkStrategy[T] {
	delay := maxDelay.Milliseconds()
	return ForGenerator(func() WatermarkGenerator[T] { return &boundedOutOfOrderness[T]{delay: delay, maxTs: math.MinInt64} }, timestamp)
}

// ForMonotonousTimestamps is for records whose times never decrease.
func ForMonotonousTimestamps[T any](timestamp func(v T) int64) WatermarkStrategy[T] {
	return ForBoundedOutOfOrderness(0, timestamp)
}

// ForGenerator makes watermarks with a generator of one's own, one per
// subtask (Flink's WatermarkStrategy.forGenerator).
func ForGenerator[T any](newGen func() WatermarkGenerator[T], timestamp func(v T) int64) WatermarkStrategy[T] {
	return WatermarkStrategy[T]{timestamp: timestamp, generator: newGen}
}

// WithIdleness marks a subtask idle once it has had no record for d, so
// that an input with nothing to say (a partition without data) does not
// hold the watermark back downstream; its next record makes it active
// again (Flink's withIdleness).
func (ws WatermarkStrategy[T]) WithIdleness(d time.Duration) WatermarkStrategy[T] {
	ws.idle = d
	return ws
}

type boundedOutOfOrderness[T any] struct {
	delay int64
	maxTs int64
}

func (g *boundedOutOfOrderness[T]) OnEvent(_ T, ts int64, _ *WatermarkOutput) {
	g.maxTs = max(g.maxTs, ts)
}

func (g *boundedOutOfOrderness[T]) OnPeriodicEmit(out *WatermarkOutput) {
	if g.maxTs != math.MinInt64 {
		out.EmitWatermark(g.maxTs - g.delay - 1)
	}
}

// AssignTimestampsAndWatermarks sets each record's event time and emits
// the strategy's watermarks. Watermarks from upstream are dropped, except
// the end of input.
func AssignTimestampsAndWatermarks[T any](s DataStream[T], ws WatermarkStrategy[T]) DataStream[T] {
	every := s.env.watermarkTick
	return add[T, T](s, "Timestamps/Watermarks", "Timestamps/Watermarks", func(out any) task.Instance {
		o := out.(task.Output[T])
		op := &watermarkOp[T]{ws: ws, every: every, gen: ws.generator(), out: o}
		op.state = watermarkOpState{out: o, emitted: math.MinInt64}
		op.wout = WatermarkOutput{op: &op.state}
		return task.Instance{Input: task.Output[T](op), Lifecycle: op}
	})
}

// watermarkOpState is what a generator's output changes.
type watermarkOpState struct {
	out interface {
		Watermark(int64)
	}
	emitted int64
	idle    bool
}

func (s *watermarkOpState) emit(wm int64) {
	if wm > s.emitted {
		s.emitted, s.idle = wm, false
		s.out.Watermark(wm)
	}
}

func (s *watermarkOpState) markIdle() {
	if !s.idle {
		s.idle = true
		task.MarkIdle(s.out)
	}
}

type watermarkOp[T any] struct {
	ws    WatermarkStrategy[T]
	every time.Duration
	gen   WatermarkGenerator[T]
	out   task.Output[T]
	state watermarkOpState
	wout  WatermarkOutput
	stop  func()
	// lastRecord is when the last record came, for idleness.
	lastRecord time.Time
}

func (o *watermarkOp[T]) Open(ctx *task.OperatorContext) error {
	o.lastRecord = time.Now()
	o.stop = ctx.Every(o.every, o.periodic)
	return nil
}

func (o *watermarkOp[T]) Collect(v T, _ int64) {
	ts := o.ws.timestamp(v)
	if o.ws.idle > 0 {
		o.lastRecord = time.Now()
	}
	o.state.idle = false // a record makes the output active again
	o.gen.OnEvent(v, ts, &o.wout)
	o.out.Collect(v, ts)
}

// periodic asks the generator for a watermark, and marks the output idle
// once no record came for the idle timeout.
func (o *watermarkOp[T]) periodic() {
	if o.ws.idle > 0 && !o.state.idle && time.Since(o.lastRecord) >= o.ws.idle {
		o.state.markIdle()
		return
	}
	if !o.state.idle {
		o.gen.OnPeriodicEmit(&o.wout)
	}
}

func (o *watermarkOp[T]) Watermark(wm int64) {
	if wm == task.MaxWatermark {
		o.state.emit(wm)
	}
}

func (o *watermarkOp[T]) Finish() error { return nil }

func (o *watermarkOp[T]) Close() error {
	if o.stop != nil {
		o.stop()
	}
	return nil
}
