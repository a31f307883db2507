package stream

import (
	"fmt"
	"github.com/loom-project/loom/flinkrt/state"
	"github.com/loom-project/loom/flinkrt/task"
	"math"
	"time"
)

// Two-input operators (Flink's connect, CoMap, CoProcess, window and
// interval joins) read one stream of Either records: each input passes a
// map that wraps its records, chained to it, and the operator reads both
// maps' outputs through one input gate. Its watermark is the smallest of
// the two inputs', its checkpoint barriers align across both, as in
// Flink's two-input tasks.

// Either is a record of one of two connected streams: Left from the
// first, Right from the second.
type Either[A, B any] struct {
	Left    A
	Right   B
	IsRight bool
}

// ConnectedStreams are two streams that one two-input operator reads, as
// Flink's DataStream.connect.
type ConnectedStreams[A, B any] struct {
	a DataStream[A]
	b DataStream[B]
}

// Connect joins two streams, possibly of different types, for a
// two-input operator: CoMap, CoFlatMap, or after KeyByConnected,
// CoProcess.
func Connect[A, B any](a DataStream[A], b DataStream[B]) ConnectedStreams[A, B] {
	if a.env != b.env {
		a.env.fail(fmt.Errorf("Connect of streams from different environments"))
	}
	return ConnectedStreams[A, B]{a: a, b: b}
}

// eithers is both inputs as one stream of Either.
func (c ConnectedStreams[A, B]) eithers() DataStream[Either[A, B]] {
	needCodec[Either[A, B]](c.a.env)
	l := wrap(c.a, "Connect(1)", func(v A) Either[A, B] { return Either[A, B]{Left: v} })
	r := wrap(c.b, "Connect(2)", func(v B) Either[A, B] { return Either[A, B]{Right: v, IsRight: true} })
	return Union(l, r)
}

// wrap maps an input's records into the two-input operator's type, at
// the input's own parallelism when it is not repartitioned, so that the
// map chains to it and a key's records keep their order into the
// operator.
func wrap[I, O any](s DataStream[I], name string, fn func(I) O) DataStream[O] {
	m := Map(s, name, fn)
	if s.part.Kind == "" && len(s.from) == 1 {
		if n := s.env.sg.Node(s.from[0]); n != nil {
			m.node.Parallelism = n.Parallelism
		}
	}
	return m
}

// CoMap maps each record of the first input with f1 and of the second
// with f2 into one stream. The functions are shared by the operator's
// subtasks in a process, as Map's.
func CoMap[A, B, O any](c ConnectedStreams[A, B], name string, f1 func(A) O, f2 func(B) O) DataStream[O] {
	return Map(c.eithers(), name, func(e Either[A, B]) O {
		if e.IsRight {
			return f2(e.Right)
		}
		return f1(e.Left)
	})
}

// CoFlatMap calls f1 for each record of the first input and f2 for each
// of the second; each emits any number of records.
func CoFlatMap[A, B, O any](c ConnectedStreams[A, B], name string, f1 func(A, Collector[O]), f2 func(B, Collector[O])) DataStream[O] {
	return FlatMap(c.eithers(), name, func(e Either[A, B], out Collector[O]) {
		if e.IsRight {
			f2(e.Right, out)
			return
		}
		f1(e.Left, out)
	})
}

// ConnectedKeyed are connected streams each partitioned by a key of the
// same type: the records of one key of both go to one subtask.
type ConnectedKeyed[K comparable, A, B any] struct {
	k KeyedStream[K, Either[A, B]]
}

// KeyByConnected partitions both inputs by key: keyA of the first's
// records, keyB of the second's.
func KeyByConnected[K comparable, A, B any](c ConnectedStreams[A, B], keyA func(A) K, keyB func(B) K) ConnectedKeyed[K, A, B] {
	return ConnectedKeyed[K, A, B]{k: KeyBy(c.eithers(), func(e Either[A, B]) K {
		if e.IsRight {
			return keyB(e.Right)
		}
		return keyA(e.Left)
	})}
}

// KeyedCoProcessFunction handles the records of two keyed inputs with the
// key's state and timers, as Flink's: ProcessElement1 the first input's,
// ProcessElement2 the second's. It may have Open (Opener) and OnTimer
// (TimerHandler) as a KeyedProcessFunction.
type KeyedCoProcessFunction[K comparable, A, B, O any] interface {
	ProcessElement1(ctx *KeyedContext[K], v A, out Collector[O]) error
	ProcessElement2(ctx *KeyedContext[K], v B, out Collector[O]) error
}

// CoProcess runs a KeyedCoProcessFunction made by newFn for each subtask.
func CoProcess[K comparable, A, B, O any](c ConnectedKeyed[K, A, B], name string, newFn func() KeyedCoProcessFunction[K, A, B, O]) DataStream[O] {
	return Process(c.k, name, func() KeyedProcessFunction[K, Either[A, B], O] { return coProcess[K, A, B, O]{fn: newFn()} })
}

// coProcess is a KeyedCoProcessFunction as a KeyedProcessFunction over
// Either.
type coProcess[K comparable, A, B, O any] struct {
	fn KeyedCoProcessFunction[K, A, B, O]
}

func (p coProcess[K, A, B, O]) ProcessElement(ctx *KeyedContext[K], e Either[A, B], out Collector[O]) error {
	if e.IsRight {
		return p.fn.ProcessElement2(ctx, e.Right, out)
	}
	return p.fn.ProcessElement1(ctx, e.Left, out)
}

func (p coProcess[K, A, B, O]) Open(ctx *KeyedContext[K]) error {
	if o, ok := p.fn.(Opener[K]); ok {
		return o.Open(ctx)
	}
	return nil
}

func (p coProcess[K, A, B, O]) OnTimer(ctx *KeyedContext[K], ts int64, out Collector[O]) error {
	if h, ok := p.fn.(TimerHandler[K, O]); ok {
		return h.OnTimer(ctx, ts, out)
	}
	return nil
}

// JoinedStreams are two streams joined on equal keys, to be cut into
// windows (Flink's a.join(b).where(keyA).equalTo(keyB)).
type JoinedStreams[K comparable, A, B any] struct {
	c ConnectedKeyed[K, A, B]
}

// Join joins a's records to b's whose keys are equal.
func Join[K comparable, A, B any](a DataStream[A], b DataStream[B], keyA func(A) K, keyB func(B) K) JoinedStreams[K, A, B] {
	return JoinedStreams[K, A, B]{c: KeyByConnected(Connect(a, b), keyA, keyB)}
}

// Window cuts the joined streams into windows of assigner; JoinApply then
// joins within each.
func (j JoinedStreams[K, A, B]) Window(assigner WindowAssigner) WindowedStream[K, Either[A, B]] {
	return Window(j.c.k, assigner)
}

// JoinApply emits fn(a, b) for every pair of a record of each input with
// the same key in the same window, when it fires (an inner join).
func JoinApply[K comparable, A, B, O any](w WindowedStream[K, Either[A, B]], name string, fn func(a A, b B) O) DataStream[O] {
	return ProcessWindow(w, name, func(_ K, _ TimeWindow, elems []Either[A, B], out Collector[O]) {
		for _, l := range elems {
			if l.IsRight {
				continue
			}
			for _, r := range elems {
				if r.IsRight {
					out.Collect(fn(l.Left, r.Right))
				}
			}
		}
	})
}

// IntervalJoin joins, in event time, each record a of the first stream
// to each record b of the second with an equal key and a time within
// [a's time + lower, a's time + upper], as Flink's intervalJoin; the
// joined record has the later of the two times. Each side's records are
// kept (in checkpointed keyed state) until the watermark passes the
// interval they could still join.
func IntervalJoin[K comparable, A, B, O any](a DataStream[A], b DataStream[B], keyA func(A) K, keyB func(B) K, lower, upper time.Duration, name string, fn func(a A, b B) O) DataStream[O] {
	lo, hi := lower.Milliseconds(), upper.Milliseconds()
	if lo > hi {
		a.env.fail(fmt.Errorf("interval join %q: the lower bound %v is above the upper bound %v", name, lower, upper))
	}
	c := KeyByConnected(Connect(a, b), keyA, keyB)
	return CoProcess(c, name, func() KeyedCoProcessFunction[K, A, B, O] {
		return &intervalJoin[K, A, B, O]{lo: lo, hi: hi, fn: fn, name: name}
	})
}

type intervalJoin[K comparable, A, B, O any] struct {
	lo, hi int64
	fn     func(A, B) O
	name   string
	left   *state.List[K, Timestamped[A]]
	right  *state.List[K, Timestamped[B]]
}

func (j *intervalJoin[K, A, B, O]) Open(ctx *KeyedContext[K]) error {
	j.left = ListState[Timestamped[A]](ctx, "interval-join-left")
	j.right = ListState[Timestamped[B]](ctx, "interval-join-right")
	return nil
}

// timeOf is the record's event time; a record behind the watermark is
// dropped, as Flink's interval join drops it.
func (j *intervalJoin[K, A, B, O]) timeOf(ctx *KeyedContext[K]) (ts int64, late bool, err error) {
	ts = ctx.Timestamp()
	if ts == task.NoTime {
		return 0, false, fmt.Errorf("%s: an interval join needs records with event times: assign them with AssignTimestampsAndWatermarks", j.name)
	}
	wm := ctx.CurrentWatermark()
	return ts, wm != math.MinInt64 && ts < wm, nil
}

// Cleanup times, Flink's: a left record at t is kept until the watermark
// reaches t+hi (t when hi <= 0), a right one until t-lo (t when lo >= 0).
func (j *intervalJoin[K, A, B, O]) leftCleanup(t int64) int64 { return saturatingAdd(t, max(j.hi, 0)) }
func (j *intervalJoin[K, A, B, O]) rightCleanup(t int64) int64 {
	return saturatingAdd(t, max(-j.lo, 0))
}

func (j *intervalJoin[K, A, B, O]) ProcessElement1(ctx *KeyedContext[K], v A, out Collector[O]) error {
	ts, late, err := j.timeOf(ctx)
	if err != nil || late {
		return err
	}
	j.left.Add(Timestamped[A]{Value: v, Time: ts})
	for _, r := range j.right.Get() {
		if r.Time >= saturatingAdd(ts, j.lo) && r.Time <= saturatingAdd(ts, j.hi) {
			ctx.setOutputTime(max(ts, r.Time))
			out.Collect(j.fn(v, r.Value))
		}
	}
	ctx.RegisterEventTimeTimer(j.leftCleanup(ts))
	return nil
}

func (j *intervalJoin[K, A, B, O]) ProcessElement2(ctx *KeyedContext[K], v B, out Collector[O]) error {
	ts, late, err := j.timeOf(ctx)
	if err != nil || late {
		return err
	}
	j.right.Add(Timestamped[B]{Value: v, Time: ts})
	for _, l := range j.left.Get() {
		if ts >= saturatingAdd(l.Time, j.lo) && ts <= saturatingAdd(l.Time, j.hi) {
			ctx.setOutputTime(max(ts, l.Time))
			out.Collect(j.fn(l.Value, v))
		}
	}
	ctx.RegisterEventTimeTimer(j.rightCleanup(ts))
	return nil
}

// OnTimer drops the key's records whose cleanup time the watermark has
// reached.
func (j *intervalJoin[K, A, B, O]) OnTimer(_ *KeyedContext[K], now int64, _ Collector[O]) error {
	left := j.left.Get()
	kept := left[:0]
	for _, l := range left {
		if j.leftCleanup(l.Time) > now {
			kept = append(kept, l)
		}
	}
	j.left.Update(kept)
	right := j.right.Get()
	keptR := right[:0]
	for _, r := range right {
		if j.rightCleanup(r.Time) > now {
			keptR = append(keptR, r)
		}
	}
	j.right.Update(keptR)
	return nil
}

func saturatingAdd(a, b int64) int64 {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return math.MaxInt64
	case b < 0 && a < math.MinInt64-b:
		return math.MinInt64
	}
	return a + b
}
