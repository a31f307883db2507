package stream

import (
	"fmt"
	"math"
	"reflect"
	"time"

	"github.com/loom-project/loom/flinkrt/state"
	"github.com/loom-project/loom/flinkrt/task"
)

// WindowedStream is a keyed stream cut into windows.
type WindowedStream[K comparable, T any] struct {
	k        KeyedStream[K, T]
	assigner WindowAssigner
	trigger  Trigger[T]
	evictor  Evictor[T]
	lateness int64 // ms
	lateTag  OutputTag[T]
	// all is a WindowAll: one subtask takes every record.
	all bool
}

// Window cuts a keyed stream into windows made by assigner.
func Window[K comparable, T any](k KeyedStream[K, T], assigner WindowAssigner) WindowedStream[K, T] {
	if err := assigner.validate(); err != nil {
		k.s.env.fail(err)
	}
	w := WindowedStream[K, T]{k: k, assigner: assigner}
	switch {
	case assigner.kind == global:
		w.trigger = NeverTrigger[T]()
	case assigner.eventTime:
		w.trigger = EventTimeTrigger[T]()
	default:
		w.trigger = ProcessingTimeTrigger[T]()
	}
	return w
}

// WindowAll cuts a stream that is not keyed into windows, as Flink's
// windowAll: one subtask (parallelism 1) takes every record, so each
// window holds the records of the whole stream. Its functions see the
// key struct{}{}; ProcessAllWindow leaves it out.
func WindowAll[T any](s DataStream[T], assigner WindowAssigner) WindowedStream[struct{}, T] {
	w := Window(KeyBy(s, func(T) struct{} { return struct{}{} }), assigner)
	w.all = true
	return w
}

// ProcessAllWindow calls fn with a WindowAll's window and its records
// when it fires.
func ProcessAllWindow[T, O any](w WindowedStream[struct{}, T], name string, fn func(win TimeWindow, elems []T, out Collector[O])) DataStream[O] {
	return ProcessWindow(w, name, func(_ struct{}, win TimeWindow, elems []T, out Collector[O]) { fn(win, elems, out) })
}

// Trigger replaces the assigner's default trigger.
func (w WindowedStream[K, T]) Trigger(t Trigger[T]) WindowedStream[K, T] {
	w.trigger = t
	return w
}

// AllowedLateness keeps an event-time window's contents for d past its
// end, as Flink's allowedLateness: a record that arrives behind the
// watermark but within d is added and fires the window again (with the
// default trigger); later ones are dropped, or sent to the side output of
// SideOutputLateData. Processing-time windows are never late.
func (w WindowedStream[K, T]) AllowedLateness(d time.Duration) WindowedStream[K, T] {
	if d < 0 {
		w.k.s.env.fail(fmt.Errorf("allowed lateness %v: want 0 or more", d))
	}
	w.lateness = d.Milliseconds()
	return w
}

// SideOutputLateData sends the records dropped as late (behind the
// watermark by more than the allowed lateness) to tag, which SideOutput
// reads from the window's stream.
func (w WindowedStream[K, T]) SideOutputLateData(tag OutputTag[T]) WindowedStream[K, T] {
	tag.check(w.k.s.env)
	w.lateTag = tag
	return w
}

// Evictor removes records from a window before its function runs.
func (w WindowedStream[K, T]) Evictor(e Evictor[T]) WindowedStream[K, T] {
	w.evictor = e
	return w
}

// Reduce emits, when a window fires, its records combined with fn.
func (w WindowedStream[K, T]) Reduce(name string, fn func(a, b T) T) DataStream[T] {
	return reduceWindow(w, name, fn, func(_ K, _ TimeWindow, v T, out Collector[T]) { out.Collect(v) })
}

// ReduceWindow combines a window's records with reduce as they arrive,
// and when the window fires calls fn with the key, the window and the
// result, as Flink's reduce(ReduceFunction, ProcessWindowFunction): the
// window keeps one value, not its records.
func ReduceWindow[K comparable, T, O any](w WindowedStream[K, T], name string, reduce func(a, b T) T, fn func(key K, win TimeWindow, result T, out Collector[O])) DataStream[O] {
	return reduceWindow(w, name, reduce, fn)
}

func reduceWindow[K comparable, T, O any](w WindowedStream[K, T], name string, fn func(a, b T) T, emit func(K, TimeWindow, T, Collector[O])) DataStream[O] {
	if w.evictor != nil {
		return windowed(w, name, constLogic(listLogic[K, T, O](w.evictor, func(k K, win TimeWindow, elems []Timestamped[T], out Collector[O]) {
			if len(elems) == 0 {
				return
			}
			acc := elems[0].Value
			for _, el := range elems[1:] {
				acc = fn(acc, el.Value)
			}
			emit(k, win, acc, out)
		})))
	}
	type opt struct {
		v  T
		ok bool
	}
	return windowed(w, name, constLogic(windowLogic[K, T, opt, O]{
		add: func(acc opt, v T, _ int64) opt {
			if !acc.ok {
				return opt{v, true}
			}
			return opt{fn(acc.v, v), true}
		},
		merge: func(a, b opt) opt {
			switch {
			case !a.ok:
				return b
			case !b.ok:
				return a
			}
			return opt{fn(a.v, b.v), true}
		},
		fire: func(k K, win TimeWindow, acc opt, out Collector[O]) opt {
			if acc.ok {
				emit(k, win, acc.v, out)
			}
			return acc
		},
	}))
}

func (w WindowedStream[K, T]) aggregateBy(what, field string, fn func(fieldOf[T], T, T) T) DataStream[T] {
	f, err := newFieldOf[T](field)
	if err != nil {
		w.k.s.env.fail(fmt.Errorf("%s: %w", what, err))
	}
	return w.Reduce("Window("+what+")", func(a, b T) T { return fn(f, a, b) })
}

// Sum emits the window's sum of field in its first record.
func (w WindowedStream[K, T]) Sum(field string) DataStream[T] {
	return w.aggregateBy("Sum", field, func(f fieldOf[T], acc, v T) T { f.add(&acc, &v); return acc })
}

// Min emits the window's smallest field in its first record.
func (w WindowedStream[K, T]) Min(field string) DataStream[T] {
	return w.aggregateBy("Min", field, func(f fieldOf[T], acc, v T) T {
		if f.less(&v, &acc) {
			f.copy(&acc, &v)
		}
		return acc
	})
}

// Max emits the window's largest field in its first record.
func (w WindowedStream[K, T]) Max(field string) DataStream[T] {
	return w.aggregateBy("Max", field, func(f fieldOf[T], acc, v T) T {
		if f.less(&acc, &v) {
			f.copy(&acc, &v)
		}
		return acc
	})
}

// MinBy emits the window's record with the smallest field.
func (w WindowedStream[K, T]) MinBy(field string) DataStream[T] {
	return w.aggregateBy("MinBy", field, func(f fieldOf[T], acc, v T) T {
		if f.less(&v, &acc) {
			return v
		}
		return acc
	})
}

// MaxBy emits the window's record with the largest field.
func (w WindowedStream[K, T]) MaxBy(field string) DataStream[T] {
	return w.aggregateBy("MaxBy", field, func(f fieldOf[T], acc, v T) T {
		if f.less(&acc, &v) {
			return v
		}
		return acc
	})
}

// AggregateFunction folds a window's records into an accumulator and
// makes the result from it; Merge combines accumulators of merged
// session windows.
type AggregateFunction[T, A, O any] struct {
	Create func() A
	Add    func(acc A, v T) A
	Result func(acc A) O
	Merge  func(a, b A) A
}

// Aggregate emits, when a window fires, agg's result over its records.
func Aggregate[K comparable, T, A, O any](w WindowedStream[K, T], name string, agg AggregateFunction[T, A, O]) DataStream[O] {
	return aggregateWindow(w, name, agg, func(_ K, _ TimeWindow, v O, out Collector[O]) { out.Collect(v) })
}

// AggregateWindow folds a window's records into agg's accumulator as they
// arrive, and when the window fires calls fn with the key, the window and
// agg's result, as Flink's aggregate(AggregateFunction,
// ProcessWindowFunction).
func AggregateWindow[K comparable, T, A, R, O any](w WindowedStream[K, T], name string, agg AggregateFunction[T, A, R], fn func(key K, win TimeWindow, result R, out Collector[O])) DataStream[O] {
	return aggregateWindow(w, name, agg, fn)
}

func aggregateWindow[K comparable, T, A, R, O any](w WindowedStream[K, T], name string, agg AggregateFunction[T, A, R], emit func(K, TimeWindow, R, Collector[O])) DataStream[O] {
	if agg.Create == nil || agg.Add == nil || agg.Result == nil {
		w.k.s.env.fail(fmt.Errorf("aggregate %q needs Create, Add and Result", name))
	}
	if w.evictor != nil {
		return windowed(w, name, constLogic(listLogic[K, T, O](w.evictor, func(k K, win TimeWindow, elems []Timestamped[T], out Collector[O]) {
			acc := agg.Create()
			for _, el := range elems {
				acc = agg.Add(acc, el.Value)
			}
			emit(k, win, agg.Result(acc), out)
		})))
	}
	type opt struct {
		a  A
		ok bool
	}
	return windowed(w, name, constLogic(windowLogic[K, T, opt, O]{
		add: func(acc opt, v T, _ int64) opt {
			if !acc.ok {
				acc = opt{agg.Create(), true}
			}
			return opt{agg.Add(acc.a, v), true}
		},
		merge: func(a, b opt) opt {
			switch {
			case !a.ok:
				return b
			case !b.ok:
				return a
			case agg.Merge == nil:
				task.Fail(fmt.Errorf("aggregate %q has no Merge, which session windows need", name))
			}
			return opt{agg.Merge(a.a, b.a), true}
		},
		fire: func(k K, win TimeWindow, acc opt, out Collector[O]) opt {
			if acc.ok {
				emit(k, win, agg.Result(acc.a), out)
			}
			return acc
		},
	}))
}

// ProcessWindow calls fn with a window's key, the window and its records
// (after the evictor) when it fires.
func ProcessWindow[K comparable, T, O any](w WindowedStream[K, T], name string, fn func(key K, win TimeWindow, elems []T, out Collector[O])) DataStream[O] {
	return windowed(w, name, func() windowLogic[K, T, []Timestamped[T], O] {
		// Reused from one firing to the next of this subtask only.
		var values []T
		return listLogic[K, T, O](w.evictor, func(k K, win TimeWindow, elems []Timestamped[T], out Collector[O]) {
			values = values[:0]
			for _, el := range elems {
				values = append(values, el.Value)
			}
			fn(k, win, values, out)
		})
	})
}

// ProcessWindowFunction handles a window's records when it fires; a
// WindowContext says which window, and when.
type ProcessWindowFunction[K comparable, T, O any] interface {
	Process(ctx *WindowContext, key K, elems []T, out Collector[O]) error
}

// WindowContext is what a ProcessWindowFunction sees of the window that
// fired and of its subtask.
type WindowContext struct {
	info   windowInfo
	window TimeWindow
	// perWindow and global are the operator's state backends, a
	// *state.Backend[KeyedWindow[K]] and a *state.Backend[K].
	perWindow, global any
}

// KeyedWindow is a key's window: what per-window state is scoped to.
type KeyedWindow[K comparable] struct {
	Key    K
	Window TimeWindow
}

// WindowValueState declares (or finds) a value state of the window that
// fired and its key (Flink's windowState): it is cleared with the
// window. K is the stream's key type.
func WindowValueState[V any, K comparable](ctx *WindowContext, name string, opts ...StateOption) *state.Value[KeyedWindow[K], V] {
	b, ok := ctx.perWindow.(*state.Backend[KeyedWindow[K]])
	if !ok {
		task.Fail(fmt.Errorf("WindowValueState %q: the window's key is not a %v", name, reflect.TypeFor[K]()))
	}
	if !ctx.info.perWindowState() {
		task.Fail(fmt.Errorf("WindowValueState %q: per-window state is not supported for merging (session) windows, as in Flink", name))
	}
	return state.NewValueTTL[KeyedWindow[K], V](b, name, optionsOf(opts).ttl)
}

// GlobalValueState declares (or finds) a value state of the key, across
// its windows (Flink's globalState). K is the stream's key type.
func GlobalValueState[V any, K comparable](ctx *WindowContext, name string, opts ...StateOption) *state.Value[K, V] {
	b, ok := ctx.global.(*state.Backend[K])
	if !ok {
		task.Fail(fmt.Errorf("GlobalValueState %q: the window's key is not a %v", name, reflect.TypeFor[K]()))
	}
	return state.NewValueTTL[K, V](b, name, optionsOf(opts).ttl)
}

// Window is the window that fired.
func (c *WindowContext) Window() TimeWindow { return c.window }

// CurrentWatermark is the operator's event-time watermark.
func (c *WindowContext) CurrentWatermark() int64 { return c.info.currentWatermark() }

// CurrentProcessingTime is the wall clock in epoch milliseconds.
func (c *WindowContext) CurrentProcessingTime() int64 { return c.info.currentProcessingTime() }

// Runtime is the subtask's RuntimeContext.
func (c *WindowContext) Runtime() *RuntimeContext { return &RuntimeContext{op: c.info.operator()} }

func (c *WindowContext) sideOutputs() *sideOutputs { return c.info.sideOutputs() }

// ProcessWindowWith calls a ProcessWindowFunction made by newFn for each
// subtask with a window's key and records (after the evictor) when it
// fires; the function may have Open and Close methods.
func ProcessWindowWith[K comparable, T, O any](w WindowedStream[K, T], name string, newFn func() ProcessWindowFunction[K, T, O]) DataStream[O] {
	return windowed(w, name, func() windowLogic[K, T, []Timestamped[T], O] {
		fn := newFn()
		ctx := &WindowContext{}
		var values []T
		l := listLogic[K, T, O](w.evictor, func(k K, win TimeWindow, elems []Timestamped[T], out Collector[O]) {
			values = values[:0]
			for _, el := range elems {
				values = append(values, el.Value)
			}
			ctx.window = win
			pw, g := ctx.info.backends()
			ctx.perWindow, ctx.global = pw, g
			pw.(*state.Backend[KeyedWindow[K]]).SetCurrentKey(KeyedWindow[K]{k, win})
			g.(*state.Backend[K]).SetCurrentKey(k)
			if err := fn.Process(ctx, k, values, out); err != nil {
				task.Fail(fmt.Errorf("%s: %w", name, err))
			}
		})
		life := richLifecycle{fn, name}
		l.open = func(op windowInfo) error {
			ctx.info = op
			return life.Open(op.operator())
		}
		l.close = life.Close
		return l
	})
}

// listLogic keeps every record of a window, for evictors and functions
// that see the whole window.
func listLogic[K comparable, T, O any](ev Evictor[T], fn func(K, TimeWindow, []Timestamped[T], Collector[O])) windowLogic[K, T, []Timestamped[T], O] {
	return windowLogic[K, T, []Timestamped[T], O]{
		add: func(acc []Timestamped[T], v T, ts int64) []Timestamped[T] {
			return append(acc, Timestamped[T]{v, ts})
		},
		merge: func(a, b []Timestamped[T]) []Timestamped[T] { return append(a, b...) },
		fire: func(k K, w TimeWindow, acc []Timestamped[T], out Collector[O]) []Timestamped[T] {
			if ev != nil {
				acc = ev.EvictBefore(acc, w)
			}
			fn(k, w, acc, out)
			return acc
		},
	}
}

// constLogic is a logic that keeps nothing between calls, which subtasks
// may share.
func constLogic[K comparable, T, A, O any](l windowLogic[K, T, A, O]) func() windowLogic[K, T, A, O] {
	return func() windowLogic[K, T, A, O] { return l }
}

// windowLogic is what a window function does with the accumulator A of
// each window: add a record, merge two windows, fire (returning what the
// window keeps); and, for a function of its own, open and close with the
// subtask.
type windowLogic[K comparable, T, A, O any] struct {
	add   func(acc A, v T, ts int64) A
	merge func(a, b A) A
	fire  func(k K, w TimeWindow, acc A, out Collector[O]) A
	open  func(op windowInfo) error
	close func() error
}

// windowInfo is what a window function may ask of its operator.
type windowInfo interface {
	currentWatermark() int64
	currentProcessingTime() int64
	operator() *task.OperatorContext
	sideOutputs() *sideOutputs
	// backends are the per-window and global state backends, scoped to
	// the window that fires and its key.
	backends() (perWindow, global any)
	perWindowState() bool
}

// windowed adds a window operator; newLogic makes each subtask's own
// logic, so that nothing a function keeps between calls is shared by two
// subtasks of one process.
func windowed[K comparable, T, A, O any](w WindowedStream[K, T], name string, newLogic func() windowLogic[K, T, A, O]) DataStream[O] {
	needCodec[O](w.k.s.env)
	description := "TimeWindow"
	if w.all {
		description = "AllWindow"
	}
	ds := add[T, O](w.k.s, name, description, func(out any) task.Instance {
		op := &windowOp[K, T, A, O]{
			key:       w.k.key,
			assigner:  w.assigner,
			trigger:   w.trigger,
			lateness:  w.lateness,
			lateTag:   w.lateTag,
			logic:     newLogic(),
			out:       out.(task.Output[O]),
			windows:   map[windowKey[K]]*windowState[A]{},
			sessions:  map[K][]TimeWindow{},
			perWindow: state.NewBackend[KeyedWindow[K]](),
			global:    state.NewBackend[K](),
		}
		op.col = windowCollector[K, T, A, O]{op}
		return task.Instance{Input: task.Output[T](op), Lifecycle: op}
	})
	if w.all {
		ds.node.Parallelism, ds.node.MaxParallelism = 1, 1
	}
	return keyedState(ds)
}

type windowKey[K comparable] struct {
	key K
	w   TimeWindow
}

type windowState[A any] struct {
	acc  A
	trig any
}

type windowOp[K comparable, T, A, O any] struct {
	key      func(T) K
	assigner WindowAssigner
	trigger  Trigger[T]
	lateness int64
	lateTag  OutputTag[T]
	lateOut  task.Output[T] // nil: late records are dropped
	side     *sideOutputs
	// perWindow and global hold a process window function's state.
	perWindow *state.Backend[KeyedWindow[K]]
	global    *state.Backend[K]
	logic     windowLogic[K, T, A, O]
	out       task.Output[O]
	col       Collector[O]
	outTime   int64

	ctx      *task.OperatorContext
	timers   *timerService[K, TimeWindow]
	windows  map[windowKey[K]]*windowState[A]
	sessions map[K][]TimeWindow
	tctx     TriggerContext
	curKey   K
	curWin   TimeWindow
	restored *windowSnapshot[K, T, A]
}

type windowCollector[K comparable, T, A, O any] struct{ op *windowOp[K, T, A, O] }

func (c windowCollector[K, T, A, O]) Collect(v O) { c.op.out.Collect(v, c.op.outTime) }

func (o *windowOp[K, T, A, O]) Open(ctx *task.OperatorContext) error {
	o.ctx = ctx
	o.side = newSideOutputs(ctx)
	if o.lateTag.id != "" {
		o.lateOut = sideOutput(o.side, o.lateTag)
	}
	o.timers = newTimerService(o.onEventTime, o.onProcessingTime)
	o.timers.open(ctx)
	o.tctx = TriggerContext{
		regEvent: func(ts int64) { o.timers.registerEvent(ts, o.curKey, o.curWin) },
		delEvent: func(ts int64) { o.timers.deleteEvent(ts, o.curKey, o.curWin) },
		regProc:  func(ts int64) { o.timers.registerProc(ts, o.curKey, o.curWin) },
		delProc:  func(ts int64) { o.timers.deleteProc(ts, o.curKey, o.curWin) },
	}
	o.applyRestored()
	if o.logic.open != nil {
		return o.logic.open(o)
	}
	return nil
}

func (o *windowOp[K, T, A, O]) currentWatermark() int64         { return o.timers.watermark }
func (o *windowOp[K, T, A, O]) currentProcessingTime() int64    { return o.timers.currentTime() }
func (o *windowOp[K, T, A, O]) operator() *task.OperatorContext { return o.ctx }
func (o *windowOp[K, T, A, O]) sideOutputs() *sideOutputs       { return o.side }
func (o *windowOp[K, T, A, O]) backends() (any, any)            { return o.perWindow, o.global }
func (o *windowOp[K, T, A, O]) perWindowState() bool            { return o.assigner.kind != session }

// triggerCtx scopes the trigger context to a key's window.
func (o *windowOp[K, T, A, O]) triggerCtx(k K, w TimeWindow, st *windowState[A]) *TriggerContext {
	o.curKey, o.curWin = k, w
	o.tctx.state = &st.trig
	o.tctx.merged = nil
	o.tctx.watermark = o.timers.watermark
	return &o.tctx
}

// cleanupTime is when a window's state goes: its end for processing time,
// its end plus the allowed lateness for event time; never for the global
// window.
func (o *windowOp[K, T, A, O]) cleanupTime(w TimeWindow) int64 {
	end := w.MaxTimestamp()
	if !o.assigner.eventTime || end > math.MaxInt64-o.lateness {
		return end
	}
	return end + o.lateness
}

func (o *windowOp[K, T, A, O]) isLate(w TimeWindow) bool {
	return o.assigner.eventTime && o.cleanupTime(w) <= o.timers.watermark
}

func (o *windowOp[K, T, A, O]) Collect(v T, ts int64) {
	k := o.key(v)
	if o.assigner.eventTime {
		if ts == task.NoTime {
			task.Fail(fmt.Errorf("%s: a record has no event time: assign timestamps with stream.AssignTimestampsAndWatermarks before an event-time window, or use a processing-time window", o.ctx.Name))
		}
	} else if o.assigner.kind != global {
		ts = o.timers.currentTime()
	}
	skipped := true
	for _, w := range o.assigner.assign(ts) {
		if o.assigner.kind == session {
			w = o.mergeSession(k, w)
		}
		if o.isLate(w) {
			// Dropped, as Flink drops records behind the watermark; a late
			// session leaves the key's sessions again (Flink's
			// retireWindow), so that no later one merges with it.
			if o.assigner.kind == session {
				o.retireSession(k, w)
			}
			continue
		}
		skipped = false
		wk := windowKey[K]{k, w}
		st := o.windows[wk]
		if st == nil {
			st = &windowState[A]{}
			o.windows[wk] = st
		}
		st.acc = o.logic.add(st.acc, v, ts)
		res := o.trigger.OnElement(v, ts, w, o.triggerCtx(k, w, st))
		o.apply(res, wk, st)
		o.registerCleanup(k, w)
	}
	// A record no window took, behind the watermark by more than the
	// allowed lateness, goes to the late-data side output.
	if skipped && o.assigner.eventTime && ts <= math.MaxInt64-o.lateness && ts+o.lateness <= o.timers.watermark {
		if o.lateOut != nil {
			o.lateOut.Collect(v, ts)
		} else {
			o.ctx.LateRecordsDropped.Add(1)
		}
	}
}

// mergeSession adds w to the key's sessions, merging every session it
// overlaps into one, and returns the session w now belongs to.
func (o *windowOp[K, T, A, O]) mergeSession(k K, w TimeWindow) TimeWindow {
	sessions := o.sessions[k]
	merged := w
	var into []TimeWindow
	kept := sessions[:0:0]
	for _, s := range sessions {
		if s.intersects(w) {
			merged = merged.cover(s)
			into = append(into, s)
		} else {
			kept = append(kept, s)
		}
	}
	o.sessions[k] = append(kept, merged)
	sortWindows(o.sessions[k])
	if len(into) == 0 || (len(into) == 1 && into[0] == merged) {
		return merged
	}
	// Move the merged sessions' contents and trigger states into merged.
	st := &windowState[A]{}
	var states []any
	first := true
	for _, s := range into {
		old := o.windows[windowKey[K]{k, s}]
		if old == nil {
			continue
		}
		if first {
			st.acc, first = old.acc, false
		} else {
			st.acc = o.logic.merge(st.acc, old.acc)
		}
		states = append(states, old.trig)
		o.trigger.Clear(s, o.triggerCtx(k, s, old))
		o.timers.deleteEvent(o.cleanupTime(s), k, s)
		delete(o.windows, windowKey[K]{k, s})
	}
	o.windows[windowKey[K]{k, merged}] = st
	ctx := o.triggerCtx(k, merged, st)
	ctx.merged = states
	o.trigger.OnMerge(merged, ctx)
	return merged
}

func (o *windowOp[K, T, A, O]) registerCleanup(k K, w TimeWindow) {
	t := o.cleanupTime(w)
	if t == math.MaxInt64 {
		return
	}
	if o.assigner.eventTime {
		o.timers.registerEvent(t, k, w)
	} else {
		o.timers.registerProc(t, k, w)
	}
}

func (o *windowOp[K, T, A, O]) apply(res TriggerResult, wk windowKey[K], st *windowState[A]) {
	if res.fires() {
		o.outTime = wk.w.MaxTimestamp()
		o.side.ts = o.outTime
		st.acc = o.logic.fire(wk.key, wk.w, st.acc, o.col)
	}
	if res.purges() {
		var zero A
		st.acc = zero
	}
}

func (o *windowOp[K, T, A, O]) onEventTime(t timer[K, TimeWindow]) {
	o.onTimer(t, true)
}

func (o *windowOp[K, T, A, O]) onProcessingTime(t timer[K, TimeWindow]) {
	o.onTimer(t, false)
}

func (o *windowOp[K, T, A, O]) onTimer(t timer[K, TimeWindow], event bool) {
	wk := windowKey[K]{t.key, t.ns}
	st := o.windows[wk]
	if st == nil {
		return
	}
	ctx := o.triggerCtx(t.key, t.ns, st)
	var res TriggerResult
	if event {
		res = o.trigger.OnEventTime(t.ts, t.ns, ctx)
	} else {
		res = o.trigger.OnProcessingTime(t.ts, t.ns, ctx)
	}
	o.apply(res, wk, st)
	if event == o.assigner.eventTime && t.ts == o.cleanupTime(t.ns) {
		o.trigger.Clear(t.ns, o.triggerCtx(t.key, t.ns, st))
		delete(o.windows, wk)
		o.perWindow.ClearKey(KeyedWindow[K]{t.key, t.ns})
		if o.assigner.kind == session {
			o.removeSession(t.key, t.ns)
		}
	}
}

// retireSession drops a session that is late as a whole: its state (what
// windows merged into it brought) and its place among the key's sessions.
func (o *windowOp[K, T, A, O]) retireSession(k K, w TimeWindow) {
	wk := windowKey[K]{k, w}
	if st := o.windows[wk]; st != nil {
		o.trigger.Clear(w, o.triggerCtx(k, w, st))
		delete(o.windows, wk)
	}
	o.removeSession(k, w)
}

// removeSession takes w out of the key's sessions.
func (o *windowOp[K, T, A, O]) removeSession(k K, w TimeWindow) {
	sessions := o.sessions[k]
	for i, s := range sessions {
		if s == w {
			o.sessions[k] = append(sessions[:i:i], sessions[i+1:]...)
			break
		}
	}
	if len(o.sessions[k]) == 0 {
		delete(o.sessions, k)
	}
}

func (o *windowOp[K, T, A, O]) Watermark(wm int64) {
	o.timers.advance(wm)
	o.out.Watermark(wm)
	o.side.watermark(wm)
}

// Idle passes on that the operator's input is idle.
func (o *windowOp[K, T, A, O]) Idle() {
	task.MarkIdle(o.out)
	o.side.idle()
}

// Finish does nothing: at the end of input, processing-time windows not
// yet due do not fire, as in Flink's streaming mode (processing-time
// timers are quiesced, FLINK-14231); event-time windows fire on the final
// watermark.
func (o *windowOp[K, T, A, O]) Finish() error { return nil }

func (o *windowOp[K, T, A, O]) Close() error {
	if o.logic.close != nil {
		return o.logic.close()
	}
	return nil
}
