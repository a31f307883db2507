package stream

import (
	"math"
	"time"

	"loom/flinkrt/task"
)

// WatermarkStrategy says where a record's event time comes from and how
// far behind the largest time seen the watermark trails.
type WatermarkStrategy[T any] struct {
	timestamp  func(v T) int64
	outOfOrder time.Duration
}

// ForBoundedOutOfOrderness trails the largest event time seen by maxDelay:
// records may arrive up to maxDelay late and still count (Flink's
// BoundedOutOfOrdernessWatermarks). timestamp gives a record's time in ms.
func ForBoundedOutOfOrderness[T any](maxDelay time.Duration, timestamp func(v T) int64) WatermarkStrategy[T] {
	return WatermarkStrategy[T]{timestamp: timestamp, outOfOrder: maxDelay}
}

// ForMonotonousTimestamps is for records whose times never decrease.
func ForMonotonousTimestamps[T any](timestamp func(v T) int64) WatermarkStrategy[T] {
	return ForBoundedOutOfOrderness(0, timestamp)
}

// AssignTimestampsAndWatermarks sets each record's event time and emits
// watermarks every auto-watermark interval (Env.SetAutoWatermarkInterval).
// Watermarks from upstream are dropped, except the end of input.
func AssignTimestampsAndWatermarks[T any](s DataStream[T], ws WatermarkStrategy[T]) DataStream[T] {
	every := s.env.watermarkTick
	return add[T, T](s, "Timestamps/Watermarks", "Timestamps/Watermarks", func(out any) task.Instance {
		op := &watermarkOp[T]{ws: ws, every: every, out: out.(task.Output[T]), maxTs: math.MinInt64, emitted: math.MinInt64}
		return task.Instance{Input: task.Output[T](op), Lifecycle: op}
	})
}

type watermarkOp[T any] struct {
	ws      WatermarkStrategy[T]
	every   time.Duration
	out     task.Output[T]
	maxTs   int64
	emitted int64
	stop    func()
}

func (o *watermarkOp[T]) Open(ctx *task.OperatorContext) error {
	o.stop = ctx.Every(o.every, o.emit)
	return nil
}

func (o *watermarkOp[T]) Collect(v T, _ int64) {
	ts := o.ws.timestamp(v)
	o.maxTs = max(o.maxTs, ts)
	o.out.Collect(v, ts)
}

// emit passes the watermark the strategy allows, if it moved.
func (o *watermarkOp[T]) emit() {
	if o.maxTs == math.MinInt64 {
		return
	}
	wm := o.maxTs - o.ws.outOfOrder.Milliseconds() - 1
	if wm > o.emitted {
		o.emitted = wm
		o.out.Watermark(wm)
	}
}

func (o *watermarkOp[T]) Watermark(wm int64) {
	if wm == task.MaxWatermark && o.emitted < wm {
		o.emitted = wm
		o.out.Watermark(wm)
	}
}

func (o *watermarkOp[T]) Finish() error { return nil }

func (o *watermarkOp[T]) Close() error {
	if o.stop != nil {
		o.stop()
	}
	return nil
}
