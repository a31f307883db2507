package jobmanager

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/resourcemanager"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/rpc"
)

// Flink's job states.
const (
	JobCreated    = "CREATED"
	JobRunning    = "RUNNING"
	JobFailing    = "FAILING"
	JobRestarting = "RESTARTING"
	JobCancelling = "CANCELLING"
	JobFinished   = "FINISHED"
	JobFailed     = "FAILED"
	JobCanceled   = "CANCELED"
)

// Flink's execution states of a subtask.
const (
	TaskCreated      = "CREATED"
	TaskScheduled    = "SCHEDULED"
	TaskDeploying    = "DEPLOYING"
	TaskInitializing = "INITIALIZING"
	TaskRunning      = "RUNNING"
	TaskFinished     = "FINISHED"
	TaskCanceling    = "CANCELING"
	TaskCanceled     = "CANCELED"
	TaskFailed       = "FAILED"
)

// TaskStates are the execution states in Flink's order.
var TaskStates = []string{TaskCreated, TaskScheduled, TaskDeploying, TaskInitializing, TaskRunning, TaskFinished, TaskCanceling, TaskCanceled, TaskFailed}

// JobTerminal says whether a job state is final.
func JobTerminal(s string) bool { return s == JobFinished || s == JobFailed || s == JobCanceled }

func taskTerminal(s string) bool { return s == TaskFinished || s == TaskCanceled || s == TaskFailed }

// ResourceManager is what a JobMaster needs of the Flink ResourceManager.
type ResourceManager interface {
	DeclareResourceRequirements(job, jmAddr string, slots int, jm resourcemanager.JobMaster)
	ReleaseJob(job string)
	// SlotsFreed says the TaskManager tmID freed the job's slots (its
	// worker ended), so they can be given out again.
	SlotsFreed(job, tmID string)
	// RemoveTaskManager says a TaskManager is gone (its address refuses
	// connections), so its slots are not given out and its container is
	// replaced without waiting for its heartbeat timeout.
	RemoveTaskManager(tmID, cause string)
}

// JobMaster runs one job: it gets the job's slots, deploys its tasks,
// follows their states and ends the job.
type JobMaster struct {
	id       string
	jg       *flinkpb.JobGraph
	artifact *flinkpb.JobArtifact
	log      hclog.Logger
	rm       ResourceManager
	addr     string
	timing   Timing
	// conns are the JobManager's connections to TaskManagers.
	conns *rpc.Pool

	mu          sync.Mutex
	state       string
	timestamps  map[string]int64
	start, end  time.Time
	tasks       [][]*subtask // by vertex, subtask
	slots       []offeredSlot
	tms         map[string]*tmConn
	failure     string
	failureTask string
	// endReason is why the job was canceled or stopped, as the request
	// said.
	endReason   string
	failureTime time.Time
	diagnostic  string
	waitNote    string // what the ResourceManager's driver says about missing slots
	deployed    bool
	version     uint64
	changed     chan struct{}
	background  sync.WaitGroup // cancels in flight; cleanup waits for them
	stateSince  time.Time

	// restarts counts failovers, of the whole job or of regions.
	restarts  int
	restart   restartStrategy
	restartAt time.Time // when a restarting job may deploy again
	// regions is each subtask's pipelined region, by vertex then subtask;
	// with regionFailover a failure restarts only the regions it touched.
	regions        [][]int
	numRegions     int
	regionFailover bool
	// restarting are the regions restarting while the rest of the job
	// runs on.
	restarting map[int]*regionRestart
	// logical is each subtask's logical slot, by vertex then subtask:
	// subtask i of every vertex of a slot sharing group shares the
	// group's logical slot i. assigned places logical slots in offered
	// slots; a region's restart keeps the slots that are still held.
	logical  [][]int
	assigned map[int]slotRef
	// slotDeadline is when a job waiting for slots fails without them.
	slotDeadline time.Time
	cp           coordinator
	lastTrigger  time.Time
	// stopping is set by stop with savepoint: the job ends FINISHED.
	stopping bool
}

// Timing holds a JobMaster's intervals and timeouts.
type Timing struct {
	// HeartbeatInterval is how often the JobMaster heartbeats the
	// TaskManagers running its tasks; one that does not answer for
	// HeartbeatTimeout is lost.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// SlotTimeout is how long a job waits for its slots before it fails.
	SlotTimeout time.Duration
	// CancelTimeout is how long tasks may take to stop before the job
	// ends without word from them.
	CancelTimeout time.Duration
}

// newJobMaster makes the JobMaster of a job; an error says what is wrong
// with the job's checkpoint or restart settings, or with the state it is
// to start from.
func newJobMaster(id string, jg *flinkpb.JobGraph, art *flinkpb.JobArtifact, rm ResourceManager, addr string, timing Timing, log hclog.Logger) (*JobMaster, error) {
	now := time.Now()
	jm := &JobMaster{
		id: id, jg: jg, artifact: art, rm: rm, addr: addr, timing: timing, log: log.With("job", id),
		state: JobCreated, timestamps: map[string]int64{JobCreated: now.UnixMilli()}, start: now,
		tms: map[string]*tmConn{}, changed: make(chan struct{}), stateSince: now, lastTrigger: now,
		slotDeadline: now.Add(timing.SlotTimeout),
		restarting:   map[int]*regionRestart{}, assigned: map[int]slotRef{},
	}
	var err error
	if jm.cp.settings, jm.restart, err = jobSettings(jg, id); err != nil {
		return nil, err
	}
	jm.regionFailover, _ = regionFailover(jg.Config) // jobSettings checked it
	jm.regions, jm.numRegions = graph.Regions(jg)
	jm.logical = graph.LogicalSlots(jg)
	jm.cp.pending = map[int64]*pendingCheckpoint{}
	jm.cp.next = 1
	if err := jm.initialState(); err != nil {
		return nil, err
	}
	jm.waitingLocked()
	for _, v := range jg.Vertices {
		row := make([]*subtask, v.Parallelism)
		for i := range row {
			row[i] = &subtask{state: TaskCreated, created: now, stamps: map[string]int64{TaskCreated: now.UnixMilli()}}
		}
		jm.tasks = append(jm.tasks, row)
	}
	return jm, nil
}

// initialState finds the state the job starts from: the newest checkpoint
// of an earlier run of the job (a JobManager that failed over), else the
// savepoint or checkpoint it was submitted with.
func (jm *JobMaster) initialState() error {
	s := jm.cp.settings
	if jm.checkpointing() {
		m, dir, err := latestCheckpoint(context.Background(), s.dir)
		if err != nil {
			return fmt.Errorf("looking for the job's checkpoints in %s: %w", s.dir, err)
		}
		if m != nil {
			jm.cp.completed = []*completedCheckpoint{{meta: m, dir: dir}}
			jm.cp.next = m.CheckpointID + 1
			jm.log.Info("resuming from the job's latest checkpoint", "checkpoint", m.CheckpointID, "path", dir)
			return jm.restoreLatestLocked()
		}
	}
	if s.restorePath == "" {
		return nil
	}
	m, dir, err := readMeta(context.Background(), s.restorePath)
	if err != nil {
		return err
	}
	rs, err := restoreFor(jm.jg, m, dir, s.allowNonRestored)
	if err != nil {
		return err
	}
	jm.cp.restore = rs
	jm.cp.next = m.CheckpointID + 1
	jm.cp.restored = &restoredInfo{id: m.CheckpointID, at: time.Now(), savepoint: m.Savepoint, path: dir}
	jm.cp.restores++
	return nil
}

// changedLocked marks a change: GetJob waiters and the run loop wake.
func (jm *JobMaster) changedLocked() {
	jm.version++
	close(jm.changed)
	jm.changed = make(chan struct{})
}

func (jm *JobMaster) setStateLocked(s string) {
	if jm.state == s {
		return
	}
	jm.log.Info("job state", "from", jm.state, "to", s)
	jm.state = s
	now := time.Now()
	jm.stateSince = now
	jm.timestamps[s] = now.UnixMilli()
	if JobTerminal(s) {
		jm.end = now
	}
	jm.changedLocked()
}

// waitingLocked sets the diagnostic of a job waiting for slots.
func (jm *JobMaster) waitingLocked() {
	jm.diagnostic = fmt.Sprintf("waiting for %d slots, %d offered", jm.jg.Slots, len(jm.slots))
	if jm.waitNote != "" {
		jm.diagnostic += "; " + jm.waitNote
	}
}

// noteWaiting adds what the ResourceManager's driver says to the
// diagnostic of a job still waiting for its slots.
func (jm *JobMaster) noteWaiting(note string) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.state != JobCreated || jm.waitNote == note {
		return
	}
	jm.waitNote = note
	jm.waitingLocked()
	jm.changedLocked()
}

// run drives the job to its end: slots, deployment, supervision, cleanup.
func (jm *JobMaster) run(ctx context.Context) {
	jm.rm.DeclareResourceRequirements(jm.id, jm.addr, int(jm.jg.Slots), jm)
	defer jm.cleanup()
	hb := time.NewTicker(jm.timing.HeartbeatInterval)
	defer hb.Stop()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	for {
		now := time.Now()
		var next time.Time // when the loop must look again
		jm.mu.Lock()
		changed := jm.changed
		state := jm.state
		// A restarting job waits for its tasks to stop and for the restart
		// delay, then for slots as a new job does.
		waiting := state == JobCreated || state == JobRestarting && jm.stoppedLocked(nil) && !now.Before(jm.restartAt)
		switch {
		case JobTerminal(state):
			jm.mu.Unlock()
			return
		case waiting && jm.placeLocked(nil) != nil:
			jm.mu.Unlock()
			jm.deploy(ctx, nil)
			continue
		case waiting && now.After(jm.slotDeadline):
			jm.failLocked("", fmt.Sprintf("could not get the %d slots the job needs within %s (it has %d): start more TaskManagers or lower the parallelism",
				jm.jg.Slots, jm.timing.SlotTimeout, len(jm.slots)))
		case state == JobRestarting && jm.stoppedLocked(nil):
			next = jm.restartAt
		case state == JobFailing || state == JobCancelling || state == JobRestarting:
			jm.endIfStoppedLocked()
		case state == JobRunning && len(jm.restarting) > 0:
			ready, when := jm.regionsReadyLocked(now)
			if len(ready) > 0 && jm.placeLocked(ready) != nil {
				jm.mu.Unlock()
				jm.deploy(ctx, ready)
				continue
			}
			next = when
		case state == JobRunning:
			jm.expireCheckpointsLocked(now)
			if due := jm.checkpointDueLocked(); !due.IsZero() {
				if !due.After(now) {
					if _, err := jm.triggerLocked(now, false, ""); err != nil {
						jm.lastTrigger = now // try again an interval later
					}
				} else {
					next = due
				}
			}
			if e := jm.nextExpiryLocked(); !e.IsZero() && (next.IsZero() || e.Before(next)) {
				next = e
			}
		}
		jm.mu.Unlock()
		if !next.IsZero() {
			wake.Reset(max(time.Until(next), time.Millisecond))
		}
		select {
		case <-ctx.Done():
			jm.mu.Lock()
			jm.failLocked("", "the JobManager shut down")
			if jm.failure == "" {
				jm.failure, jm.failureTime = "the JobManager shut down", time.Now()
			}
			jm.setStateLocked(JobFailed)
			jm.mu.Unlock()
			return
		case <-changed:
		case <-wake.C:
		case <-hb.C:
			jm.heartbeat(ctx)
		}
	}
}

// Cancel cancels the job for reason (what its end reports; "canceled"
// when empty) and returns its state before. Tasks that fail while the
// job is canceled are not its failure: they fail because it is.
func (jm *JobMaster) Cancel(reason string) string {
	if reason == "" {
		reason = "canceled"
	}
	jm.mu.Lock()
	before := jm.state
	if !JobTerminal(jm.state) && jm.state != JobCancelling {
		jm.endReason = reason
	}
	switch {
	case JobTerminal(jm.state) || jm.state == JobCancelling:
	case !jm.deployed || jm.state == JobRestarting && jm.stoppedLocked(nil):
		jm.abortCheckpointsLocked("the job was canceled")
		jm.setStateLocked(JobCanceled)
	default:
		jm.abortCheckpointsLocked("the job was canceled")
		jm.setStateLocked(JobCancelling)
		jm.mu.Unlock()
		jm.cancelInBackground(nil)
		return before
	}
	jm.mu.Unlock()
	return before
}

// stopLocked ends a job whose final savepoint, at path, completed: its
// tasks are stopped and it ends FINISHED.
func (jm *JobMaster) stopLocked(path string) {
	if jm.state != JobRunning {
		return
	}
	jm.stopping = true
	jm.endReason = "stopped with a savepoint at " + path
	jm.setStateLocked(JobCancelling)
	jm.cancelInBackground(nil)
}

// Details is the job as the Dispatcher reports it.
func (jm *JobMaster) Details(withGraph bool) *flinkpb.JobDetails {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	d := &flinkpb.JobDetails{
		JobId: jm.id, Name: jm.jg.Name, State: jm.state, StartTimeMs: jm.start.UnixMilli(), EndTimeMs: -1,
		Timestamps: map[string]int64{}, Failure: jm.failure, FailureTask: jm.failureTask, Diagnostic: jm.diagnostic, EndReason: jm.endReason,
		Version: jm.version, Slots: jm.jg.Slots,
	}
	if !jm.end.IsZero() {
		d.EndTimeMs = jm.end.UnixMilli()
	}
	if !jm.failureTime.IsZero() {
		d.FailureTimeMs = jm.failureTime.UnixMilli()
	}
	for k, v := range jm.timestamps {
		d.Timestamps[k] = v
	}
	if withGraph {
		d.JobGraph = jm.jg
	}
	d.Restarts = int32(jm.restarts)
	d.Checkpoints = jm.checkpointSummaryLocked()
	for vi, v := range jm.jg.Vertices {
		vd := &flinkpb.VertexDetails{Id: v.Id, Name: v.Name, Parallelism: v.Parallelism, MaxParallelism: v.MaxParallelism}
		for s, t := range jm.tasks[vi] {
			sd := &flinkpb.SubtaskDetails{Index: int32(s), Attempt: int32(t.attempt), State: t.state, TaskManagerId: t.tm, Endpoint: t.endpoint, StartTimeMs: -1, EndTimeMs: -1, Metrics: t.io,
				Timestamps: maps.Clone(t.stamps)}
			if !t.start.IsZero() {
				sd.StartTimeMs = t.start.UnixMilli()
			}
			if !t.end.IsZero() {
				sd.EndTimeMs = t.end.UnixMilli()
			}
			vd.Subtasks = append(vd.Subtasks, sd)
		}
		d.Vertices = append(d.Vertices, vd)
	}
	return d
}

// Wait returns when the job's version reaches min, d passes or ctx ends.
func (jm *JobMaster) Wait(ctx context.Context, min uint64, d time.Duration) { jm.wait(ctx, min, d) }

// wait returns once the job's version reaches min or d passes.
func (jm *JobMaster) wait(ctx context.Context, min uint64, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		jm.mu.Lock()
		v, ch := jm.version, jm.changed
		jm.mu.Unlock()
		if v >= min {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
