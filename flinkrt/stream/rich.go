package stream

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/loom-project/loom/flinkrt/task"
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
type RuntimeContext struct {
	op *task.OperatorContext
	// keyed is the *KeyedContext[K] of a function on a keyed stream.
	keyed any
}

// KeyedRuntime is the keyed context of a function on a keyed stream
// (KeyedMapWith, KeyedFlatMapWith, KeyedFilterWith, or a process
// function): declare the key's state with it in Open (ValueState,
// ListState, MapState, ...), as Flink's RuntimeContext.getState; the
// state a handle reads and writes is that of the record being handled.
func KeyedRuntime[K comparable](ctx *RuntimeContext) (*KeyedContext[K], error) {
	switch k := ctx.keyed.(type) {
	case *KeyedContext[K]:
		return k, nil
	case nil:
		return nil, fmt.Errorf("%s: keyed state needs a keyed stream (KeyBy, then KeyedMapWith, KeyedFlatMapWith or KeyedFilterWith)", ctx.op.Name)
	default:
		var want K
		return nil, fmt.Errorf("%s: its stream is keyed by %s, not %T", ctx.op.Name, strings.Trim(strings.TrimPrefix(fmt.Sprintf("%T", k), "*stream.KeyedContext"), "[]"), want)
	}
}

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

// MetricGroup is a subtask's metrics in its operator's scope (Flink's
// OperatorMetricGroup): what a function registers here is reported with
// the subtask's counts, shown by Flink's dashboard (the vertex's metrics
// tab lists "<subtask>.<operator>.<name>") and exported to Prometheus as
// flink_taskmanager_job_task_operator_<name>. A subtask has at most
// task.MaxUserMetrics.
type MetricGroup struct {
	m     *task.UserMetrics
	scope string
}

// Metrics is the operator's metric group.
func (c *RuntimeContext) Metrics() MetricGroup {
	return MetricGroup{m: &c.op.Metrics, scope: task.MetricName(c.op.Name)}
}

// AddGroup is a group within g, whose metrics are named "name.<metric>".
func (g MetricGroup) AddGroup(name string) MetricGroup {
	return MetricGroup{m: g.m, scope: g.scope + "." + task.MetricName(name)}
}

func (g MetricGroup) name(n string) string { return g.scope + "." + task.MetricName(n) }

// MetricCounter counts events; its value is the count.
type MetricCounter struct{ c *atomic.Int64 }

// Inc adds one.
func (c MetricCounter) Inc() { c.c.Add(1) }

// Add adds n.
func (c MetricCounter) Add(n int64) { c.c.Add(n) }

// Count is the count so far.
func (c MetricCounter) Count() int64 { return c.c.Load() }

// Counter returns the counter called name, made on first use.
func (g MetricGroup) Counter(name string) (MetricCounter, error) {
	c, err := g.m.Counter(g.name(name))
	return MetricCounter{c}, err
}

// Gauge registers fn as the gauge called name. fn runs in another
// goroutine than the function's, each time the metrics are reported
// (every second): it must read what it reports safely, from an atomic
// say, and quickly.
func (g MetricGroup) Gauge(name string, fn func() float64) error {
	return g.m.Gauge(g.name(name), fn)
}

// Meter measures a rate of events: its value is the events per second
// over the last minute, as Flink's MeterView.
type Meter struct{ c *atomic.Int64 }

// MarkEvent counts one event.
func (m Meter) MarkEvent() { m.c.Add(1) }

// MarkEvents counts n events.
func (m Meter) MarkEvents(n int64) { m.c.Add(n) }

// Count is the events so far.
func (m Meter) Count() int64 { return m.c.Load() }

// Meter returns the meter called name, made on first use.
func (g MetricGroup) Meter(name string) (Meter, error) {
	c, err := g.m.Meter(g.name(name))
	return Meter{c}, err
}

// Histogram returns the histogram called name, which reports the
// statistics of the last window values it was given (min, max, mean,
// median, stddev and the 75th to 99.9th percentiles, under Flink's
// names: name_min, name_p99, ...), as Flink's
// DescriptiveStatisticsHistogram.
func (g MetricGroup) Histogram(name string, window int) (*Histogram, error) {
	return g.m.Histogram(g.name(name), window)
}

// Histogram is a metric group's histogram: Update adds a value.
type Histogram = task.Histogram

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
	return l.open(&RuntimeContext{op: ctx})
}

func (l richLifecycle) open(ctx *RuntimeContext) error {
	if l.fn == nil {
		return fmt.Errorf("%s: its function factory returned nil", l.name)
	}
	if o, ok := l.fn.(opener); ok {
		if err := o.Open(ctx); err != nil {
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

// KeyedMapWith maps every record of a keyed stream with a MapFunction made
// by newFn for each subtask; its Open may declare the key's state through
// KeyedRuntime, which is checkpointed and rescaled by key as a process
// function's.
func KeyedMapWith[K comparable, I, O any](k KeyedStream[K, I], name string, newFn func() MapFunction[I, O]) DataStream[O] {
	return process(k, name, "Map", func() KeyedProcessFunction[K, I, O] {
		fn := newFn()
		return &keyedRich[K, I, O]{fn: fn, name: name, process: func(v I, out Collector[O]) error {
			r, err := fn.Map(v)
			if err == nil {
				out.Collect(r)
			}
			return err
		}}
	})
}

// KeyedFlatMapWith calls a FlatMapFunction made by newFn for each subtask
// for every record of a keyed stream, with the key's state as
// KeyedMapWith.
func KeyedFlatMapWith[K comparable, I, O any](k KeyedStream[K, I], name string, newFn func() FlatMapFunction[I, O]) DataStream[O] {
	return process(k, name, "FlatMap", func() KeyedProcessFunction[K, I, O] {
		fn := newFn()
		return &keyedRich[K, I, O]{fn: fn, name: name, process: func(v I, out Collector[O]) error { return fn.FlatMap(v, out) }}
	})
}

// KeyedFilterWith keeps the records of a keyed stream a FilterFunction
// made by newFn for each subtask keeps, with the key's state as
// KeyedMapWith.
func KeyedFilterWith[K comparable, T any](k KeyedStream[K, T], name string, newFn func() FilterFunction[T]) DataStream[T] {
	return process(k, name, "Filter", func() KeyedProcessFunction[K, T, T] {
		fn := newFn()
		return &keyedRich[K, T, T]{fn: fn, name: name, process: func(v T, out Collector[T]) error {
			ok, err := fn.Filter(v)
			if ok && err == nil {
				out.Collect(v)
			}
			return err
		}}
	})
}

// keyedRich runs a rich function as a process function, whose context
// gives it the key's state.
type keyedRich[K comparable, I, O any] struct {
	fn      any
	name    string
	process func(v I, out Collector[O]) error
}

func (r *keyedRich[K, I, O]) Open(ctx *KeyedContext[K]) error {
	if _, ok := r.fn.(CheckpointedFunction); ok {
		return fmt.Errorf("%s: a function on a keyed stream keeps its state by key (KeyedRuntime), not as a CheckpointedFunction", r.name)
	}
	return richLifecycle{r.fn, r.name}.open(ctx.Runtime())
}

func (r *keyedRich[K, I, O]) ProcessElement(_ *KeyedContext[K], v I, out Collector[O]) error {
	return r.process(v, out)
}

func (r *keyedRich[K, I, O]) Close() error { return richLifecycle{r.fn, r.name}.Close() }
