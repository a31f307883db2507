package stream

import (
	"fmt"

	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
	"github.com/loom-project/loom/flinkrt/task"
)

// ---------------------------------------------------------------- sources

// FromSource adds a source named name. A source that cannot split (a
// socket) runs with parallelism 1.
func FromSource[T any](env *Env, name string, src source.Source[T]) DataStream[T] {
	needCodec[T](env)
	n := env.sg.AddNode(&graph.Node{
		Name:        "Source: " + name,
		Description: "Source: " + src.Describe(),
		Chaining:    graph.ChainHead,
		Out:         task.Type[T]{},
		Factory: task.FactoryFunc(func(out any) task.Instance {
			return task.Instance{Source: &sourceOp[T]{src: src, out: out.(task.Output[T])}}
		}),
	})
	if src.MaxParallelism() == 1 {
		n.Parallelism = 1
		n.MaxParallelism = 1
	}
	_, n.SplitState = src.(source.Splittable)
	return DataStream[T]{env: env, node: n, from: []int{n.ID}}
}

type sourceOp[T any] struct {
	src      source.Source[T]
	out      task.Output[T]
	restored []byte
	position func() []byte
}

// SnapshotState implements task.Snapshotter: a resumable source's
// position; nothing for one that starts over.
func (o *sourceOp[T]) SnapshotState(int64) ([]byte, error) {
	if o.position == nil {
		return nil, nil
	}
	return o.position(), nil
}

// RestoreState implements task.Snapshotter.
func (o *sourceOp[T]) RestoreState(b []byte) error {
	o.restored = b
	return nil
}

// RestoreSplits implements task.SplitRestorer for a source that can split.
func (o *sourceOp[T]) RestoreSplits(states [][]byte, subtask, parallelism int) error {
	s, ok := o.src.(source.Splittable)
	if !ok {
		return fmt.Errorf("source %s cannot change parallelism", o.src.Describe())
	}
	b, err := s.Split(states, subtask, parallelism)
	o.restored = b
	return err
}

func (o *sourceOp[T]) Run(ctx *task.OperatorContext) error {
	if max := o.src.MaxParallelism(); max > 0 && ctx.Parallelism > max {
		return fmt.Errorf("source %q runs at most %d subtasks, not %d; lower its parallelism", ctx.Name, max, ctx.Parallelism)
	}
	if err := o.src.Run(&sourceContext[T]{OperatorContext: ctx, out: o.out, op: o}); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return task.ErrCanceled
	}
	// A finished source ends event time, as Flink's sources do.
	o.out.Watermark(task.MaxWatermark)
	return nil
}

type sourceContext[T any] struct {
	*task.OperatorContext
	out task.Output[T]
	op  *sourceOp[T]
}

func (c *sourceContext[T]) Restored() []byte                    { return c.op.restored }
func (c *sourceContext[T]) Checkpointed(position func() []byte) { c.op.position = position }

func (c *sourceContext[T]) Collect(v T)                        { c.out.Collect(v, task.NoTime) }
func (c *sourceContext[T]) CollectWithTimestamp(v T, ts int64) { c.out.Collect(v, ts) }
func (c *sourceContext[T]) EmitWatermark(wm int64)             { c.out.Watermark(wm) }
func (c *sourceContext[T]) MarkIdle()                          { task.MarkIdle(c.out) }
func (c *sourceContext[T]) Subtask() int                       { return c.Context.Subtask }
func (c *sourceContext[T]) Parallelism() int                   { return c.Context.Parallelism }
func (c *sourceContext[T]) Done() <-chan struct{}              { return c.Context.Done() }
func (c *sourceContext[T]) Idle() <-chan struct{}              { return c.Mailbox.Notify() }
func (c *sourceContext[T]) Yield()                             { c.Mailbox.Run() }

// ------------------------------------------------------------------ sinks

// Sink writes the stream to snk.
func Sink[T any](s DataStream[T], name string, snk sink.Sink[T]) DataStream[T] {
	n := s.env.sg.AddNode(&graph.Node{
		Name:        "Sink: " + name,
		Description: "Sink: " + snk.Describe(),
		In:          task.Type[T]{},
		Factory: task.FactoryFunc(func(any) task.Instance {
			op := &sinkOp[T]{sink: snk}
			return task.Instance{Input: task.Output[T](op), Lifecycle: op}
		}),
	})
	for _, from := range s.from {
		s.env.sg.Connect(from, n.ID, s.part)
	}
	if c, ok := snk.(sink.OutputChecker); ok {
		s.env.outputs = append(s.env.outputs, c)
	}
	_, n.SplitState = snk.(sink.Splittable)
	return DataStream[T]{env: s.env, node: n, from: nil}
}

// Print writes the stream to stdout, as Flink's print().
func Print[T any](s DataStream[T]) DataStream[T] {
	return Sink(s, "Print to Std. Out", sink.Print[T]())
}

type sinkOp[T any] struct {
	sink     sink.Sink[T]
	w        sink.Writer[T]
	ctx      *task.OperatorContext
	restored []byte
}

func (o *sinkOp[T]) Subtask() int        { return o.ctx.Subtask }
func (o *sinkOp[T]) Parallelism() int    { return o.ctx.Parallelism }
func (o *sinkOp[T]) InProcess() bool     { return o.ctx.InProcess }
func (o *sinkOp[T]) Checkpointing() bool { return o.ctx.Checkpointing }
func (o *sinkOp[T]) Restored() []byte    { return o.restored }

// SnapshotState implements task.Snapshotter: a transactional writer
// pre-commits; any other has no state.
func (o *sinkOp[T]) SnapshotState(id int64) ([]byte, error) {
	if tw, ok := o.w.(sink.Transactional); ok {
		return tw.PreCommit(id)
	}
	return nil, nil
}

// RestoreState implements task.Snapshotter.
func (o *sinkOp[T]) RestoreState(b []byte) error {
	o.restored = b
	return nil
}

// RestoreSplits implements task.SplitRestorer for a sink that can split.
func (o *sinkOp[T]) RestoreSplits(states [][]byte, subtask, parallelism int) error {
	s, ok := o.sink.(sink.Splittable)
	if !ok {
		return fmt.Errorf("sink %s cannot change parallelism", o.sink.Describe())
	}
	b, err := s.Split(states, subtask, parallelism)
	o.restored = b
	return err
}

// NotifyCheckpointComplete implements task.CheckpointListener.
func (o *sinkOp[T]) NotifyCheckpointComplete(id int64) error {
	if tw, ok := o.w.(sink.Transactional); ok {
		return tw.Commit(id)
	}
	return nil
}

func (o *sinkOp[T]) Open(ctx *task.OperatorContext) error {
	o.ctx = ctx
	w, err := o.sink.Open(o)
	if err != nil {
		return err
	}
	o.w = w
	return nil
}

func (o *sinkOp[T]) Collect(v T, _ int64) {
	if err := o.w.Write(v); err != nil {
		task.Fail(fmt.Errorf("sink %s: %w", o.ctx.Name, err))
	}
}

func (o *sinkOp[T]) Watermark(int64) {}

// Flush is called on the task's buffer timeout.
func (o *sinkOp[T]) Flush() {
	if err := o.w.Flush(); err != nil {
		task.Fail(fmt.Errorf("sink %s: %w", o.ctx.Name, err))
	}
}

func (o *sinkOp[T]) Finish() error {
	if err := o.w.Flush(); err != nil {
		return err
	}
	if e, ok := o.w.(interface{ EndInput() error }); ok {
		return e.EndInput()
	}
	return nil
}

func (o *sinkOp[T]) Close() error {
	if o.w == nil {
		return nil
	}
	return o.w.Close()
}

// ------------------------------------------------------------- transforms

// Map applies fn to every record.
func Map[I, O any](s DataStream[I], name string, fn func(I) O) DataStream[O] {
	needCodec[O](s.env)
	return add[I, O](s, name, "Map", func(out any) task.Instance {
		return task.Instance{Input: task.Output[I](&mapOp[I, O]{fn: fn, out: out.(task.Output[O])})}
	})
}

type mapOp[I, O any] struct {
	fn  func(I) O
	out task.Output[O]
}

func (o *mapOp[I, O]) Collect(v I, ts int64) { o.out.Collect(o.fn(v), ts) }
func (o *mapOp[I, O]) Watermark(wm int64)    { o.out.Watermark(wm) }
func (o *mapOp[I, O]) Idle()                 { task.MarkIdle(o.out) }

// Filter keeps the records for which keep is true.
func (s DataStream[T]) Filter(name string, keep func(T) bool) DataStream[T] {
	return add[T, T](s, name, "Filter", func(out any) task.Instance {
		return task.Instance{Input: task.Output[T](&filterOp[T]{keep: keep, out: out.(task.Output[T])})}
	})
}

type filterOp[T any] struct {
	keep func(T) bool
	out  task.Output[T]
}

func (o *filterOp[T]) Collect(v T, ts int64) {
	if o.keep(v) {
		o.out.Collect(v, ts)
	}
}
func (o *filterOp[T]) Watermark(wm int64) { o.out.Watermark(wm) }
func (o *filterOp[T]) Idle()              { task.MarkIdle(o.out) }

// FlatMap calls fn for every record; fn emits any number of records.
func FlatMap[I, O any](s DataStream[I], name string, fn func(I, Collector[O])) DataStream[O] {
	needCodec[O](s.env)
	return add[I, O](s, name, "FlatMap", func(out any) task.Instance {
		op := &flatMapOp[I, O]{fn: fn, out: out.(task.Output[O])}
		op.col = flatMapCollector[I, O]{op}
		return task.Instance{Input: task.Output[I](op)}
	})
}

type flatMapOp[I, O any] struct {
	fn  func(I, Collector[O])
	out task.Output[O]
	col Collector[O]
	ts  int64
}

func (o *flatMapOp[I, O]) Collect(v I, ts int64) {
	o.ts = ts
	o.fn(v, o.col)
}

// emit passes a record of fn's on with the input record's time.
func (o *flatMapOp[I, O]) emit(v O) { o.out.Collect(v, o.ts) }

func (o *flatMapOp[I, O]) Watermark(wm int64) { o.out.Watermark(wm) }
func (o *flatMapOp[I, O]) Idle()              { task.MarkIdle(o.out) }

// flatMapCollector is the Collector[O] fn writes to; made once per
// operator, so emitting allocates nothing.
type flatMapCollector[I, O any] struct{ *flatMapOp[I, O] }

func (c flatMapCollector[I, O]) Collect(v O) { c.emit(v) }
