package task

import (
	"context"
	"reflect"

	"github.com/loom-project/loom/flinkrt/codec"
	"github.com/loom-project/loom/flinkrt/network"
)

// mailboxOutput is the output a source writes to: before each record it
// runs what the mailbox holds, so timers and flushes happen between records
// even while a source never yields.
type mailboxOutput[T any] struct {
	mb   *Mailbox
	next Output[T]
}

func (o mailboxOutput[T]) Collect(v T, ts int64) {
	if o.mb.Pending() {
		o.mb.Run()
	}
	o.next.Collect(v, ts)
}

func (o mailboxOutput[T]) Watermark(wm int64) {
	if o.mb.Pending() {
		o.mb.Run()
	}
	o.next.Watermark(wm)
}

func (o mailboxOutput[T]) Idle() { MarkIdle(o.next) }

// TypeOps builds the typed parts of a task for one element type, so that
// code which wires chains need not know the type. Values pass as any and
// are asserted once, when the task is built.
type TypeOps interface {
	// Name is the Go type's name, part of a graph's fingerprint.
	Name() string
	// Fanout makes an Output[T] from []Output[T] given as []any.
	Fanout(outs []any) any
	// Discard is an Output[T] that drops everything.
	Discard() any
	// WithMailbox wraps a source's Output[T] so that it runs mailbox actions.
	WithMailbox(out any, mb *Mailbox) any
	// NewGate makes a *network.Gate[T].
	NewGate(channels, credits int) any
	// NewLocalChannel makes a network.ChannelOut[T] into channel index of gate.
	NewLocalChannel(gate any, index, credits, batchSize int) any
	// NewWriter makes a *RecordWriter[T] (an Output[T] and a Flusher) over
	// channels, given as []any of network.ChannelOut[T].
	NewWriter(ctx context.Context, p Partitioning, channels []any, batchSize, maxParallelism int) (any, Flusher)
	// RunInput runs RunInput over a *network.Gate[T] and an Output[T] head.
	RunInput(ctx *Context, gate any, head any) error
	// NewRemoteChannel makes a network.ChannelOut[T] to channel key of the
	// worker serving addr, which dial reaches.
	NewRemoteChannel(dial network.Dialer, addr, key string, batchSize int) (any, error)
	// NewReceiver serves a remote producer into channel index of gate.
	NewReceiver(ctx context.Context, gate any, index, credits, batchSize int, from string) (network.Receiver, error)
}

// Type is the TypeOps of T.
type Type[T any] struct{}

// Name implements TypeOps.
func (Type[T]) Name() string { return reflect.TypeFor[T]().String() }

// Fanout implements TypeOps.
func (Type[T]) Fanout(outs []any) any {
	if len(outs) == 1 {
		return outs[0].(Output[T])
	}
	f := make(Fanout[T], len(outs))
	for i, o := range outs {
		f[i] = o.(Output[T])
	}
	return Output[T](f)
}

// Discard implements TypeOps.
func (Type[T]) Discard() any { return Output[T](Discard[T]{}) }

// WithMailbox implements TypeOps.
func (Type[T]) WithMailbox(out any, mb *Mailbox) any {
	return Output[T](mailboxOutput[T]{mb: mb, next: out.(Output[T])})
}

// NewGate implements TypeOps.
func (Type[T]) NewGate(channels, credits int) any { return network.NewGate[T](channels, credits) }

// NewLocalChannel implements TypeOps.
func (Type[T]) NewLocalChannel(gate any, index, credits, batchSize int) any {
	return network.ChannelOut[T](network.NewLocalChannel(gate.(*network.Gate[T]), index, credits, batchSize))
}

// NewWriter implements TypeOps.
func (Type[T]) NewWriter(ctx context.Context, p Partitioning, channels []any, batchSize, maxParallelism int) (any, Flusher) {
	chans := make([]network.ChannelOut[T], len(channels))
	for i, c := range channels {
		chans[i] = c.(network.ChannelOut[T])
	}
	w := NewRecordWriter(ctx, p, chans, batchSize, maxParallelism)
	return Output[T](w), w
}

// NewRemoteChannel implements TypeOps.
func (Type[T]) NewRemoteChannel(dial network.Dialer, addr, key string, batchSize int) (any, error) {
	c, err := codec.For[T]()
	if err != nil {
		return nil, err
	}
	return network.ChannelOut[T](network.NewRemoteChannel(dial, addr, key, batchSize, c)), nil
}

// NewReceiver implements TypeOps.
func (Type[T]) NewReceiver(ctx context.Context, gate any, index, credits, batchSize int, from string) (network.Receiver, error) {
	c, err := codec.For[T]()
	if err != nil {
		return nil, err
	}
	return network.NewReceiver(ctx, gate.(*network.Gate[T]), index, credits, batchSize, c, from), nil
}

// RunInput implements TypeOps.
func (Type[T]) RunInput(ctx *Context, gate any, head any) error {
	return RunInput(ctx, gate.(*network.Gate[T]), head.(Output[T]))
}
