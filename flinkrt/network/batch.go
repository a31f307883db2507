// Package network moves records between the subtasks of a job: result
// partitions on the producing side, input gates on the consuming side, and
// the channels between them. A channel inside one worker process passes
// typed batches; a channel between workers (tcp.go) passes encoded frames
// over a shared TCP connection. Both are credit-based: a producer holds a
// buffer only when its consumer has room for it, so a slow consumer slows
// its producers instead of growing memory.
package network

import (
	"context"
	"errors"
	"math"
)

// Kind says what a batch carries.
type Kind uint8

const (
	// Data carries records.
	Data Kind = iota
	// Watermark carries an event-time watermark in Batch.Watermark.
	Watermark
	// EndOfPartition is the last batch of a channel: its producer finished.
	EndOfPartition
	// Failure says the channel broke; Batch.Err says how. It is never sent
	// by a producer: a consumer's end of a remote channel makes it.
	Failure
	// Barrier is a checkpoint barrier: every record before it belongs to
	// checkpoint Batch.Checkpoint, every record after it to the next.
	Barrier
	// Idle says the channel's producer has no records for now (Flink's
	// WatermarkStatus.IDLE): its consumer leaves the channel out of its
	// watermark until a record or a watermark comes on it again.
	Idle
)

// Batch is a run of records, or one in-band event, on one channel.
type Batch[T any] struct {
	Kind    Kind
	Records []T
	// Times holds each record's event time, NoTime where it has none.
	Times     []int64
	Watermark int64
	// Checkpoint is the checkpoint id of a Barrier.
	Checkpoint int64
	// Err is the error of a Failure.
	Err error
	// Channel is the index of the channel in its consumer's gate.
	Channel int
	// Bytes is the size the batch had on the network; 0 for a batch
	// from a channel in the same process.
	Bytes int64

	free chan *Batch[T] // where the batch goes back when consumed (its credit)
}

// Recycle returns the batch to its channel: the producer may fill it again.
// The consumer must not touch the batch afterwards.
func (b *Batch[T]) Recycle() {
	clear(b.Records)
	b.Records = b.Records[:0]
	b.Times = b.Times[:0]
	b.Kind = Data
	b.Bytes = 0
	if b.free != nil {
		b.free <- b
	}
}

// ChannelOut is the producing end of one channel.
type ChannelOut[T any] interface {
	// Take returns an empty batch to fill, waiting for a credit.
	Take(ctx context.Context) (*Batch[T], error)
	// Send passes a batch taken from this channel to the consumer.
	Send(ctx context.Context, b *Batch[T]) error
	// Close releases the producer's end after its last batch.
	Close()
}

// NoTime is the event time of a record that has none.
const NoTime = math.MinInt64

// Add appends a record and its event time.
func (b *Batch[T]) Add(v T, ts int64) {
	b.Records = append(b.Records, v)
	b.Times = append(b.Times, ts)
}

// ErrCanceled is returned by a channel operation whose task was canceled.
var ErrCanceled = errors.New("canceled")

// DefaultBatchSize is how many records a batch holds before it is sent.
const DefaultBatchSize = 512

// DefaultCredits is how many batches a channel may have in flight.
const DefaultCredits = 4

// Gate is the consuming end of a subtask's input: every channel from every
// producer of every input edge, merged into one queue of batches. Each
// batch names its channel, so per-channel events (watermarks, end of
// partition) are tracked by the reader.
type Gate[T any] struct {
	ch       chan *Batch[T]
	channels int
}

// NewGate makes a gate of n channels, each allowed credits batches in
// flight.
func NewGate[T any](n, credits int) *Gate[T] {
	return &Gate[T]{ch: make(chan *Batch[T], n*credits+1), channels: n}
}

// Channels is the number of channels of the gate.
func (g *Gate[T]) Channels() int { return g.channels }

// C is the gate's queue, for a reader that selects on it with other events.
func (g *Gate[T]) C() <-chan *Batch[T] { return g.ch }

// Deliver puts a batch into the gate. It does not block for long: the
// producer held a credit for it.
func (g *Gate[T]) Deliver(ctx context.Context, b *Batch[T]) error {
	select {
	case g.ch <- b:
		return nil
	case <-ctx.Done():
		return ErrCanceled
	}
}

// LocalChannel is a channel between two subtasks in the same process. Its
// credits are its batches: the producer takes an empty one, the consumer
// recycles it, and at most credits of them exist.
type LocalChannel[T any] struct {
	gate  *Gate[T]
	index int
	free  chan *Batch[T]
}

// NewLocalChannel connects a producer to channel index of gate.
func NewLocalChannel[T any](gate *Gate[T], index, credits, batchSize int) *LocalChannel[T] {
	c := &LocalChannel[T]{gate: gate, index: index, free: make(chan *Batch[T], credits)}
	for i := 0; i < credits; i++ {
		c.free <- &Batch[T]{Records: make([]T, 0, batchSize), Times: make([]int64, 0, batchSize), Channel: index, free: c.free}
	}
	return c
}

// Take implements ChannelOut.
func (c *LocalChannel[T]) Take(ctx context.Context) (*Batch[T], error) {
	select {
	case b := <-c.free:
		return b, nil
	default:
	}
	select {
	case b := <-c.free:
		return b, nil
	case <-ctx.Done():
		return nil, ErrCanceled
	}
}

// Send implements ChannelOut.
func (c *LocalChannel[T]) Send(ctx context.Context, b *Batch[T]) error {
	b.Channel = c.index
	return c.gate.Deliver(ctx, b)
}

// Close implements ChannelOut.
func (c *LocalChannel[T]) Close() {}
