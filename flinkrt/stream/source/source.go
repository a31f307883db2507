// Package source holds the sources a job reads from: sequences and
// generators, text files and directories, sockets, and functions.
package source

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// Context is what a running source subtask emits into.
type Context[T any] interface {
	// Done is closed when the job is canceled; Run should return soon after.
	context.Context
	// Collect emits a record without an event time.
	Collect(v T)
	// CollectWithTimestamp emits a record with its event time (ms).
	CollectWithTimestamp(v T, ts int64)
	// EmitWatermark says no record at or before wm follows from this subtask.
	EmitWatermark(wm int64)
	// MarkIdle says this subtask has no records for now (Flink's
	// markAsTemporarilyIdle): consumers do not wait for its watermark
	// until it emits again.
	MarkIdle()
	// Subtask is this subtask's index, from 0.
	Subtask() int
	// Parallelism is the number of subtasks of the source.
	Parallelism() int
	// Idle is signalled when the task has work of its own (timers, flushes);
	// a source that blocks waiting for input selects on it and calls Yield.
	Idle() <-chan struct{}
	// Yield runs the task's pending work.
	Yield()
	// Restored is the position a checkpoint recorded for this subtask, as
	// the function given to Checkpointed returned it; nil on a fresh start.
	Restored() []byte
	// Checkpointed makes the source resumable: every checkpoint calls
	// position, in the source's goroutine, while a record is being
	// collected and before it is emitted, and records what it returns.
	// position must name where reading resumes: at the record whose
	// Collect is in progress.
	Checkpointed(position func() []byte)
}

// Source reads records. Each subtask of a source runs its own Run with its
// own Context and reads its share of the input.
type Source[T any] interface {
	// Describe names the source in the plan: "TextFile", "Socket".
	Describe() string
	// MaxParallelism is how many subtasks the source can split into; 0 for
	// any number.
	MaxParallelism() int
	// Run emits this subtask's records until they end or ctx is done.
	Run(ctx Context[T]) error
}

// Func is a source from a function, run as a single subtask.
func Func[T any](describe string, run func(ctx Context[T]) error) Source[T] {
	return funcSource[T]{describe, run}
}

type funcSource[T any] struct {
	describe string
	run      func(ctx Context[T]) error
}

func (f funcSource[T]) Describe() string         { return f.describe }
func (f funcSource[T]) MaxParallelism() int      { return 1 }
func (f funcSource[T]) Run(ctx Context[T]) error { return f.run(ctx) }

// Sequence emits the numbers from..to inclusive, each subtask a contiguous
// share of them.
func Sequence(from, to int64) Source[int64] {
	return Generator(to-from+1, func(i int64) int64 { return from + i })
}

// Generator emits fn(0), fn(1), ... fn(count-1), each subtask a contiguous
// share of the indexes; restored at another parallelism, the subtasks
// share the indexes left. count < 0 generates until the job is canceled,
// subtask s of p emitting s, s+p, s+2p, ...; such a generator keeps its
// parallelism across a restore.
func Generator[T any](count int64, fn func(i int64) T) Source[T] {
	if count >= 0 {
		return bounded[T]{count, fn}
	}
	return unbounded[T]{fn}
}

type bounded[T any] struct {
	count int64
	fn    func(i int64) T
}

func (g bounded[T]) Describe() string    { return "Generator" }
func (g bounded[T]) MaxParallelism() int { return 0 }

// Run emits the subtask's share of indexes, or the spans of them a
// restore gave it; a checkpoint records what is left from the index
// being emitted, where a restored subtask resumes.
func (g bounded[T]) Run(ctx Context[T]) error {
	p, s := ctx.Parallelism(), ctx.Subtask()
	fresh := span{Start: share(g.count, s, p), End: share(g.count, s+1, p)}
	spans, err := restoredSpans(ctx.Restored(), fresh, g.count)
	if err != nil {
		return fmt.Errorf("generator: %w", err)
	}
	var i int64
	k := 0
	ctx.Checkpointed(func() []byte { return leftFrom(spans, k, i) })
	for ; k < len(spans); k++ {
		for i = spans[k].Start; i < spans[k].End; i++ {
			if (i-spans[k].Start)&1023 == 0 && ctx.Err() != nil {
				return nil
			}
			ctx.Collect(g.fn(i))
		}
	}
	return nil
}

// Split implements Splittable.
func (g bounded[T]) Split(positions [][]byte, subtask, parallelism int) ([]byte, error) {
	b, err := splitSpans(positions, subtask, parallelism)
	if err != nil {
		return nil, fmt.Errorf("generator: %w", err)
	}
	return b, nil
}

type unbounded[T any] struct{ fn func(i int64) T }

func (g unbounded[T]) Describe() string    { return "Generator" }
func (g unbounded[T]) MaxParallelism() int { return 0 }

// Run emits the subtask's indexes until the job is canceled; a checkpoint
// records the index being emitted, where a restored subtask resumes.
func (g unbounded[T]) Run(ctx Context[T]) error {
	p, s := int64(ctx.Parallelism()), int64(ctx.Subtask())
	i := s
	ctx.Checkpointed(func() []byte { return binary.AppendVarint(nil, i) })
	if b := ctx.Restored(); b != nil {
		v, n := binary.Varint(b)
		if n <= 0 || v%p != s {
			return errors.New("generator: the restored position is not one of this subtask's")
		}
		i = v
	}
	for ; ; i += p {
		if i&1023 == s&1023 && ctx.Err() != nil {
			return nil
		}
		ctx.Collect(g.fn(i))
	}
}
