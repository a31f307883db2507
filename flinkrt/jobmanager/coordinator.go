package jobmanager

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/flinkrt/state/storage"
	"github.com/loom-project/loom/proto/flinkpb"
)

// checkpointing says whether the job takes periodic checkpoints.
func (jm *JobMaster) checkpointing() bool { return jm.cp.settings.interval > 0 }

// numSubtasks is how many subtasks acknowledge each checkpoint.
func (jm *JobMaster) numSubtasks() int {
	n := 0
	for _, row := range jm.tasks {
		n += len(row)
	}
	return n
}

// checkpointDueLocked is when the next periodic checkpoint may start; the
// zero time when none is due (checkpointing off, or not running).
func (jm *JobMaster) checkpointDueLocked() time.Time {
	s := jm.cp.settings
	if s.interval <= 0 || jm.state != JobRunning || len(jm.restarting) > 0 || len(jm.cp.pending) >= s.maxConcurrent {
		return time.Time{}
	}
	due := jm.lastTrigger.Add(s.interval)
	if !jm.cp.lastEnd.IsZero() && len(jm.cp.pending) == 0 {
		due = maxTime(due, jm.cp.lastEnd.Add(s.minPause))
	}
	return due
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// triggerLocked starts a checkpoint (or, with target set, a savepoint
// into target) and returns the command to send to every TaskManager of
// the job, which the caller sends without the lock.
func (jm *JobMaster) triggerLocked(now time.Time, savepoint bool, target string) (*pendingCheckpoint, error) {
	switch {
	case jm.state != JobRunning:
		return nil, fmt.Errorf("job %s is %s; a checkpoint or savepoint needs it RUNNING", jm.id, jm.state)
	case !jm.allTasks(TaskRunning):
		return nil, fmt.Errorf("job %s is RUNNING but not all its tasks are (some are still deploying, or have finished); a checkpoint or savepoint needs every task running", jm.id)
	}
	id := jm.cp.next
	jm.cp.next++
	dir := storage.Join(jm.cp.settings.dir, fmt.Sprintf("chk-%d", id))
	if savepoint {
		dir = storage.Join(target, fmt.Sprintf("savepoint-%s-%s", jm.id[:6], randomSuffix()))
	}
	st := &checkpointStats{id: id, savepoint: savepoint, status: CheckpointInProgress, trigger: now, subtasks: jm.numSubtasks()}
	for _, v := range jm.jg.Vertices {
		st.vertices = append(st.vertices, vertexCheckpoint{id: v.Id, acks: make([]*subtaskAck, v.Parallelism)})
	}
	p := &pendingCheckpoint{stats: st, dir: dir, acks: map[[2]int]*flinkpb.CheckpointAck{}}
	jm.cp.pending[id] = p
	jm.cp.total++
	jm.cp.record(st)
	if !savepoint {
		jm.lastTrigger = now
	}
	req := &flinkpb.CheckpointTrigger{JobId: jm.id, Attempt: int32(jm.restarts), CheckpointId: id, TimestampMs: now.UnixMilli(), Dir: dir, Savepoint: savepoint}
	var conns []*tmConn
	for _, c := range jm.tms {
		conns = append(conns, c)
	}
	jm.changedLocked()
	jm.background.Add(1)
	go func() {
		defer jm.background.Done()
		for _, c := range conns {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := c.client.TriggerCheckpoint(ctx, req)
			cancel()
			if err != nil {
				// Not a failure that counts against the tolerated ones, as
				// in Flink: the TaskManager is going, and its loss fails
				// over what it ran.
				jm.mu.Lock()
				if p := jm.cp.pending[id]; p != nil {
					jm.failCheckpointLocked(p, fmt.Sprintf("triggering it on TaskManager %s: %v", c.id, err), false)
				}
				jm.mu.Unlock()
				return
			}
		}
	}()
	return p, nil
}

// acknowledge records subtasks' acknowledgements (or declines) of a
// checkpoint; the last one completes it.
func (jm *JobMaster) acknowledge(tmID string, acks []*flinkpb.CheckpointAck) error {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	for _, a := range acks {
		if a.Vertex < 0 || int(a.Vertex) >= len(jm.tasks) || a.Subtask < 0 || int(a.Subtask) >= len(jm.tasks[a.Vertex]) {
			return fmt.Errorf("job %s has no subtask %d of vertex %d", jm.id, a.Subtask, a.Vertex)
		}
		p := jm.cp.pending[a.CheckpointId]
		t := jm.tasks[a.Vertex][a.Subtask]
		if p == nil || int(a.Attempt) != t.attempt || t.tm != tmID {
			continue // a checkpoint that ended, or an attempt before this one
		}
		if a.DeclineReason != "" {
			jm.failCheckpointLocked(p, a.DeclineReason, true)
			continue
		}
		key := [2]int{int(a.Vertex), int(a.Subtask)}
		if _, dup := p.acks[key]; dup {
			continue
		}
		p.acks[key] = a
		st := p.stats
		st.acked++
		st.size += a.StateSize
		st.lastAck = time.Now()
		st.alignmentMs = max(st.alignmentMs, a.AlignmentMs)
		st.syncMs = max(st.syncMs, a.SyncMs)
		st.asyncMs = max(st.asyncMs, a.AsyncMs)
		// The start delay: from the trigger to the subtask's first
		// barrier, by the clocks of two hosts; never below 0.
		var delay time.Duration
		if a.BarrierAtUs > 0 {
			delay = max(time.UnixMicro(a.BarrierAtUs).Sub(st.trigger), 0)
		}
		if int(a.Vertex) < len(st.vertices) && int(a.Subtask) < len(st.vertices[a.Vertex].acks) {
			st.vertices[a.Vertex].acks[a.Subtask] = &subtaskAck{at: st.lastAck, size: a.StateSize, alignmentMs: a.AlignmentMs, syncMs: a.SyncMs, asyncMs: a.AsyncMs, startDelay: delay}
		}
		t.checkpointed(time.Duration(a.AlignmentMs)*time.Millisecond, delay)
		if st.acked == st.subtasks {
			delete(jm.cp.pending, a.CheckpointId)
			jm.completeInBackground(p)
		}
	}
	jm.changedLocked()
	return nil
}

// completeInBackground writes a fully acknowledged checkpoint's metadata
// and then tells the job's TaskManagers it completed.
func (jm *JobMaster) completeInBackground(p *pendingCheckpoint) {
	meta := &checkpointMeta{Version: 1, JobID: jm.id, JobName: jm.jg.Name, CheckpointID: p.stats.id, Timestamp: p.stats.trigger.UnixMilli(), Savepoint: p.stats.savepoint}
	for vi, v := range jm.jg.Vertices {
		for _, op := range v.Operators {
			om := operatorMeta{ID: op.Id, UID: op.Uid, Name: op.Name, Parallelism: int(v.Parallelism), Files: map[int]string{},
				MaxParallelism: int(v.MaxParallelism), KeyedState: op.KeyedState, SplitState: op.SplitState}
			for s := 0; s < int(v.Parallelism); s++ {
				if f, ok := p.acks[[2]int{vi, s}].Files[op.Id]; ok {
					om.Files[s] = f
				}
			}
			meta.Operators = append(meta.Operators, om)
		}
	}
	// A fully acknowledged checkpoint is what a restart restores from
	// from now on, even one that starts before the metadata is written.
	done := &completedCheckpoint{meta: meta, dir: p.dir}
	if !p.stats.savepoint {
		jm.cp.completed = append(jm.cp.completed, done)
	}
	jm.background.Add(1)
	go func() {
		defer jm.background.Done()
		ctx, cancel := context.WithTimeout(context.Background(), jm.cp.settings.timeout)
		err := writeMeta(ctx, p.dir, meta)
		cancel()
		jm.mu.Lock()
		if err != nil {
			for i, c := range jm.cp.completed {
				if c == done {
					jm.cp.completed = append(jm.cp.completed[:i], jm.cp.completed[i+1:]...)
					break
				}
			}
			jm.failCheckpointLocked(p, fmt.Sprintf("writing its metadata: %v", err), true)
			jm.mu.Unlock()
			return
		}
		now := time.Now()
		st := p.stats
		st.status, st.end, st.path = CheckpointCompleted, now, p.dir
		jm.cp.succeeded++
		jm.cp.failures = 0
		jm.cp.lastEnd = now
		var drop []string
		if !st.savepoint {
			for len(jm.cp.completed) > jm.cp.settings.retained && jm.cp.completed[0] != done {
				drop = append(drop, jm.cp.completed[0].dir)
				jm.cp.completed = jm.cp.completed[1:]
			}
		}
		for _, w := range p.waiters {
			w <- savepointResult{path: p.dir}
		}
		// Subtasks deployed since the checkpoint was triggered take no
		// notice of it (their deployment's first checkpoint is later).
		var conns []*tmConn
		if jm.state == JobRunning {
			for _, c := range jm.tms {
				conns = append(conns, c)
			}
		}
		restarts := jm.restarts
		jm.log.Info("checkpoint completed", "checkpoint", st.id, "savepoint", st.savepoint, "size", st.size, "duration_ms", now.Sub(st.trigger).Milliseconds())
		jm.changedLocked()
		jm.mu.Unlock()
		for _, d := range drop {
			jm.removeCheckpoint(d)
		}
		req := &flinkpb.CheckpointNotification{JobId: jm.id, Attempt: int32(restarts), CheckpointId: st.id}
		for _, c := range conns {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = c.client.NotifyCheckpointComplete(ctx, req)
			cancel()
		}
		if p.stop {
			jm.mu.Lock()
			jm.stopLocked(p.stats.path)
			jm.mu.Unlock()
		}
	}()
}

// failCheckpointLocked ends a pending checkpoint that cannot complete. One
// that counts as a failure may fail the job over, past the tolerable
// number of failed checkpoints in a row.
func (jm *JobMaster) failCheckpointLocked(p *pendingCheckpoint, reason string, counts bool) {
	st := p.stats
	if jm.cp.pending[st.id] == p {
		delete(jm.cp.pending, st.id)
	}
	if st.status != CheckpointInProgress {
		return
	}
	st.status, st.end, st.failure = CheckpointFailed, time.Now(), reason
	jm.cp.failed++
	what := "checkpoint"
	if st.savepoint {
		what = "savepoint"
	}
	jm.log.Warn(what+" failed", "checkpoint", st.id, "reason", reason)
	for _, w := range p.waiters {
		w <- savepointResult{err: fmt.Errorf("%s %d failed: %s", what, st.id, reason)}
	}
	dir := p.dir
	jm.background.Add(1)
	go func() {
		defer jm.background.Done()
		jm.removeCheckpoint(dir)
	}()
	jm.changedLocked()
	if !counts || st.savepoint {
		return
	}
	jm.cp.failures++
	if jm.cp.failures > jm.cp.settings.tolerable {
		jm.failoverLocked(nil, "", fmt.Sprintf("checkpoint %d failed (%s), and %d checkpoints failed in a row, more than the %d tolerated (%s)",
			st.id, reason, jm.cp.failures, jm.cp.settings.tolerable, ConfCheckpointTolerable))
	}
}

// expireCheckpointsLocked fails the checkpoints pending past the timeout.
func (jm *JobMaster) expireCheckpointsLocked(now time.Time) {
	for _, p := range jm.cp.pending {
		if now.Sub(p.stats.trigger) > jm.cp.settings.timeout {
			jm.failCheckpointLocked(p, fmt.Sprintf("it expired: %d of %d subtasks acknowledged it within %s (%s)",
				p.stats.acked, p.stats.subtasks, jm.cp.settings.timeout, ConfCheckpointTimeout), true)
		}
	}
}

// abortCheckpointsLocked ends every pending checkpoint without counting
// it as a failure: the job restarts or ends.
func (jm *JobMaster) abortCheckpointsLocked(reason string) {
	for _, p := range jm.cp.pending {
		jm.failCheckpointLocked(p, reason, false)
	}
}

// nextExpiryLocked is when the oldest pending checkpoint expires.
func (jm *JobMaster) nextExpiryLocked() time.Time {
	var t time.Time
	for _, p := range jm.cp.pending {
		e := p.stats.trigger.Add(jm.cp.settings.timeout)
		if t.IsZero() || e.Before(t) {
			t = e
		}
	}
	return t
}

// restoreLatestLocked makes the newest completed checkpoint the state the
// next deployment starts from.
func (jm *JobMaster) restoreLatestLocked() error {
	if len(jm.cp.completed) == 0 {
		return nil
	}
	c := jm.cp.completed[len(jm.cp.completed)-1]
	rs, err := restoreFor(jm.jg, c.meta, c.dir, true)
	if err != nil {
		return err
	}
	jm.cp.restore = rs
	jm.cp.restored = &restoredInfo{id: c.meta.CheckpointID, at: time.Now(), path: c.dir}
	jm.cp.restores++
	return nil
}

// TriggerSavepoint takes a savepoint into dir (the job's
// state.savepoints.dir when empty) and returns its path once complete.
// With stop set, the job then ends FINISHED.
func (jm *JobMaster) TriggerSavepoint(ctx context.Context, dir string, stop bool) (string, error) {
	jm.mu.Lock()
	if dir == "" {
		dir = jm.cp.settings.savepointDir
	}
	if dir == "" {
		jm.mu.Unlock()
		return "", status.Error(codes.InvalidArgument, "no savepoint directory: name one (--dir), or set "+ConfSavepointDir+" for the job")
	}
	dir, err := storage.Normalize(dir)
	if err != nil {
		jm.mu.Unlock()
		return "", status.Errorf(codes.InvalidArgument, "savepoint directory %v", err)
	}
	p, err := jm.triggerLocked(time.Now(), true, dir)
	if err != nil {
		jm.mu.Unlock()
		return "", status.Error(codes.FailedPrecondition, err.Error())
	}
	p.stop = stop
	done := make(chan savepointResult, 1)
	p.waiters = append(p.waiters, done)
	jm.mu.Unlock()
	select {
	case r := <-done:
		return r.path, r.err
	case <-ctx.Done():
		return "", status.Errorf(codes.DeadlineExceeded, "savepoint %d was still in progress when the request ended; it may yet complete in %s", p.stats.id, p.dir)
	}
}

// dropCheckpointsLocked deletes the job's checkpoints: it finished, so
// nothing will restore from them.
func (jm *JobMaster) dropCheckpointsLocked() {
	if !jm.checkpointing() {
		return
	}
	dir := jm.cp.settings.dir
	jm.cp.completed = nil
	jm.background.Add(1)
	go func() {
		defer jm.background.Done()
		jm.removeCheckpoint(dir)
	}()
}

// removeCheckpoint deletes a checkpoint's files (or a job's directory of
// them), saying so when it cannot: what it leaves stays in the store.
func (jm *JobMaster) removeCheckpoint(dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := storage.RemoveAll(ctx, dir); err != nil {
		jm.log.Warn("could not remove checkpoint files", "path", dir, "err", err)
	}
}

// checkpointSummaryLocked sums up the job's checkpoints.
func (jm *JobMaster) checkpointSummaryLocked() *flinkpb.CheckpointSummary {
	c := &jm.cp
	sum := &flinkpb.CheckpointSummary{Enabled: jm.checkpointing(), Completed: int64(c.succeeded), Failed: int64(c.failed), InProgress: int64(len(c.pending))}
	for i := len(c.history) - 1; i >= 0; i-- {
		if st := c.history[i]; st.status == CheckpointCompleted && !st.savepoint {
			sum.LastId, sum.LastTimeMs, sum.LastPath = st.id, st.trigger.UnixMilli(), st.path
			sum.LastDurationMs, sum.LastSize = st.end.Sub(st.trigger).Milliseconds(), st.size
			break
		}
	}
	return sum
}

// checkpointsJSON is Flink's /jobs/:jobid/checkpoints.
func (jm *JobMaster) checkpointsJSON() obj {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	c := &jm.cp
	history := []any{}
	var completed, savepoint, failed any
	var sizes, durations []int64
	for i := len(c.history) - 1; i >= 0; i-- {
		st := c.history[i]
		e := st.json()
		history = append(history, e)
		switch {
		case st.status == CheckpointCompleted && st.savepoint && savepoint == nil:
			savepoint = e
		case st.status == CheckpointCompleted && !st.savepoint && completed == nil:
			completed = e
		case st.status == CheckpointFailed && failed == nil:
			failed = e
		}
		if st.status == CheckpointCompleted {
			sizes = append(sizes, st.size)
			durations = append(durations, st.end.Sub(st.trigger).Milliseconds())
		}
	}
	var restored any
	if r := c.restored; r != nil {
		restored = obj{"id": r.id, "restore_timestamp": r.at.UnixMilli(), "is_savepoint": r.savepoint, "external_path": r.path}
	}
	return obj{
		"counts":  obj{"restored": c.restores, "total": c.total, "in_progress": len(c.pending), "completed": c.succeeded, "failed": c.failed},
		"summary": obj{"state_size": minMaxAvg(sizes), "checkpointed_size": minMaxAvg(sizes), "end_to_end_duration": minMaxAvg(durations)},
		"latest":  obj{"completed": completed, "savepoint": savepoint, "failed": failed, "restored": restored},
		"history": history,
	}
}

func (st *checkpointStats) json() obj {
	kind, class := "CHECKPOINT", "completed"
	if st.savepoint {
		kind = "SAVEPOINT"
	}
	switch st.status {
	case CheckpointInProgress:
		class = "in_progress"
	case CheckpointFailed:
		class = "failed"
	}
	e := obj{
		"className": class, "id": st.id, "status": st.status, "is_savepoint": st.savepoint, "checkpoint_type": kind,
		"trigger_timestamp": st.trigger.UnixMilli(), "latest_ack_timestamp": msOrMinus(st.lastAck),
		"state_size": st.size, "checkpointed_size": st.size, "end_to_end_duration": time.Since(st.trigger).Milliseconds(),
		"alignment_buffered": 0, "processed_data": 0, "persisted_data": 0,
		"num_subtasks": st.subtasks, "num_acknowledged_subtasks": st.acked, "tasks": st.tasksJSON(),
	}
	if !st.end.IsZero() {
		e["end_to_end_duration"] = st.end.Sub(st.trigger).Milliseconds()
	}
	switch st.status {
	case CheckpointCompleted:
		e["external_path"], e["discarded"] = st.path, false
	case CheckpointFailed:
		e["failure_timestamp"], e["failure_message"] = st.end.UnixMilli(), st.failure
	}
	return e
}

// tasksJSON is each vertex's part of the checkpoint, by vertex id, as
// Flink's checkpoint details show it.
func (st *checkpointStats) tasksJSON() obj {
	tasks := obj{}
	for _, v := range st.vertices {
		tasks[v.id] = st.vertexJSON(v)
	}
	return tasks
}

func (st *checkpointStats) vertexJSON(v vertexCheckpoint) obj {
	acked, size := 0, int64(0)
	var last time.Time
	for _, a := range v.acks {
		if a != nil {
			acked++
			size += a.size
			if a.at.After(last) {
				last = a.at
			}
		}
	}
	status := st.status
	if acked == len(v.acks) && status == CheckpointInProgress {
		status = CheckpointCompleted
	}
	d := int64(-1)
	if !last.IsZero() {
		d = last.Sub(st.trigger).Milliseconds()
	}
	return obj{"id": st.id, "status": status, "latest_ack_timestamp": msOrMinus(last), "state_size": size, "checkpointed_size": size,
		"end_to_end_duration": d, "alignment_buffered": 0, "processed_data": 0, "persisted_data": 0,
		"num_subtasks": len(v.acks), "num_acknowledged_subtasks": acked}
}

// checkpointDetailJSON is Flink's /jobs/:jid/checkpoints/details/:id, of
// a checkpoint the history still holds; nil when it does not.
func (jm *JobMaster) checkpointDetailJSON(id int64) obj {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	for _, st := range jm.cp.history {
		if st.id == id {
			return st.json()
		}
	}
	return nil
}

// checkpointSubtasksJSON is Flink's
// /jobs/:jid/checkpoints/details/:id/subtasks/:vid: one vertex's part,
// subtask by subtask, with its summary.
func (jm *JobMaster) checkpointSubtasksJSON(id int64, vertexID string) obj {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	for _, st := range jm.cp.history {
		if st.id != id {
			continue
		}
		for _, v := range st.vertices {
			if v.id != vertexID {
				continue
			}
			e := st.vertexJSON(v)
			var sizes, durations, syncs, asyncs, aligns, delays []int64
			subtasks := []obj{}
			for i, a := range v.acks {
				if a == nil {
					subtasks = append(subtasks, obj{"index": i, "status": "pending_or_failed"})
					continue
				}
				d := a.at.Sub(st.trigger).Milliseconds()
				sizes, durations = append(sizes, a.size), append(durations, d)
				syncs, asyncs, aligns = append(syncs, a.syncMs), append(asyncs, a.asyncMs), append(aligns, a.alignmentMs)
				delays = append(delays, a.startDelay.Milliseconds())
				subtasks = append(subtasks, obj{
					"index": i, "status": "completed", "ack_timestamp": a.at.UnixMilli(), "end_to_end_duration": d,
					"state_size": a.size, "checkpointed_size": a.size,
					"checkpoint":  obj{"sync": a.syncMs, "async": a.asyncMs},
					"alignment":   obj{"buffered": 0, "processed": 0, "persisted": 0, "duration": a.alignmentMs},
					"start_delay": a.startDelay.Milliseconds(), "unaligned_checkpoint": false, "aborted": false,
				})
			}
			e["summary"] = obj{
				"state_size": minMaxAvg(sizes), "checkpointed_size": minMaxAvg(sizes), "end_to_end_duration": minMaxAvg(durations),
				"checkpoint_duration": obj{"sync": minMaxAvg(syncs), "async": minMaxAvg(asyncs)},
				"alignment":           obj{"buffered": minMaxAvg(nil), "processed": minMaxAvg(nil), "persisted": minMaxAvg(nil), "duration": minMaxAvg(aligns)},
				"start_delay":         minMaxAvg(delays),
			}
			e["subtasks"] = subtasks
			return e
		}
	}
	return nil
}

func msOrMinus(t time.Time) int64 {
	if t.IsZero() {
		return -1
	}
	return t.UnixMilli()
}

func minMaxAvg(vs []int64) obj {
	if len(vs) == 0 {
		return obj{"min": 0, "max": 0, "avg": 0}
	}
	lo, hi, sum := vs[0], vs[0], int64(0)
	for _, v := range vs {
		lo, hi, sum = min(lo, v), max(hi, v), sum+v
	}
	return obj{"min": lo, "max": hi, "avg": sum / int64(len(vs))}
}

// checkpointConfigJSON is Flink's /jobs/:jobid/checkpoints/config.
func (jm *JobMaster) checkpointConfigJSON() obj {
	s := jm.cp.settings
	return obj{
		"mode": "exactly_once", "interval": s.interval.Milliseconds(), "timeout": s.timeout.Milliseconds(),
		"min_pause": s.minPause.Milliseconds(), "max_concurrent": s.maxConcurrent, "tolerable_failed_checkpoints": s.tolerable,
		"externalization": obj{"enabled": true, "delete_on_cancellation": false},
		"state_backend":   "HashMapStateBackend", "checkpoint_storage": "FileSystemCheckpointStorage", "checkpoint_storage_path": s.dir,
		"unaligned_checkpoints": false, "checkpoints_after_tasks_finish": false,
	}
}
