package stream

import (
	"fmt"
	"iter"
	"math"

	"github.com/loom-project/loom/flinkrt/codec"
	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/task"
)

// Broadcast state (Flink's broadcast state pattern): a stream of rules,
// patterns or settings is broadcast to every subtask of an operator that
// also reads another stream, and each subtask keeps the broadcast records
// in a map state of its own (the same in every subtask, as long as they
// update it the same way from the same records).

// BroadcastConnected is a stream connected to a broadcast stream, whose
// every record reaches every subtask.
type BroadcastConnected[A, B any] struct {
	a DataStream[A]
	b DataStream[B]
}

// ConnectBroadcast connects a to b, broadcast: each subtask of the
// operator that reads them gets its share of a's records and all of b's.
func ConnectBroadcast[A, B any](a DataStream[A], b DataStream[B]) BroadcastConnected[A, B] {
	if a.env != b.env {
		a.env.fail(fmt.Errorf("ConnectBroadcast of streams from different environments"))
	}
	return BroadcastConnected[A, B]{a: a, b: b}
}

// BroadcastState is a subtask's copy of a broadcast map state.
type BroadcastState[V any] struct{ m map[string]V }

// Get returns the entry for key.
func (s *BroadcastState[V]) Get(key string) (V, bool) {
	v, ok := s.m[key]
	return v, ok
}

// Put sets the entry for key; only ProcessBroadcastElement should.
func (s *BroadcastState[V]) Put(key string, v V) { s.m[key] = v }

// Remove deletes the entry for key.
func (s *BroadcastState[V]) Remove(key string) { delete(s.m, key) }

// All iterates over the entries.
func (s *BroadcastState[V]) All() iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		for k, v := range s.m {
			if !yield(k, v) {
				return
			}
		}
	}
}

// Len is the number of entries.
func (s *BroadcastState[V]) Len() int { return len(s.m) }

// BroadcastProcessFunction handles a stream's records with the broadcast
// state that the broadcast stream's records update (Flink's
// BroadcastProcessFunction): ProcessElement should only read it,
// ProcessBroadcastElement may change it. It may have Open(*RuntimeContext)
// and Close() methods.
type BroadcastProcessFunction[A, B, V, O any] interface {
	ProcessElement(ctx *ProcessContext, state *BroadcastState[V], v A, out Collector[O]) error
	ProcessBroadcastElement(ctx *ProcessContext, state *BroadcastState[V], v B, out Collector[O]) error
}

// ProcessBroadcast runs a BroadcastProcessFunction made by newFn for each
// subtask over the connected streams. The broadcast state is in the
// subtask's checkpoints; restored at another parallelism, every subtask
// takes the first old subtask's copy.
func ProcessBroadcast[A, B, V, O any](c BroadcastConnected[A, B], name string, newFn func() BroadcastProcessFunction[A, B, V, O]) DataStream[O] {
	env := c.a.env
	needCodec[O](env)
	needCodec[Either[A, B]](env)
	needCodec[map[string]V](env)
	l := wrap(c.a, "Connect(1)", func(v A) Either[A, B] { return Either[A, B]{Left: v} })
	r := wrap(c.b, "Broadcast(2)", func(v B) Either[A, B] { return Either[A, B]{Right: v, IsRight: true} })
	n := env.sg.AddNode(&graph.Node{
		Name:        name,
		Description: "BroadcastProcess",
		In:          task.Type[Either[A, B]]{},
		Out:         task.Type[O]{},
		Factory: task.FactoryFunc(func(out any) task.Instance {
			fn := newFn()
			op := &broadcastOp[A, B, V, O]{fn: fn, out: out.(task.Output[O]), life: richLifecycle{fn, name}, state: &BroadcastState[V]{m: map[string]V{}}}
			op.col = broadcastCollector[A, B, V, O]{op}
			return task.Instance{Input: task.Output[Either[A, B]](op), Lifecycle: op}
		}),
	})
	// Its state is the same in every subtask: it moves to another
	// parallelism as a copy, as state by key moves by key group.
	n.KeyedState = true
	env.sg.Connect(l.node.ID, n.ID, task.Partitioning{})
	env.sg.Connect(r.node.ID, n.ID, task.Partitioning{Kind: task.Broadcast})
	return DataStream[O]{env: env, node: n, from: []int{n.ID}}
}

type broadcastOp[A, B, V, O any] struct {
	fn    BroadcastProcessFunction[A, B, V, O]
	out   task.Output[O]
	col   Collector[O]
	ctx   ProcessContext
	life  richLifecycle
	state *BroadcastState[V]
}

type broadcastCollector[A, B, V, O any] struct{ op *broadcastOp[A, B, V, O] }

func (c broadcastCollector[A, B, V, O]) Collect(v O) { c.op.out.Collect(v, c.op.ctx.timestamp) }

func (o *broadcastOp[A, B, V, O]) Open(ctx *task.OperatorContext) error {
	o.ctx = ProcessContext{op: ctx, timestamp: task.NoTime, watermark: math.MinInt64, side: newSideOutputs(ctx)}
	return o.life.Open(ctx)
}

func (o *broadcastOp[A, B, V, O]) Collect(e Either[A, B], ts int64) {
	o.ctx.timestamp, o.ctx.side.ts = ts, ts
	var err error
	if e.IsRight {
		err = o.fn.ProcessBroadcastElement(&o.ctx, o.state, e.Right, o.col)
	} else {
		err = o.fn.ProcessElement(&o.ctx, o.state, e.Left, o.col)
	}
	if err != nil {
		task.Fail(fmt.Errorf("%s: %w", o.ctx.op.Name, err))
	}
}

func (o *broadcastOp[A, B, V, O]) Watermark(wm int64) {
	o.ctx.watermark = wm
	o.out.Watermark(wm)
	o.ctx.side.watermark(wm)
}

// Idle passes on that the operator's input is idle.
func (o *broadcastOp[A, B, V, O]) Idle() {
	task.MarkIdle(o.out)
	o.ctx.side.idle()
}

// SnapshotState implements task.Snapshotter: the subtask's copy of the
// broadcast state.
func (o *broadcastOp[A, B, V, O]) SnapshotState(int64) ([]byte, error) {
	c, err := codec.For[map[string]V]()
	if err != nil {
		return nil, err
	}
	return c.Append(nil, o.state.m), nil
}

// RestoreState implements task.Snapshotter.
func (o *broadcastOp[A, B, V, O]) RestoreState(b []byte) error { return o.state.restore(b) }

// restore sets the state's entries from a snapshot of them.
func (s *BroadcastState[V]) restore(b []byte) error {
	c, err := codec.For[map[string]V]()
	if err != nil {
		return err
	}
	m, _, err := c.Decode(b)
	if err != nil {
		return err
	}
	if m == nil {
		m = map[string]V{}
	}
	s.m = m
	return nil
}

// RestoreKeyed implements task.KeyedRestorer: every copy is the same, so
// any subtask's will do.
func (o *broadcastOp[A, B, V, O]) RestoreKeyed(states [][]byte, _ task.KeyGroups) error {
	if len(states) == 0 {
		return nil
	}
	return o.RestoreState(states[0])
}

func (o *broadcastOp[A, B, V, O]) Finish() error { return nil }
func (o *broadcastOp[A, B, V, O]) Close() error  { return o.life.Close() }

// KeyedBroadcastProcessFunction handles a keyed stream's records with the
// key's state and timers and the broadcast state that a broadcast
// stream's records update (Flink's KeyedBroadcastProcessFunction):
// ProcessElement should only read the broadcast state;
// ProcessBroadcastElement may change it, and sees no key. It may have
// Open (Opener) and OnTimer (TimerHandler) as a KeyedProcessFunction.
type KeyedBroadcastProcessFunction[K comparable, A, B, V, O any] interface {
	ProcessElement(ctx *KeyedContext[K], state *BroadcastState[V], v A, out Collector[O]) error
	ProcessBroadcastElement(ctx *KeyedContext[K], state *BroadcastState[V], v B, out Collector[O]) error
}

// ProcessKeyedBroadcast runs a KeyedBroadcastProcessFunction made by newFn
// for each subtask over a keyed stream and a broadcast one. Its keyed
// state and timers move by key group at another parallelism, its
// broadcast state as a copy.
func ProcessKeyedBroadcast[K comparable, A, B, V, O any](a KeyedStream[K, A], b DataStream[B], name string, newFn func() KeyedBroadcastProcessFunction[K, A, B, V, O]) DataStream[O] {
	env := a.s.env
	needCodec[O](env)
	needCodec[Either[A, B]](env)
	needCodec[map[string]V](env)
	hash, err := codec.Hasher[K]()
	if err != nil {
		env.fail(fmt.Errorf("ProcessKeyedBroadcast: the key type cannot be hashed: %w", err))
	}
	src := a.s
	src.part = task.Partitioning{}
	l := wrap(src, "Connect(1)", func(v A) Either[A, B] { return Either[A, B]{Left: v} })
	r := wrap(b, "Broadcast(2)", func(v B) Either[A, B] { return Either[A, B]{Right: v, IsRight: true} })
	key := func(e Either[A, B]) K {
		if e.IsRight {
			var zero K
			return zero // a broadcast record has no key
		}
		return a.key(e.Left)
	}
	n := env.sg.AddNode(&graph.Node{
		Name:        name,
		Description: "KeyedBroadcastProcess",
		In:          task.Type[Either[A, B]]{},
		Out:         task.Type[O]{},
		KeyedState:  true,
		Factory: task.FactoryFunc(func(out any) task.Instance {
			st := &BroadcastState[V]{m: map[string]V{}}
			fn := keyedBroadcast[K, A, B, V, O]{fn: newFn(), state: st}
			p := &processOp[K, Either[A, B], O]{key: key, fn: fn, out: out.(task.Output[O])}
			p.col = processCollector[K, Either[A, B], O]{p}
			op := &keyedBroadcastOp[K, A, B, V, O]{processOp: p, state: st}
			return task.Instance{Input: task.Output[Either[A, B]](op), Lifecycle: op}
		}),
	})
	env.sg.Connect(l.node.ID, n.ID, task.Partitioning{Kind: task.Hash, KeyHash: func(e Either[A, B]) uint64 { return hash(a.key(e.Left)) }})
	env.sg.Connect(r.node.ID, n.ID, task.Partitioning{Kind: task.Broadcast})
	return DataStream[O]{env: env, node: n, from: []int{n.ID}}
}

// keyedBroadcast is a KeyedBroadcastProcessFunction as a
// KeyedProcessFunction over Either.
type keyedBroadcast[K comparable, A, B, V, O any] struct {
	fn    KeyedBroadcastProcessFunction[K, A, B, V, O]
	state *BroadcastState[V]
}

func (p keyedBroadcast[K, A, B, V, O]) ProcessElement(ctx *KeyedContext[K], e Either[A, B], out Collector[O]) error {
	if e.IsRight {
		return p.fn.ProcessBroadcastElement(ctx, p.state, e.Right, out)
	}
	return p.fn.ProcessElement(ctx, p.state, e.Left, out)
}

func (p keyedBroadcast[K, A, B, V, O]) Open(ctx *KeyedContext[K]) error {
	if o, ok := p.fn.(Opener[K]); ok {
		return o.Open(ctx)
	}
	return nil
}

func (p keyedBroadcast[K, A, B, V, O]) OnTimer(ctx *KeyedContext[K], ts int64, out Collector[O]) error {
	if h, ok := p.fn.(TimerHandler[K, O]); ok {
		return h.OnTimer(ctx, ts, out)
	}
	return nil
}

// keyedBroadcastOp is a process operator with a broadcast state beside
// its keyed state: a checkpoint holds both.
type keyedBroadcastOp[K comparable, A, B, V, O any] struct {
	*processOp[K, Either[A, B], O]
	state *BroadcastState[V]
}

type keyedBroadcastSnapshot struct {
	Process, Broadcast []byte
}

func (o *keyedBroadcastOp[K, A, B, V, O]) SnapshotState(id int64) ([]byte, error) {
	p, err := o.processOp.SnapshotState(id)
	if err != nil {
		return nil, err
	}
	bc, err := codec.For[map[string]V]()
	if err != nil {
		return nil, err
	}
	c, err := codec.For[keyedBroadcastSnapshot]()
	if err != nil {
		return nil, err
	}
	return c.Append(nil, keyedBroadcastSnapshot{Process: p, Broadcast: bc.Append(nil, o.state.m)}), nil
}

func (o *keyedBroadcastOp[K, A, B, V, O]) decode(b []byte) (keyedBroadcastSnapshot, error) {
	c, err := codec.For[keyedBroadcastSnapshot]()
	if err != nil {
		return keyedBroadcastSnapshot{}, err
	}
	s, _, err := c.Decode(b)
	return s, err
}

func (o *keyedBroadcastOp[K, A, B, V, O]) RestoreState(b []byte) error {
	s, err := o.decode(b)
	if err != nil {
		return err
	}
	if err := o.state.restore(s.Broadcast); err != nil {
		return err
	}
	return o.processOp.RestoreState(s.Process)
}

// RestoreKeyed implements task.KeyedRestorer: the keyed state by key
// group, the broadcast state from the first old subtask (every copy is
// the same).
func (o *keyedBroadcastOp[K, A, B, V, O]) RestoreKeyed(states [][]byte, g task.KeyGroups) error {
	var procs [][]byte
	for i, b := range states {
		s, err := o.decode(b)
		if err != nil {
			return err
		}
		if i == 0 {
			if err := o.state.restore(s.Broadcast); err != nil {
				return err
			}
		}
		procs = append(procs, s.Process)
	}
	return o.processOp.RestoreKeyed(procs, g)
}
