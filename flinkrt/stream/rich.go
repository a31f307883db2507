package stream

import (
	"fmt"
	"sync/atomic"

	"loom/flinkrt/task"
)

// Functions of one subtask each. Map, FlatMap and Filter take a plain
// func, which every subtask of the operator that runs in one process
// calls (concurrently): it must keep nothing between calls, or guard
// what it keeps. MapWith, FlatMapWith and FilterWith take a factory
// instead, called once per parallel instance as Flink copies a function
// per subtask, so a function's fields (a counter, a buffer, a
// connection) belong to one subtask alone. Such a function may also
// have Flink's rich-function methods:
//
//	Open(ctx *stream.RuntimeContext) error // before the first record
//	Close() error                          // after the last, or on failure

// RuntimeContext is what a function learns of the subtask that runs it,
// as Flink's RuntimeContext.
type RuntimeContext struct{ op *task.OperatorContext }

// JobName is the name the job was executed with.
func (c *RuntimeContext) JobName() string { return c.op.JobName }

// OperatorName is the name the operator was given.
func (c *RuntimeContext) OperatorName() string { return c.op.Name }

// TaskName is the name of the chained task the operator runs in.
func (c *RuntimeContext) TaskName() string { return c.op.TaskName }

// TaskNameWithSubtask is the task's name with the subtask, as Flink
// prints it: "Map -> Sink (2/4)#0".
func (c *RuntimeContext) TaskNameWithSubtask() string {
	return fmt.Sprintf("%s (%d/%d)#%d", c.op.TaskName, c.op.Subtask+1, c.op.Parallelism, c.op.Attempt)
}

// Subtask is the index of this parallel instance, from 0.
func (c *RuntimeContext) Subtask() int { return c.op.Subtask }

// Parallelism is the number of parallel instances of the operator.
func (c *RuntimeContext) Parallelism() int { return c.op.Parallelism }

// MaxParallelism is the most instances the operator may be rescaled to.
func (c *RuntimeContext) MaxParallelism() int { return c.op.MaxParallelism }

// Attempt is the subtask's execution attempt: 0, then one more for each
// restart of it.
func (c *RuntimeContext) Attempt() int { return c.op.Attempt }

// Counter is a user accumulator of a subtask (Flink's LongCounter): the
// job's value is the sum over its subtasks, shown by the REST API and, for
// a job run in-process, in its JobResult.
type Counter struct{ c *atomic.Int64 }

// Add adds n.
func (c Counter) Add(n int64) { c.c.Add(n) }

// Counter returns the subtask's accumulator called name, made on first
// use (in Open, say); a subtask has at most task.MaxAccumulators.
func (c *RuntimeContext) Counter(name string) (Counter, error) {
	a, err := c.op.Accumulators.Counter(name)
	if err != nil {
		return Counter{}, err
	}
	return Counter{a}, nil
}

// MapFunction maps one record to one.
type MapFunction[I, O any] interface {
	Map(v I) (O, error)
}

// FlatMapFunction emits any number of records for each one.
type FlatMapFunction[I, O any] interface {
	FlatMap(v I, out Collector[O]) error
}

// FilterFunction says whether to keep a record.
type FilterFunction[T any] interface {
	Filter(v T) (bool, error)
}

type opener interface {
	Open(ctx *RuntimeContext) error
}

type closer interface {
	Close() error
}

// richLifecycle opens and closes a subtask's own function.
type richLifecycle struct {
	fn   any
	name string
}

func (l richLifecycle) Open(ctx *task.OperatorContext) error {
	if l.fn == nil {
		return fmt.Errorf("%s: its function factory returned nil", l.name)
	}
	if o, ok := l.fn.(opener); ok {
		if err := o.Open(&RuntimeContext{op: ctx}); err != nil {
			return fmt.Errorf("%s: opening its function: %w", l.name, err)
		}
	}
	return nil
}

func (l richLifecycle) Finish() error { return nil }

// CheckpointedFunction is a function with state of its own (Flink's
// CheckpointedFunction with operator state): SnapshotState runs at every
// checkpoint, between two records in the subtask's goroutine, and
// RestoreState before Open when the subtask starts from a checkpoint or
// savepoint. The state is the subtask's own, so the operator keeps its
// parallelism across a restore. It may also have
// NotifyCheckpointComplete(id int64) error, called once a checkpoint its
// state is in completed.
type CheckpointedFunction interface {
	SnapshotState(checkpointID int64) ([]byte, error)
	RestoreState(state []byte) error
}

// SnapshotState implements task.Snapshotter for a CheckpointedFunction;
// another function has no state.
func (l richLifecycle) SnapshotState(id int64) ([]byte, error) {
	if c, ok := l.fn.(CheckpointedFunction); ok {
		return c.SnapshotState(id)
	}
	return nil, nil
}

// RestoreState implements task.Snapshotter.
func (l richLifecycle) RestoreState(b []byte) error {
	c, ok := l.fn.(CheckpointedFunction)
	if !ok {
		return fmt.Errorf("%s: the checkpoint holds state for it, and its function keeps none (is it a CheckpointedFunction?)", l.name)
	}
	return c.RestoreState(b)
}

// NotifyCheckpointComplete implements task.CheckpointListener.
func (l richLifecycle) NotifyCheckpointComplete(id int64) error {
	if c, ok := l.fn.(interface{ NotifyCheckpointComplete(int64) error }); ok {
		return c.NotifyCheckpointComplete(id)
	}
	return nil
}

func (l richLifecycle) Close() error {
	if c, ok := l.fn.(closer); ok {
		return c.Close()
	}
	return nil
}

// MapWith maps every record with a MapFunction made by newFn for each
// subtask.
func MapWith[I, O any](s DataStream[I], name string, newFn func() MapFunction[I, O]) DataStream[O] {
	needCodec[O](s.env)
	return add[I, O](s, name, "Map", func(out any) task.Instance {
		fn := newFn()
		return task.Instance{Input: task.Output[I](&richMapOp[I, O]{fn: fn, name: name, out: out.(task.Output[O])}), Lifecycle: richLifecycle{fn, name}}
	})
}

type richMapOp[I, O any] struct {
	fn   MapFunction[I, O]
	name string
	out  task.Output[O]
}

func (o *richMapOp[I, O]) Collect(v I, ts int64) {
	r, err := o.fn.Map(v)
	if err != nil {
		task.Fail(fmt.Errorf("%s: %w", o.name, err))
	}
	o.out.Collect(r, ts)
}

func (o *richMapOp[I, O]) Watermark(wm int64) { o.out.Watermark(wm) }
func (o *richMapOp[I, O]) Idle()              { task.MarkIdle(o.out) }

// FlatMapWith calls a FlatMapFunction made by newFn for each subtask for
// every record.
func FlatMapWith[I, O any](s DataStream[I], name string, newFn func() FlatMapFunction[I, O]) DataStream[O] {
	needCodec[O](s.env)
	return add[I, O](s, name, "FlatMap", func(out any) task.Instance {
		fn := newFn()
		op := &flatMapOp[I, O]{out: out.(task.Output[O])}
		op.col = flatMapCollector[I, O]{op}
		op.fn = func(v I, c Collector[O]) {
			if err := fn.FlatMap(v, c); err != nil {
				task.Fail(fmt.Errorf("%s: %w", name, err))
			}
		}
		return task.Instance{Input: task.Output[I](op), Lifecycle: richLifecycle{fn, name}}
	})
}

// FilterWith keeps the records a FilterFunction made by newFn for each
// subtask keeps.
func FilterWith[T any](s DataStream[T], name string, newFn func() FilterFunction[T]) DataStream[T] {
	return add[T, T](s, name, "Filter", func(out any) task.Instance {
		fn := newFn()
		keep := func(v T) bool {
			ok, err := fn.Filter(v)
			if err != nil {
				task.Fail(fmt.Errorf("%s: %w", name, err))
			}
			return ok
		}
		return task.Instance{Input: task.Output[T](&filterOp[T]{keep: keep, out: out.(task.Output[T])}), Lifecycle: richLifecycle{fn, name}}
	})
}
