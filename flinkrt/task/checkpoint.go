package task

import (
	"math"
	"time"

	"github.com/loom-project/loom/flinkrt/network"
)

// Snapshotter is an operator whose state checkpoints capture: a source's
// position, a keyed operator's values, a sink's pending files.
type Snapshotter interface {
	// SnapshotState returns the operator's state as it is now, between two
	// records, in the task's goroutine. The bytes are written out after it
	// returns, while the task goes on: they must not change afterwards.
	SnapshotState(checkpointID int64) ([]byte, error)
	// RestoreState sets the operator's state from a checkpoint; it is
	// called before Open.
	RestoreState(state []byte) error
}

// KeyGroups says which keys a subtask owns: those whose key group
// (task.KeyGroupOf) falls to it (task.OperatorIndexOf).
type KeyGroups struct {
	MaxParallelism, Parallelism, Subtask int
}

// Owns reports whether the subtask owns a key with this hash.
func (g KeyGroups) Owns(hash uint64) bool {
	return OperatorIndexOf(KeyGroupOf(hash, g.MaxParallelism), g.MaxParallelism, g.Parallelism) == g.Subtask
}

// KeyedRestorer is a Snapshotter whose state is by key. Restored at a
// parallelism other than its checkpoint's, it gets the state of every
// subtask of the checkpoint and keeps the keys it owns now; called
// before Open, as RestoreState.
type KeyedRestorer interface {
	RestoreKeyed(states [][]byte, owns KeyGroups) error
}

// SplitRestorer is a Snapshotter whose state is splits (a source's unread
// input, a sink's uncommitted output). Restored at another parallelism,
// each subtask is given every old subtask's state, in the order of their
// indexes (a subtask that stored none is left out), and takes its share
// of the splits; called before Open, as RestoreState.
type SplitRestorer interface {
	RestoreSplits(states [][]byte, subtask, parallelism int) error
}

// CheckpointListener is an operator that acts when a checkpoint its state
// is part of completes: a transactional sink commits what it covers.
type CheckpointListener interface {
	NotifyCheckpointComplete(checkpointID int64) error
}

// Barriers is what a task does with checkpoint barriers.
type Barriers interface {
	// Aligned is called, in the task's goroutine, once checkpoint id's
	// barrier has arrived on every input channel that has not ended; the
	// task snapshots its operators and sends the barrier on. alignment is
	// how long the first barrier waited for the last.
	Aligned(id int64, alignment time.Duration)
	// Abandoned is called when a newer checkpoint's barrier arrives before
	// id's have all arrived: id cannot complete.
	Abandoned(id int64, reason string)
}

// aligner holds back the channels that delivered the barrier of the
// checkpoint being aligned until every channel has: what arrives after a
// barrier belongs to the next checkpoint. Held batches keep their credit,
// so a channel that is ahead slows its producer instead of growing memory.
type aligner[T any] struct {
	barriers Barriers
	id       int64 // checkpoint being aligned; 0 when none
	done     int64 // newest checkpoint aligned or abandoned
	start    time.Time
	blocked  []bool
	nBlocked int
	held     []*network.Batch[T]
	// replay is what to handle again before the gate: held batches of a
	// finished alignment, in arrival order.
	replay []*network.Batch[T]
}

func (a *aligner[T]) holds(ch int) bool { return a.id != 0 && a.blocked[ch] }

// barrier records checkpoint id's barrier on channel ch.
func (a *aligner[T]) barrier(id int64, ch, open int) {
	if id <= a.done || id < a.id {
		return // the barrier of a checkpoint already aligned or given up
	}
	if id > a.id {
		if a.id != 0 {
			a.barriers.Abandoned(a.id, "the barriers of a newer checkpoint overtook it")
			a.done = a.id
			a.release()
		}
		a.id, a.start = id, time.Now()
	}
	a.blocked[ch] = true
	a.nBlocked++
	a.check(open)
}

// check completes the alignment once every channel still open is blocked.
func (a *aligner[T]) check(open int) {
	if a.id == 0 || a.nBlocked < open {
		return
	}
	id, took := a.id, time.Since(a.start)
	a.done = id
	a.release()
	if a.barriers != nil {
		a.barriers.Aligned(id, took)
	}
}

func (a *aligner[T]) release() {
	a.replay = append(a.held, a.replay...)
	a.held = nil
	clear(a.blocked)
	a.nBlocked = 0
	a.id = 0
}

// RunInput feeds a gate's records to the head of a chain until every
// channel has ended, running mailbox actions between batches. The
// watermark passed on is the minimum over the channels; a channel that
// ended no longer holds it back, so the end of every input passes
// MaxWatermark. Checkpoint barriers are aligned and handed to
// ctx.Barriers.
func RunInput[T any](ctx *Context, gate *network.Gate[T], head Output[T]) error {
	n := gate.Channels()
	wms := make([]int64, n)
	for i := range wms {
		wms[i] = math.MinInt64
	}
	current := int64(math.MinInt64)
	ended := 0
	// idle channels say their producer has nothing for now: they do not
	// hold the watermark back until something comes on them again. When
	// every open channel is idle, so is this task's output.
	idle := make([]bool, n)
	idleCount := 0
	recompute := func() {
		low, any := int64(math.MaxInt64), false
		for ch, w := range wms {
			if !idle[ch] {
				low, any = min(low, w), true
			}
		}
		if any && low > current {
			current = low
			ctx.InputWatermark.Store(low)
			head.Watermark(low)
		}
	}
	activate := func(ch int) {
		if idle[ch] {
			idle[ch] = false
			idleCount--
		}
	}
	advance := func(ch int, wm int64) {
		activate(ch)
		if wm <= wms[ch] {
			return
		}
		wms[ch] = wm
		recompute()
	}
	markIdle := func(ch int) {
		if idle[ch] {
			return
		}
		idle[ch] = true
		idleCount++
		if idleCount < n {
			recompute()
			return
		}
		// No channel will move its watermark now: pass on the largest,
		// then the idleness (Flink's StatusWatermarkValve).
		high := int64(math.MinInt64)
		for _, w := range wms {
			high = max(high, w)
		}
		if high > current {
			current = high
			ctx.InputWatermark.Store(high)
			head.Watermark(high)
		}
		MarkIdle(head)
	}
	al := &aligner[T]{barriers: ctx.Barriers, blocked: make([]bool, n)}
	handle := func(b *network.Batch[T]) error {
		if al.holds(b.Channel) {
			al.held = append(al.held, b)
			return nil
		}
		if b.Bytes > 0 {
			ctx.BytesIn.Add(b.Bytes)
		}
		switch b.Kind {
		case network.Data:
			activate(b.Channel)
			ctx.RecordsIn.Add(int64(len(b.Records)))
			for i := range b.Records {
				head.Collect(b.Records[i], b.Times[i])
			}
		case network.Watermark:
			advance(b.Channel, b.Watermark)
		case network.Idle:
			markIdle(b.Channel)
		case network.EndOfPartition:
			ended++
			advance(b.Channel, MaxWatermark)
			al.check(n - ended)
		case network.Barrier:
			al.barrier(b.Checkpoint, b.Channel, n-ended)
		case network.Failure:
			return b.Err
		}
		b.Recycle()
		return nil
	}
	for ended < n {
		for len(al.replay) > 0 {
			b := al.replay[0]
			al.replay = al.replay[1:]
			if err := handle(b); err != nil {
				return err
			}
		}
		if ended == n {
			break
		}
		// A batch at hand is taken at once (waiting for one is idle
		// time); the task's own work runs between batches either way.
		select {
		case b := <-gate.C():
			if err := handle(b); err != nil {
				return err
			}
			if ctx.Mailbox.Pending() {
				ctx.Mailbox.Run()
			}
			if ctx.Err() != nil {
				return ErrCanceled
			}
			continue
		default:
		}
		start := time.Now()
		select {
		case b := <-gate.C():
			ctx.IdleNanos.Add(int64(time.Since(start)))
			if err := handle(b); err != nil {
				return err
			}
		case <-ctx.Mailbox.Notify():
			ctx.IdleNanos.Add(int64(time.Since(start)))
			ctx.Mailbox.Run()
		case <-ctx.Done():
			return ErrCanceled
		}
	}
	return nil
}
