package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/loom-project/loom/flinkrt/state/storage"
	"github.com/loom-project/loom/flinkrt/task"
	"github.com/loom-project/loom/proto/flinkpb"
)

// snapshotOp is an operator of a chain whose state checkpoints capture.
type snapshotOp struct {
	id, name string
	op       task.Snapshotter
}

// listenerOp is an operator of a chain told of completed checkpoints.
type listenerOp struct {
	name string
	op   task.CheckpointListener
}

// Checkpoints routes a deployment's checkpoint commands to its subtasks
// and their acknowledgements back. Triggers reach every worker of the job:
// source subtasks start the checkpoint, and every subtask learns there
// where its state files go.
type Checkpoints struct {
	// Ack receives each subtask's acknowledgement or decline.
	Ack func(*flinkpb.CheckpointAck)

	mu      sync.Mutex
	pending map[int64]*pendingCheckpoint
	tasks   []*built
	wg      sync.WaitGroup // state writes in flight
	closed  chan struct{}
	once    sync.Once
}

type pendingCheckpoint struct {
	dir   string
	ready chan struct{} // closed once dir is known
}

// NewCheckpoints makes the router of one deployment; ack gets every
// acknowledgement.
func NewCheckpoints(ack func(*flinkpb.CheckpointAck)) *Checkpoints {
	return &Checkpoints{Ack: ack, pending: map[int64]*pendingCheckpoint{}, closed: make(chan struct{})}
}

func (c *Checkpoints) entry(id int64) *pendingCheckpoint {
	p := c.pending[id]
	if p == nil {
		p = &pendingCheckpoint{ready: make(chan struct{})}
		c.pending[id] = p
	}
	return p
}

// Trigger starts checkpoint t at the deployment's source subtasks: between
// two records each snapshots its chain and sends the barrier on.
func (c *Checkpoints) Trigger(t *flinkpb.CheckpointTrigger) {
	c.mu.Lock()
	p := c.entry(t.CheckpointId)
	select {
	case <-p.ready:
	default:
		p.dir = t.Dir
		close(p.ready)
	}
	tasks := c.tasks
	c.mu.Unlock()
	for _, b := range tasks {
		// A subtask stopped on its own (its region restarts) takes no part.
		if b.source != nil && b.ctx.Err() == nil {
			id := t.CheckpointId
			b.ctx.Mailbox.Post(func() { b.checkpoint(id, 0) })
		}
	}
}

// Notify tells every subtask that checkpoint id completed.
func (c *Checkpoints) Notify(id int64) {
	c.mu.Lock()
	tasks := c.tasks
	for old := range c.pending {
		if old <= id {
			delete(c.pending, old)
		}
	}
	c.mu.Unlock()
	for _, b := range tasks {
		if len(b.listeners) > 0 {
			b.ctx.Mailbox.Post(func() { b.notifyComplete(id) })
		}
	}
}

func (c *Checkpoints) add(b *built) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tasks = append(c.tasks, b)
}

// close stops waiting for checkpoint directories and waits for state
// writes in flight.
func (c *Checkpoints) close() {
	c.once.Do(func() { close(c.closed) })
	c.wg.Wait()
}

// dirOf waits until the trigger of checkpoint id has said where its files
// go: a subtask downstream may see the barrier before its worker sees the
// trigger.
func (c *Checkpoints) dirOf(id int64) (string, error) {
	c.mu.Lock()
	p := c.entry(id)
	c.mu.Unlock()
	select {
	case <-p.ready:
		return p.dir, nil
	case <-c.closed:
		return "", fmt.Errorf("the subtask ended before checkpoint %d was triggered here", id)
	case <-time.After(time.Minute):
		return "", fmt.Errorf("checkpoint %d was never triggered on this worker", id)
	}
}

// checkpoint takes the subtask's part of checkpoint id, in its goroutine:
// snapshot every operator of the chain, send the barrier on, then write
// the state files in the background and acknowledge.
func (b *built) checkpoint(id int64, alignment time.Duration) {
	start := time.Now()
	states := map[string][]byte{}
	var declined error
	for _, s := range b.snapshots {
		st, err := snapshotOf(s.op, id)
		if err != nil {
			declined = fmt.Errorf("%s could not snapshot its state: %w", s.name, err)
			break
		}
		if st != nil {
			states[s.id] = st
		}
	}
	// The barrier goes on even when the snapshot failed, so that the
	// subtasks downstream do not hold their inputs for it.
	for _, w := range b.writers {
		w.Barrier(id)
	}
	syncTook := time.Since(start)
	cps := b.checkpoints
	if cps == nil {
		return
	}
	ack := &flinkpb.CheckpointAck{
		Vertex: int32(b.id.Vertex), Subtask: int32(b.id.Index), Attempt: int32(b.id.Attempt), CheckpointId: id,
		AlignmentMs: alignment.Milliseconds(), SyncMs: syncTook.Milliseconds(), BarrierAtUs: start.Add(-alignment).UnixMicro(),
	}
	if declined != nil {
		ack.DeclineReason = declined.Error()
		cps.Ack(ack)
		return
	}
	cps.wg.Add(1)
	go func() {
		defer cps.wg.Done()
		start := time.Now()
		files, size, err := writeStates(cps, id, b.id, states)
		if err != nil {
			ack.DeclineReason = fmt.Sprintf("%s could not write its state: %v", b.name, err)
		}
		ack.Files, ack.StateSize, ack.AsyncMs = files, size, time.Since(start).Milliseconds()
		cps.Ack(ack)
	}()
}

// snapshotOf calls op's SnapshotState, turning a panic into an error.
func snapshotOf(op task.Snapshotter, id int64) (st []byte, err error) {
	defer task.Recover(&err, "snapshot")
	return op.SnapshotState(id)
}

// writeStates writes each operator's state to a file of its own in the
// checkpoint's directory and returns the files by operator id.
func writeStates(cps *Checkpoints, id int64, sub Subtask, states map[string][]byte) (map[string]string, int64, error) {
	if len(states) == 0 {
		return nil, 0, nil
	}
	dir, err := cps.dirOf(id)
	if err != nil {
		return nil, 0, err
	}
	files := map[string]string{}
	byName := map[string][]byte{}
	var size int64
	for op, st := range states {
		name := fmt.Sprintf("%s-%d", op, sub.Index)
		byName[name] = st
		files[op] = name
		size += int64(len(st))
	}
	// Stored durably before the subtask acknowledges; an expired
	// checkpoint is not worth writing on.
	ctx, cancel := context.WithTimeout(context.Background(), stateWriteTimeout)
	defer cancel()
	if err := storage.WriteFiles(ctx, dir, byName); err != nil {
		return nil, 0, err
	}
	return files, size, nil
}

// stateWriteTimeout bounds a subtask's writing of its state files, as
// the checkpoint timeout's default bounds the checkpoint.
const stateWriteTimeout = 10 * time.Minute

// notifyComplete tells the chain's listeners that checkpoint id
// completed; an error fails the task.
func (b *built) notifyComplete(id int64) {
	for _, l := range b.listeners {
		if err := l.op.NotifyCheckpointComplete(id); err != nil {
			task.Fail(fmt.Errorf("%s could not commit checkpoint %d: %w", l.name, id, err))
		}
	}
}

// barriers is a subtask's task.Barriers.
type barriers struct{ b *built }

func (h barriers) Aligned(id int64, alignment time.Duration) { h.b.checkpoint(id, alignment) }

func (h barriers) Abandoned(id int64, reason string) {
	if cps := h.b.checkpoints; cps != nil {
		cps.Ack(&flinkpb.CheckpointAck{Vertex: int32(h.b.id.Vertex), Subtask: int32(h.b.id.Index), Attempt: int32(h.b.id.Attempt),
			CheckpointId: id, DeclineReason: fmt.Sprintf("%s abandoned checkpoint %d: %s", h.b.name, id, reason)})
	}
}

// restoreStates reads the state files of a subtask's operators and
// restores each operator from its own; a keyed operator whose parallelism
// changed reads every file of the checkpoint's subtasks and keeps the keys
// it owns.
func (b *built) restoreStates(st *flinkpb.SubtaskState) error {
	for _, s := range b.snapshots {
		if path, ok := st.Files[s.id]; ok {
			data, err := readState(path)
			if err != nil {
				return fmt.Errorf("restoring %s: %w", s.name, err)
			}
			if err := restoreOf(s.op, data); err != nil {
				return fmt.Errorf("restoring %s from %s: %w", s.name, path, err)
			}
			continue
		}
		files, ok := st.Rescaled[s.id]
		if !ok {
			continue
		}
		var states [][]byte
		for _, path := range files.GetPaths() {
			data, err := readState(path)
			if err != nil {
				return fmt.Errorf("restoring %s: %w", s.name, err)
			}
			states = append(states, data)
		}
		if err := restoreRescaled(s.op, states, b.ctx); err != nil {
			return fmt.Errorf("restoring %s at parallelism %d: %w", s.name, b.ctx.Parallelism, err)
		}
	}
	return nil
}

// restoreRescaled restores an operator at a parallelism other than its
// checkpoint's, from every old subtask's state: by key, or by splits.
func restoreRescaled(op task.Snapshotter, states [][]byte, ctx *task.Context) (err error) {
	defer task.Recover(&err, "restore")
	switch r := op.(type) {
	case task.KeyedRestorer:
		return r.RestoreKeyed(states, task.KeyGroups{MaxParallelism: ctx.MaxParallelism, Parallelism: ctx.Parallelism, Subtask: ctx.Subtask})
	case task.SplitRestorer:
		return r.RestoreSplits(states, ctx.Subtask, ctx.Parallelism)
	}
	return errors.New("its state is neither by key nor splits, so it cannot change parallelism")
}

// readState reads a state file of a checkpoint or savepoint.
func readState(path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stateWriteTimeout)
	defer cancel()
	return storage.ReadFile(ctx, path)
}

func restoreOf(op task.Snapshotter, st []byte) (err error) {
	defer task.Recover(&err, "restore")
	return op.RestoreState(st)
}
