package task

import (
	"context"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/loom-project/loom/flinkrt/network"
)

// Partitioner names how an edge spreads records over its consumers.
type Partitioner string

// Flink's partitioners, named as Flink's plan names them.
const (
	Forward   Partitioner = "FORWARD"
	Rebalance Partitioner = "REBALANCE"
	Rescale   Partitioner = "RESCALE"
	Shuffle   Partitioner = "SHUFFLE"
	Broadcast Partitioner = "BROADCAST"
	Global    Partitioner = "GLOBAL"
	Hash      Partitioner = "HASH"
)

// Valid reports whether p is one of the known partitioners.
func (p Partitioner) Valid() bool {
	switch p {
	case Forward, Rebalance, Rescale, Shuffle, Broadcast, Global, Hash:
		return true
	}
	return false
}

// Pointwise reports whether the edge connects each producer to a subset of
// consumers (forward, rescale) rather than to all of them.
func (p Partitioner) Pointwise() bool { return p == Forward || p == Rescale }

// Partitioning is a partitioner with what it needs: for Hash, KeyHash is a
// func(T) uint64 over the edge's element type.
type Partitioning struct {
	Kind    Partitioner
	KeyHash any
}

// KeyGroupOf maps a key's hash to its key group.
func KeyGroupOf(hash uint64, maxParallelism int) int {
	return int(hash % uint64(maxParallelism))
}

// OperatorIndexOf is the subtask that owns a key group (Flink's
// KeyGroupRangeAssignment).
func OperatorIndexOf(keyGroup, maxParallelism, parallelism int) int {
	return keyGroup * parallelism / maxParallelism
}

// DefaultMaxParallelism is Flink's: 1.5 × parallelism rounded up to a power
// of two, within [128, 32768].
func DefaultMaxParallelism(parallelism int) int {
	n := parallelism + parallelism/2
	p := 128
	for p < n && p < 32768 {
		p <<= 1
	}
	return p
}

// Flusher is a record writer seen by its task.
type Flusher interface {
	// Flush sends every partly filled batch.
	Flush()
	// End flushes and marks the end of every channel.
	End()
	// Barrier flushes and sends checkpoint id's barrier on every channel.
	Barrier(id int64)
}

// RecordWriter is the Output at the end of a chain for one outgoing edge:
// it batches records per channel and sends a batch when it is full, when
// the task flushes (the buffer timeout) or when a watermark passes.
type RecordWriter[T any] struct {
	ctx       context.Context
	channels  []network.ChannelOut[T]
	current   []*network.Batch[T]
	batchSize int
	kind      Partitioner
	keyHash   func(T) uint64
	maxPar    int
	next      int
	// records counts the records sent, for the subtask's metrics, and
	// waited the time spent waiting for credit (back pressure).
	records atomic.Int64
	waited  atomic.Int64
	// watermark is the last watermark sent (math.MinInt64 before one).
	watermark atomic.Int64
}

// OutputWatermark is the last watermark the writer sent, and whether it
// sent one.
func (w *RecordWriter[T]) OutputWatermark() (int64, bool) {
	wm := w.watermark.Load()
	return wm, wm != math.MinInt64
}

// BackPressuredNanos is how long the writer waited for credit to send.
func (w *RecordWriter[T]) BackPressuredNanos() int64 { return w.waited.Load() }

// RecordsOut is how many records the writer has sent.
func (w *RecordWriter[T]) RecordsOut() int64 { return w.records.Load() }

// BytesOut is how many bytes the writer's network channels have sent.
func (w *RecordWriter[T]) BytesOut() int64 {
	var n int64
	for _, c := range w.channels {
		if b, ok := c.(interface{ BytesSent() int64 }); ok {
			n += b.BytesSent()
		}
	}
	return n
}

// NewRecordWriter makes the writer of one edge. channels are the edge's
// channels of this producer, in consumer-subtask order.
func NewRecordWriter[T any](ctx context.Context, p Partitioning, channels []network.ChannelOut[T], batchSize, maxParallelism int) *RecordWriter[T] {
	w := &RecordWriter[T]{
		ctx:       ctx,
		channels:  channels,
		current:   make([]*network.Batch[T], len(channels)),
		batchSize: batchSize,
		kind:      p.Kind,
		maxPar:    maxParallelism,
	}
	w.watermark.Store(math.MinInt64)
	if p.Kind == Hash {
		w.keyHash = p.KeyHash.(func(T) uint64)
	}
	if len(channels) > 0 {
		w.next = rand.IntN(len(channels))
	}
	return w
}

// Collect implements Output.
func (w *RecordWriter[T]) Collect(v T, ts int64) {
	switch w.kind {
	case Forward, Global:
		w.add(0, v, ts)
	case Hash:
		kg := KeyGroupOf(w.keyHash(v), w.maxPar)
		w.add(OperatorIndexOf(kg, w.maxPar, len(w.channels)), v, ts)
	case Broadcast:
		for i := range w.channels {
			w.add(i, v, ts)
		}
	case Shuffle:
		w.add(rand.IntN(len(w.channels)), v, ts)
	default: // Rebalance, Rescale
		w.next++
		if w.next >= len(w.channels) {
			w.next = 0
		}
		w.add(w.next, v, ts)
	}
}

func (w *RecordWriter[T]) add(ch int, v T, ts int64) {
	b := w.current[ch]
	if b == nil {
		b = w.take(ch)
		w.current[ch] = b
	}
	b.Add(v, ts)
	if len(b.Records) >= w.batchSize {
		w.current[ch] = nil
		w.send(ch, b)
	}
}

func (w *RecordWriter[T]) take(ch int) *network.Batch[T] {
	start := time.Now()
	b, err := w.channels[ch].Take(w.ctx)
	w.waited.Add(int64(time.Since(start)))
	if err != nil {
		Fail(ErrCanceled)
	}
	return b
}

func (w *RecordWriter[T]) send(ch int, b *network.Batch[T]) {
	if b.Kind == network.Data {
		w.records.Add(int64(len(b.Records)))
	}
	start := time.Now()
	err := w.channels[ch].Send(w.ctx, b)
	w.waited.Add(int64(time.Since(start)))
	if err != nil {
		if err == network.ErrCanceled {
			err = ErrCanceled
		}
		Fail(err)
	}
}

// Watermark implements Output: records before it go first, then the
// watermark on every channel.
func (w *RecordWriter[T]) Watermark(wm int64) {
	w.watermark.Store(wm)
	w.Flush()
	for ch := range w.channels {
		b := w.take(ch)
		b.Kind = network.Watermark
		b.Watermark = wm
		w.send(ch, b)
	}
}

// Idle implements Idler: records before it go first, then the idle mark
// on every channel.
func (w *RecordWriter[T]) Idle() {
	w.Flush()
	for ch := range w.channels {
		b := w.take(ch)
		b.Kind = network.Idle
		w.send(ch, b)
	}
}

// Flush implements Flusher.
func (w *RecordWriter[T]) Flush() {
	for ch, b := range w.current {
		if b != nil {
			w.current[ch] = nil
			w.send(ch, b)
		}
	}
}

// Barrier implements Flusher.
func (w *RecordWriter[T]) Barrier(id int64) {
	w.Flush()
	for ch := range w.channels {
		b := w.take(ch)
		b.Kind = network.Barrier
		b.Checkpoint = id
		w.send(ch, b)
	}
}

// End implements Flusher.
func (w *RecordWriter[T]) End() {
	w.Flush()
	for ch, c := range w.channels {
		b := w.take(ch)
		b.Kind = network.EndOfPartition
		w.send(ch, b)
		c.Close()
	}
}

// Fanout passes every record to several outputs: the chained operators and
// record writers that follow one operator.
type Fanout[T any] []Output[T]

// Collect implements Output.
func (f Fanout[T]) Collect(v T, ts int64) {
	for _, o := range f {
		o.Collect(v, ts)
	}
}

// Watermark implements Output.
func (f Fanout[T]) Watermark(wm int64) {
	for _, o := range f {
		o.Watermark(wm)
	}
}

// Idle implements Idler.
func (f Fanout[T]) Idle() {
	for _, o := range f {
		MarkIdle(o)
	}
}

// Idler is an output that passes on that its input is idle (Flink's
// WatermarkStatus.IDLE): no records for now, so consumers do not wait
// for its watermark. A record or a watermark makes it active again.
type Idler interface {
	Idle()
}

// MarkIdle tells out that the records it gets have stopped for now, if
// it passes that on.
func MarkIdle(out any) {
	if i, ok := out.(Idler); ok {
		i.Idle()
	}
}

// Discard is the output of a sink.
type Discard[T any] struct{}

// Collect implements Output.
func (Discard[T]) Collect(T, int64) {}

// Watermark implements Output.
func (Discard[T]) Watermark(int64) {}
