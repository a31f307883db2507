package stream

import (
	"fmt"
	"math"
	"time"

	"github.com/loom-project/loom/flinkrt/codec"
	"github.com/loom-project/loom/flinkrt/state"
	"github.com/loom-project/loom/flinkrt/task"
)

// KeyedProcessFunction handles each record of a keyed stream with access
// to the key's state and to timers. Process makes one per subtask with the
// function it is given, so fields of the value (state handles declared in
// Open) belong to that subtask alone.
type KeyedProcessFunction[K comparable, I, O any] interface {
	ProcessElement(ctx *KeyedContext[K], v I, out Collector[O]) error
}

// Opener is implemented by a function that declares state or prepares
// itself before the first record.
type Opener[K comparable] interface {
	Open(ctx *KeyedContext[K]) error
}

// TimerHandler is implemented by a function that registers timers: OnTimer
// runs when one fires, with the context scoped to the timer's key.
type TimerHandler[K comparable, O any] interface {
	OnTimer(ctx *KeyedContext[K], ts int64, out Collector[O]) error
}

// TimeDomain says which clock a timer followed.
type TimeDomain int

// The time domains.
const (
	EventTime TimeDomain = iota
	ProcessingTime
)

// KeyedContext is what a process function sees: the current key and
// record time, the key's state, and its timers.
type KeyedContext[K comparable] struct {
	op        *task.OperatorContext
	backend   *state.Backend[K]
	timers    *timerService[K, struct{}]
	timestamp int64
	domain    TimeDomain
	side      *sideOutputs
	// outT is the time the records emitted now carry.
	outT *int64
}

func (c *KeyedContext[K]) sideOutputs() *sideOutputs { return c.side }

// setOutputTime sets the time of the records emitted next, until the
// next record or timer.
func (c *KeyedContext[K]) setOutputTime(ts int64) { *c.outT = ts }

// CurrentKey is the key of the record (or timer) being handled.
func (c *KeyedContext[K]) CurrentKey() K { return c.backend.CurrentKey() }

// Timestamp is the record's event time (task.NoTime if it has none), or
// the timer's time in OnTimer.
func (c *KeyedContext[K]) Timestamp() int64 { return c.timestamp }

// TimeDomain is the clock of the timer being handled in OnTimer.
func (c *KeyedContext[K]) TimeDomain() TimeDomain { return c.domain }

// CurrentWatermark is the operator's event-time watermark.
func (c *KeyedContext[K]) CurrentWatermark() int64 { return c.timers.watermark }

// CurrentProcessingTime is the wall clock in epoch milliseconds.
func (c *KeyedContext[K]) CurrentProcessingTime() int64 { return c.timers.currentTime() }

// Subtask is the index of the subtask running the function.
func (c *KeyedContext[K]) Subtask() int { return c.op.Subtask }

// Runtime is the subtask's RuntimeContext.
func (c *KeyedContext[K]) Runtime() *RuntimeContext { return &RuntimeContext{op: c.op, keyed: c} }

// RegisterEventTimeTimer calls OnTimer for the current key once the
// watermark reaches ts.
func (c *KeyedContext[K]) RegisterEventTimeTimer(ts int64) {
	c.timers.registerEvent(ts, c.CurrentKey(), struct{}{})
}

// DeleteEventTimeTimer removes a timer registered for the current key.
func (c *KeyedContext[K]) DeleteEventTimeTimer(ts int64) {
	c.timers.deleteEvent(ts, c.CurrentKey(), struct{}{})
}

// RegisterProcessingTimeTimer calls OnTimer for the current key once the
// wall clock reaches ts (epoch ms).
func (c *KeyedContext[K]) RegisterProcessingTimeTimer(ts int64) {
	c.timers.registerProc(ts, c.CurrentKey(), struct{}{})
}

// DeleteProcessingTimeTimer removes a timer registered for the current key.
func (c *KeyedContext[K]) DeleteProcessingTimeTimer(ts int64) {
	c.timers.deleteProc(ts, c.CurrentKey(), struct{}{})
}

// StateOption configures a state when it is declared.
type StateOption func(*stateOptions)

type stateOptions struct{ ttl state.TTL }

// StateTTL makes a state's entries expire d after their key last wrote
// them, in processing time (Flink's StateTtlConfig with OnCreateAndWrite
// and NeverReturnExpired): expired entries read as absent and are
// cleaned up as they are met, and never reach a checkpoint. A map
// state's entries expire with their key's last write.
func StateTTL(d time.Duration) StateOption {
	return func(o *stateOptions) { o.ttl = state.TTL(d) }
}

func optionsOf(opts []StateOption) stateOptions {
	var o stateOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// ValueState declares (in Open) or finds the value state called name.
func ValueState[V any, K comparable](ctx *KeyedContext[K], name string, opts ...StateOption) *state.Value[K, V] {
	return state.NewValueTTL[K, V](ctx.backend, name, optionsOf(opts).ttl)
}

// ListState declares (in Open) or finds the list state called name.
func ListState[V any, K comparable](ctx *KeyedContext[K], name string, opts ...StateOption) *state.List[K, V] {
	return state.NewListTTL[K, V](ctx.backend, name, optionsOf(opts).ttl)
}

// MapState declares (in Open) or finds the map state called name.
func MapState[UK comparable, V any, K comparable](ctx *KeyedContext[K], name string, opts ...StateOption) *state.Map[K, UK, V] {
	return state.NewMapTTL[K, UK, V](ctx.backend, name, optionsOf(opts).ttl)
}

// ReducingState declares (in Open) or finds the reducing state called
// name: one value per key, the reduce with fn of every value added.
func ReducingState[V any, K comparable](ctx *KeyedContext[K], name string, fn func(a, b V) V, opts ...StateOption) *state.Reducing[K, V] {
	return state.NewReducing[K, V](ctx.backend, name, fn, optionsOf(opts).ttl)
}

// AggregatingState declares (in Open) or finds the aggregating state
// called name: agg's accumulator per key, read as agg's result.
func AggregatingState[I, A, O any, K comparable](ctx *KeyedContext[K], name string, agg AggregateFunction[I, A, O], opts ...StateOption) *state.Aggregating[K, I, A, O] {
	return state.NewAggregating[K, I, A, O](ctx.backend, name, agg.Create, agg.Add, agg.Result, optionsOf(opts).ttl)
}

// Process runs a KeyedProcessFunction made by newFn for each subtask. A
// function with a Close() error method has it called when the subtask
// ends.
func Process[K comparable, I, O any](k KeyedStream[K, I], name string, newFn func() KeyedProcessFunction[K, I, O]) DataStream[O] {
	return process(k, name, "KeyedProcess", newFn)
}

func process[K comparable, I, O any](k KeyedStream[K, I], name, description string, newFn func() KeyedProcessFunction[K, I, O]) DataStream[O] {
	needCodec[O](k.s.env)
	return keyedState(add[I, O](k.s, name, description, func(out any) task.Instance {
		op := &processOp[K, I, O]{key: k.key, fn: newFn(), out: out.(task.Output[O])}
		op.col = processCollector[K, I, O]{op}
		return task.Instance{Input: task.Output[I](op), Lifecycle: op}
	}))
}

type processOp[K comparable, I, O any] struct {
	key  func(I) K
	fn   KeyedProcessFunction[K, I, O]
	out  task.Output[O]
	col  Collector[O]
	ctx  KeyedContext[K]
	outT int64
	// restored is state from a checkpoint, applied by Open; with
	// restoredBackends, from several subtasks' (a rescale), whose keyed
	// state is kept for the keys owns says.
	restored         []byte
	restoredBackends [][]byte
	owns             func(K) bool
}

type processCollector[K comparable, I, O any] struct{ op *processOp[K, I, O] }

func (c processCollector[K, I, O]) Collect(v O) { c.op.out.Collect(v, c.op.outT) }

func (o *processOp[K, I, O]) Open(ctx *task.OperatorContext) error {
	o.ctx = KeyedContext[K]{op: ctx, backend: state.NewBackend[K](), side: newSideOutputs(ctx), outT: &o.outT}
	o.ctx.timers = newTimerService(
		func(t timer[K, struct{}]) { o.onTimer(t, EventTime) },
		func(t timer[K, struct{}]) { o.onTimer(t, ProcessingTime) },
	)
	o.ctx.timers.open(ctx)
	o.ctx.backend.SetClock(o.ctx.timers.currentTime)
	if o.restored != nil {
		if err := o.applyRestored(); err != nil {
			return fmt.Errorf("restoring %s: %w", ctx.Name, err)
		}
	}
	if op, ok := o.fn.(Opener[K]); ok {
		return op.Open(&o.ctx)
	}
	return nil
}

// processSnapshot is a process operator's state in a checkpoint: its
// keyed state and its timers.
type processSnapshot[K comparable] struct {
	Backend   []byte
	Event     []timerEntry[K]
	Proc      []timerEntry[K]
	Watermark int64
}

// SnapshotState implements task.Snapshotter.
func (o *processOp[K, I, O]) SnapshotState(int64) ([]byte, error) {
	b, err := o.ctx.backend.Snapshot()
	if err != nil {
		return nil, err
	}
	s := processSnapshot[K]{Backend: b, Watermark: o.ctx.timers.watermark}
	for t := range o.ctx.timers.event.set {
		s.Event = append(s.Event, timerEntry[K]{Ts: t.ts, Key: t.key})
	}
	for t := range o.ctx.timers.proc.set {
		s.Proc = append(s.Proc, timerEntry[K]{Ts: t.ts, Key: t.key})
	}
	c, err := codec.For[processSnapshot[K]]()
	if err != nil {
		return nil, err
	}
	return c.Append(nil, s), nil
}

// RestoreState implements task.Snapshotter; Open applies the state.
func (o *processOp[K, I, O]) RestoreState(b []byte) error {
	o.restored = b
	return nil
}

// RestoreKeyed implements task.KeyedRestorer: the state and timers of the
// keys this subtask owns, from every subtask's checkpoint, merged into one
// snapshot that Open applies. The watermark is the least of theirs.
func (o *processOp[K, I, O]) RestoreKeyed(states [][]byte, g task.KeyGroups) error {
	owns, err := ownedKeys[K](g)
	if err != nil {
		return err
	}
	c, err := codec.For[processSnapshot[K]]()
	if err != nil {
		return err
	}
	merged := processSnapshot[K]{Watermark: math.MaxInt64}
	var backends [][]byte
	for _, b := range states {
		s, _, err := c.Decode(b)
		if err != nil {
			return err
		}
		backends = append(backends, s.Backend)
		merged.Watermark = min(merged.Watermark, s.Watermark)
		merged.Event = appendOwned(merged.Event, s.Event, owns)
		merged.Proc = appendOwned(merged.Proc, s.Proc, owns)
	}
	if len(states) == 0 {
		merged.Watermark = math.MinInt64
	}
	o.restored = c.Append(nil, merged)
	o.restoredBackends, o.owns = backends, owns
	return nil
}

func (o *processOp[K, I, O]) applyRestored() error {
	c, err := codec.For[processSnapshot[K]]()
	if err != nil {
		return err
	}
	s, _, err := c.Decode(o.restored)
	if err != nil {
		return err
	}
	o.restored = nil
	if o.restoredBackends != nil {
		err = o.ctx.backend.RestoreKeyed(o.restoredBackends, o.owns)
		o.restoredBackends, o.owns = nil, nil
	} else {
		err = o.ctx.backend.Restore(s.Backend)
	}
	if err != nil {
		return err
	}
	o.ctx.timers.watermark = s.Watermark
	for _, t := range s.Event {
		o.ctx.timers.registerEvent(t.Ts, t.Key, struct{}{})
	}
	for _, t := range s.Proc {
		o.ctx.timers.registerProc(t.Ts, t.Key, struct{}{})
	}
	return nil
}

func (o *processOp[K, I, O]) Collect(v I, ts int64) {
	o.ctx.backend.SetCurrentKey(o.key(v))
	o.ctx.timestamp, o.outT, o.ctx.side.ts = ts, ts, ts
	if err := o.fn.ProcessElement(&o.ctx, v, o.col); err != nil {
		task.Fail(fmt.Errorf("%s: %w", o.ctx.op.Name, err))
	}
}

func (o *processOp[K, I, O]) onTimer(t timer[K, struct{}], domain TimeDomain) {
	h, ok := o.fn.(TimerHandler[K, O])
	if !ok {
		return
	}
	o.ctx.backend.SetCurrentKey(t.key)
	o.ctx.timestamp, o.ctx.domain = t.ts, domain
	o.outT = task.NoTime
	if domain == EventTime {
		o.outT = t.ts
	}
	o.ctx.side.ts = o.outT
	if err := h.OnTimer(&o.ctx, t.ts, o.col); err != nil {
		task.Fail(fmt.Errorf("%s: timer: %w", o.ctx.op.Name, err))
	}
}

func (o *processOp[K, I, O]) Watermark(wm int64) {
	o.ctx.timers.advance(wm)
	o.out.Watermark(wm)
	o.ctx.side.watermark(wm)
}

// Idle passes on that the operator's input is idle.
func (o *processOp[K, I, O]) Idle() {
	task.MarkIdle(o.out)
	o.ctx.side.idle()
}

func (o *processOp[K, I, O]) Finish() error { return nil }

func (o *processOp[K, I, O]) Close() error {
	if c, ok := o.fn.(closer); ok {
		return c.Close()
	}
	return nil
}

// ProcessFunction handles each record of a stream that is not keyed, as
// Flink's ProcessFunction on a DataStream: no keyed state and no timers
// (those need a key), but the record's time, the watermark and side
// outputs. It may have Open(*RuntimeContext) and Close() methods.
type ProcessFunction[I, O any] interface {
	ProcessElement(ctx *ProcessContext, v I, out Collector[O]) error
}

// ProcessContext is what a ProcessFunction sees.
type ProcessContext struct {
	op        *task.OperatorContext
	timestamp int64
	watermark int64
	side      *sideOutputs
}

// Timestamp is the record's event time (task.NoTime if it has none).
func (c *ProcessContext) Timestamp() int64 { return c.timestamp }

// CurrentWatermark is the operator's event-time watermark.
func (c *ProcessContext) CurrentWatermark() int64 { return c.watermark }

// CurrentProcessingTime is the wall clock in epoch milliseconds.
func (c *ProcessContext) CurrentProcessingTime() int64 { return time.Now().UnixMilli() }

// Runtime is the subtask's RuntimeContext.
func (c *ProcessContext) Runtime() *RuntimeContext { return &RuntimeContext{op: c.op} }

func (c *ProcessContext) sideOutputs() *sideOutputs { return c.side }

// ProcessStream runs a ProcessFunction made by newFn for each subtask
// over every record of s.
func ProcessStream[I, O any](s DataStream[I], name string, newFn func() ProcessFunction[I, O]) DataStream[O] {
	needCodec[O](s.env)
	return add[I, O](s, name, "Process", func(out any) task.Instance {
		fn := newFn()
		op := &streamProcessOp[I, O]{fn: fn, out: out.(task.Output[O]), life: richLifecycle{fn, name}}
		op.col = streamProcessCollector[I, O]{op}
		return task.Instance{Input: task.Output[I](op), Lifecycle: op}
	})
}

type streamProcessOp[I, O any] struct {
	fn   ProcessFunction[I, O]
	out  task.Output[O]
	col  Collector[O]
	ctx  ProcessContext
	life richLifecycle
}

type streamProcessCollector[I, O any] struct{ op *streamProcessOp[I, O] }

func (c streamProcessCollector[I, O]) Collect(v O) { c.op.out.Collect(v, c.op.ctx.timestamp) }

func (o *streamProcessOp[I, O]) Open(ctx *task.OperatorContext) error {
	o.ctx = ProcessContext{op: ctx, timestamp: task.NoTime, watermark: math.MinInt64, side: newSideOutputs(ctx)}
	return o.life.Open(ctx)
}

func (o *streamProcessOp[I, O]) Collect(v I, ts int64) {
	o.ctx.timestamp, o.ctx.side.ts = ts, ts
	if err := o.fn.ProcessElement(&o.ctx, v, o.col); err != nil {
		task.Fail(fmt.Errorf("%s: %w", o.ctx.op.Name, err))
	}
}

func (o *streamProcessOp[I, O]) Watermark(wm int64) {
	o.ctx.watermark = wm
	o.out.Watermark(wm)
	o.ctx.side.watermark(wm)
}

// Idle passes on that the operator's input is idle.
func (o *streamProcessOp[I, O]) Idle() {
	task.MarkIdle(o.out)
	o.ctx.side.idle()
}

// SnapshotState, RestoreState and NotifyCheckpointComplete pass a
// CheckpointedFunction's state through checkpoints.
func (o *streamProcessOp[I, O]) SnapshotState(id int64) ([]byte, error) {
	return o.life.SnapshotState(id)
}
func (o *streamProcessOp[I, O]) RestoreState(b []byte) error { return o.life.RestoreState(b) }
func (o *streamProcessOp[I, O]) NotifyCheckpointComplete(id int64) error {
	return o.life.NotifyCheckpointComplete(id)
}

func (o *streamProcessOp[I, O]) Finish() error { return nil }
func (o *streamProcessOp[I, O]) Close() error  { return o.life.Close() }
