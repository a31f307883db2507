package jobmanager

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"loom/flinkrt/resourcemanager"
	"loom/proto/flinkpb"
	"loom/rpc"
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

	mu          sync.Mutex
	state       string
	timestamps  map[string]int64
	start, end  time.Time
	tasks       [][]*subtask // by vertex, subtask
	slots       []offeredSlot
	tms         map[string]*tmConn
	failure     string
	failureTask string
	failureTime time.Time
	diagnostic  string
	waitNote    string // what the ResourceManager's driver says about missing slots
	deployed    bool
	version     uint64
	changed     chan struct{}
	background  sync.WaitGroup // cancels in flight; cleanup waits for them
	stateSince  time.Time

	// attempt is the execution attempt: each restart deploys a new one.
	attempt   int
	restart   restartStrategy
	restartAt time.Time // when a restarting job may deploy again
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

type subtask struct {
	state      string
	attempt    int
	tm         string
	endpoint   string
	start, end time.Time
}

type offeredSlot struct {
	tm, tmAddr, dataAddr string
	index                int32
	alloc                string
}

type tmConn struct {
	id, addr string
	conn     *grpc.ClientConn
	client   flinkpb.TaskExecutorClient
	lastOK   time.Time
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
	}
	var err error
	if jm.cp.settings, jm.restart, err = jobSettings(jg, id); err != nil {
		return nil, err
	}
	jm.cp.pending = map[int64]*pendingCheckpoint{}
	jm.cp.next = 1
	if err := jm.initialState(); err != nil {
		return nil, err
	}
	jm.waitingLocked()
	for _, v := range jg.Vertices {
		row := make([]*subtask, v.Parallelism)
		for i := range row {
			row[i] = &subtask{state: TaskCreated}
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
		m, dir, err := latestCheckpoint(s.dir)
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
	m, dir, err := readMeta(s.restorePath)
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

// Fail fails the job with cause as its root cause, as a failed task
// would.
func (jm *JobMaster) Fail(cause string) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	failing := jm.state == JobRunning
	jm.failLocked("", cause)
	jm.changedLocked()
	if failing {
		jm.cancelInBackground()
	}
}

// failoverLocked handles a failure the job may recover from: a task
// failed, a TaskManager or worker was lost. The restart strategy decides
// whether the job restarts (from its latest checkpoint) or fails.
func (jm *JobMaster) failoverLocked(task, cause string) {
	if jm.state != JobRunning {
		if jm.state != JobRestarting {
			jm.failLocked(task, cause)
		}
		return
	}
	now := time.Now()
	delay, ok := jm.restart.restart(now)
	if !ok {
		jm.failLocked(task, cause+" ("+jm.restart.describe()+")")
		jm.cancelInBackground()
		return
	}
	jm.failure, jm.failureTask, jm.failureTime = cause, task, now
	jm.restartAt = now.Add(delay)
	jm.slotDeadline = jm.restartAt.Add(jm.timing.SlotTimeout)
	jm.abortCheckpointsLocked("the job is restarting")
	jm.log.Warn("job failed; restarting", "cause", cause, "delay", delay, "attempt", jm.attempt+1)
	jm.setStateLocked(JobRestarting)
	jm.cancelInBackground()
}

// failLocked fails the job with its root cause, the first failure.
func (jm *JobMaster) failLocked(task, cause string) {
	if JobTerminal(jm.state) || jm.state == JobFailing {
		return
	}
	jm.abortCheckpointsLocked("the job is failing")
	if jm.failure == "" {
		jm.failure, jm.failureTask, jm.failureTime = cause, task, time.Now()
	}
	if jm.state == JobCancelling {
		return
	}
	if !jm.deployed || jm.state == JobRestarting && jm.stoppedLocked() {
		jm.setStateLocked(JobFailed)
		return
	}
	jm.setStateLocked(JobFailing)
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
		waiting := state == JobCreated || state == JobRestarting && jm.stoppedLocked() && !now.Before(jm.restartAt)
		switch {
		case JobTerminal(state):
			jm.mu.Unlock()
			return
		case waiting && len(jm.slots) >= int(jm.jg.Slots):
			jm.mu.Unlock()
			jm.deploy(ctx)
			continue
		case waiting && now.After(jm.slotDeadline):
			jm.failLocked("", fmt.Sprintf("could not get the %d slots the job needs within %s (it has %d): start more TaskManagers or lower the parallelism",
				jm.jg.Slots, jm.timing.SlotTimeout, len(jm.slots)))
		case state == JobRestarting && jm.stoppedLocked():
			next = jm.restartAt
		case state == JobFailing || state == JobCancelling || state == JobRestarting:
			jm.endIfStoppedLocked()
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

// stoppedLocked says whether every task has stopped.
func (jm *JobMaster) stoppedLocked() bool {
	for _, row := range jm.tasks {
		for _, t := range row {
			if !taskTerminal(t.state) && t.state != TaskCreated {
				return false
			}
		}
	}
	return true
}

// endIfStoppedLocked ends a failing or cancelling job once every task has
// stopped, or when the cancel timeout has passed without word from them.
func (jm *JobMaster) endIfStoppedLocked() {
	if !jm.stoppedLocked() && time.Since(jm.stateSince) < jm.timing.CancelTimeout {
		return
	}
	now := time.Now()
	for _, row := range jm.tasks {
		for _, t := range row {
			if !taskTerminal(t.state) {
				t.state, t.end = TaskCanceled, now
			}
		}
	}
	switch {
	case jm.state == JobRestarting:
		// Tasks that did not say they stopped are taken as gone.
	case jm.state == JobFailing:
		jm.setStateLocked(JobFailed)
	case jm.stopping:
		jm.setStateLocked(JobFinished)
	default:
		jm.setStateLocked(JobCanceled)
	}
}

// deploy places every subtask in a slot and sends each TaskManager its
// part. Subtask i of every vertex of a slot sharing group shares the
// group's slot i.
func (jm *JobMaster) deploy(ctx context.Context) {
	jm.mu.Lock()
	if jm.state == JobRestarting {
		jm.attempt++
		if err := jm.restoreLatestLocked(); err != nil {
			jm.failLocked("", fmt.Sprintf("restoring the latest checkpoint: %v", err))
			jm.mu.Unlock()
			return
		}
		now := time.Now()
		for _, row := range jm.tasks {
			for _, t := range row {
				*t = subtask{state: TaskCreated, attempt: jm.attempt, start: now}
			}
		}
	}
	restore := jm.cp.restore
	slots := append([]offeredSlot(nil), jm.slots...)
	sort.Slice(slots, func(a, b int) bool {
		if slots[a].tm != slots[b].tm {
			return slots[a].tm < slots[b].tm
		}
		return slots[a].index < slots[b].index
	})
	groupBase := map[string]int{}
	next := 0
	locations := make([]*flinkpb.SubtaskLocations, len(jm.jg.Vertices))
	perTM := map[string]*flinkpb.SubmitTasksRequest{}
	var order []string
	for vi, v := range jm.jg.Vertices {
		base, ok := groupBase[v.SlotSharingGroup]
		if !ok {
			base = next
			groupBase[v.SlotSharingGroup] = base
			for _, w := range jm.jg.Vertices {
				if w.SlotSharingGroup == v.SlotSharingGroup {
					next = max(next, base+int(w.Parallelism))
				}
			}
		}
		locations[vi] = &flinkpb.SubtaskLocations{}
		for s := 0; s < int(v.Parallelism); s++ {
			sl := slots[base+s]
			t := jm.tasks[vi][s]
			t.state, t.tm, t.endpoint, t.start = TaskDeploying, sl.tm, sl.dataAddr, time.Now()
			locations[vi].Addresses = append(locations[vi].Addresses, sl.dataAddr)
			req := perTM[sl.tm]
			if req == nil {
				req = &flinkpb.SubmitTasksRequest{JobId: jm.id, Attempt: int32(jm.attempt), Checkpointing: jm.checkpointing(), Restore: restore}
				perTM[sl.tm] = req
				order = append(order, sl.tm)
			}
			req.Tasks = append(req.Tasks, &flinkpb.TaskDeployment{Vertex: int32(vi), Subtask: int32(s), Attempt: int32(jm.attempt)})
		}
	}
	jm.deployed = true
	jm.diagnostic = ""
	jm.lastTrigger = time.Now()
	jm.setStateLocked(JobRunning)
	conns := map[string]*tmConn{}
	for _, id := range order {
		conns[id] = jm.tms[id]
		perTM[id].Locations = locations
	}
	jm.mu.Unlock()

	for i, id := range order {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := conns[id].client.SubmitTasks(dctx, perTM[id])
		cancel()
		if err != nil {
			jm.mu.Lock()
			// Tasks never deployed will not report: they are canceled now.
			for _, rest := range order[i:] {
				for _, t := range perTM[rest].Tasks {
					jm.tasks[t.Vertex][t.Subtask].state = TaskCanceled
					jm.tasks[t.Vertex][t.Subtask].end = time.Now()
				}
			}
			jm.failoverLocked("", fmt.Sprintf("deploying to TaskManager %s at %s: %v", id, conns[id].addr, status.Convert(err).Message()))
			jm.changedLocked()
			jm.mu.Unlock()
			break
		}
	}
	// A cancel that came while tasks were being deployed may have reached
	// a TaskManager before them: cancel again.
	jm.mu.Lock()
	stopping := jm.state == JobFailing || jm.state == JobCancelling || jm.state == JobRestarting
	jm.mu.Unlock()
	if stopping {
		jm.cancelTasks(ctx)
	}
}

// cancelTasks tells every TaskManager running the job's tasks to stop
// them.
func (jm *JobMaster) cancelTasks(ctx context.Context) {
	jm.mu.Lock()
	var conns []*tmConn
	for _, c := range jm.tms {
		conns = append(conns, c)
	}
	for _, row := range jm.tasks {
		for _, t := range row {
			if !taskTerminal(t.state) && t.state != TaskCreated {
				t.state = TaskCanceling
			}
		}
	}
	req := &flinkpb.CancelTasksRequest{JobId: jm.id, Attempt: int32(jm.attempt)}
	jm.changedLocked()
	jm.mu.Unlock()
	for _, c := range conns {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _ = c.client.CancelJob(cctx, req)
		cancel()
	}
}

// cancelInBackground runs cancelTasks without holding up the caller (who
// may hold jm.mu); cleanup waits for it.
func (jm *JobMaster) cancelInBackground() {
	jm.background.Add(1)
	go func() {
		defer jm.background.Done()
		jm.cancelTasks(context.Background())
	}()
}

// heartbeat asks each TaskManager of the job whether it still holds the
// job's slots; one silent past the timeout is lost.
func (jm *JobMaster) heartbeat(ctx context.Context) {
	jm.mu.Lock()
	var conns []*tmConn
	for _, c := range jm.tms {
		conns = append(conns, c)
	}
	jm.mu.Unlock()
	for _, c := range conns {
		hctx, cancel := context.WithTimeout(ctx, jm.timing.HeartbeatInterval)
		_, err := c.client.Heartbeat(hctx, &flinkpb.JobMasterHeartbeat{JobId: jm.id})
		cancel()
		now := time.Now()
		jm.mu.Lock()
		switch {
		case err == nil:
			c.lastOK = now
		case gone(err):
			jm.mu.Unlock()
			cause := fmt.Sprintf("TaskManager %s at %s is gone: its address refuses connections", c.id, c.addr)
			jm.TaskManagerLost(c.id, cause)
			jm.rm.RemoveTaskManager(c.id, cause)
			continue
		case now.Sub(c.lastOK) > jm.timing.HeartbeatTimeout:
			jm.mu.Unlock()
			jm.TaskManagerLost(c.id, fmt.Sprintf("TaskManager %s at %s is unreachable: no heartbeat answer for %s (%v)", c.id, c.addr, jm.timing.HeartbeatTimeout, status.Convert(err).Message()))
			continue
		}
		jm.mu.Unlock()
	}
}

// gone says whether a heartbeat's error means the TaskManager's process is
// gone: its host answered that nothing listens on the port. Anything else
// (a timeout, a partition) waits for the heartbeat timeout.
func gone(err error) bool {
	return status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "connection refused")
}

// TaskManagerLost fails the job's tasks on a TaskManager that is gone.
func (jm *JobMaster) TaskManagerLost(tmID, cause string) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if _, ok := jm.tms[tmID]; !ok || JobTerminal(jm.state) {
		return
	}
	jm.dropTaskManagerLocked(tmID)
	now := time.Now()
	for _, row := range jm.tasks {
		for _, t := range row {
			if t.tm == tmID && !taskTerminal(t.state) && t.state != TaskCreated {
				t.state, t.end = TaskFailed, now
			}
		}
	}
	if jm.state == JobCreated || jm.state == JobRestarting {
		// Nothing runs there any more: wait for other slots.
		jm.log.Warn("a TaskManager offering slots was lost; waiting for others", "tm", tmID, "cause", cause)
		jm.waitingLocked()
		jm.changedLocked()
		return
	}
	jm.failoverLocked("", cause)
	jm.changedLocked()
}

// dropTaskManagerLocked forgets a TaskManager the job lost, and its slots.
func (jm *JobMaster) dropTaskManagerLocked(tmID string) {
	kept := jm.slots[:0]
	for _, sl := range jm.slots {
		if sl.tm != tmID {
			kept = append(kept, sl)
		}
	}
	jm.slots = kept
	if c := jm.tms[tmID]; c != nil {
		c.conn.Close()
		delete(jm.tms, tmID)
	}
}

// cleanup frees the job's slots on its TaskManagers and at the
// ResourceManager.
func (jm *JobMaster) cleanup() {
	jm.background.Wait()
	jm.mu.Lock()
	conns := jm.tms
	jm.tms = map[string]*tmConn{}
	reason := "job " + jm.state
	jm.mu.Unlock()
	for _, c := range conns {
		fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = c.client.FreeSlots(fctx, &flinkpb.FreeSlotsRequest{JobId: jm.id, Reason: reason})
		cancel()
		c.conn.Close()
	}
	jm.rm.ReleaseJob(jm.id)
}

// Cancel cancels the job and returns its state before.
func (jm *JobMaster) Cancel() string {
	jm.mu.Lock()
	before := jm.state
	switch {
	case JobTerminal(jm.state) || jm.state == JobCancelling:
	case !jm.deployed || jm.state == JobRestarting && jm.stoppedLocked():
		jm.abortCheckpointsLocked("the job was canceled")
		jm.setStateLocked(JobCanceled)
	default:
		jm.abortCheckpointsLocked("the job was canceled")
		jm.setStateLocked(JobCancelling)
		jm.mu.Unlock()
		jm.cancelInBackground()
		return before
	}
	jm.mu.Unlock()
	return before
}

// stopLocked ends a job whose final savepoint completed: its tasks are
// stopped and it ends FINISHED.
func (jm *JobMaster) stopLocked() {
	if jm.state != JobRunning {
		return
	}
	jm.stopping = true
	jm.setStateLocked(JobCancelling)
	jm.cancelInBackground()
}

// offerSlots takes the slots a TaskManager offers, up to the job's need.
func (jm *JobMaster) offerSlots(req *flinkpb.OfferSlotsRequest) ([]int32, error) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.state != JobCreated && jm.state != JobRestarting {
		return nil, nil
	}
	c := jm.tms[req.TaskManagerId]
	if c == nil {
		conn, err := grpc.NewClient(req.TaskManagerAddress, rpc.DialOptions()...)
		if err != nil {
			return nil, err
		}
		c = &tmConn{id: req.TaskManagerId, addr: req.TaskManagerAddress, conn: conn, client: flinkpb.NewTaskExecutorClient(conn), lastOK: time.Now()}
		jm.tms[req.TaskManagerId] = c
	}
	var accepted []int32
	for _, s := range req.Slots {
		if len(jm.slots) >= int(jm.jg.Slots) {
			break
		}
		dup := false
		for _, have := range jm.slots {
			if have.tm == req.TaskManagerId && have.index == s.Index {
				dup = true
			}
		}
		if dup {
			continue
		}
		jm.slots = append(jm.slots, offeredSlot{tm: req.TaskManagerId, tmAddr: req.TaskManagerAddress, dataAddr: req.DataAddress, index: s.Index, alloc: s.AllocationId})
		accepted = append(accepted, s.Index)
	}
	jm.waitingLocked()
	jm.changedLocked()
	return accepted, nil
}

// updateTasks records task states from a TaskManager.
func (jm *JobMaster) updateTasks(req *flinkpb.TaskStateUpdates) error {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	for _, u := range req.Updates {
		if u.Vertex < 0 || int(u.Vertex) >= len(jm.tasks) || u.Subtask < 0 || int(u.Subtask) >= len(jm.tasks[u.Vertex]) {
			return fmt.Errorf("job %s has no subtask %d of vertex %d", jm.id, u.Subtask, u.Vertex)
		}
		t := jm.tasks[u.Vertex][u.Subtask]
		if t.tm != req.TaskManagerId || int(u.Attempt) != t.attempt || taskTerminal(t.state) {
			continue
		}
		t.state = u.State
		if taskTerminal(u.State) {
			t.end = time.Now()
		}
		v := jm.jg.Vertices[u.Vertex]
		name := fmt.Sprintf("%s (%d/%d)", v.Name, u.Subtask+1, v.Parallelism)
		switch u.State {
		case TaskFailed:
			jm.failoverLocked(name, u.Failure)
		case TaskFinished:
			// A finished task takes no further checkpoints.
			for _, p := range jm.cp.pending {
				if _, acked := p.acks[[2]int{int(u.Vertex), int(u.Subtask)}]; !acked {
					jm.failCheckpointLocked(p, name+" finished before it took its part", false)
				}
			}
		}
	}
	if jm.state == JobRunning && jm.allTasks(TaskFinished) {
		jm.dropCheckpointsLocked()
		jm.setStateLocked(JobFinished)
	}
	jm.changedLocked()
	return nil
}

func (jm *JobMaster) allTasks(state string) bool {
	for _, row := range jm.tasks {
		for _, t := range row {
			if t.state != state {
				return false
			}
		}
	}
	return true
}

// workerFailed fails the job because a worker could not start or died.
func (jm *JobMaster) workerFailed(tmID, msg string) {
	// The TaskManager freed the job's slots when its worker ended: the
	// ResourceManager gives them (or others) to the job again. It is told
	// without the job's lock, which its own calls into the job take.
	defer jm.rm.SlotsFreed(jm.id, tmID)
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if JobTerminal(jm.state) {
		return
	}
	now := time.Now()
	for _, row := range jm.tasks {
		for _, t := range row {
			if t.tm == tmID && !taskTerminal(t.state) {
				t.state, t.end = TaskFailed, now
			}
		}
	}
	jm.dropTaskManagerLocked(tmID)
	jm.failoverLocked("", msg)
	jm.changedLocked()
}

// Details is the job as the Dispatcher reports it.
func (jm *JobMaster) Details(withGraph bool) *flinkpb.JobDetails {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	d := &flinkpb.JobDetails{
		JobId: jm.id, Name: jm.jg.Name, State: jm.state, StartTimeMs: jm.start.UnixMilli(), EndTimeMs: -1,
		Timestamps: map[string]int64{}, Failure: jm.failure, FailureTask: jm.failureTask, Diagnostic: jm.diagnostic,
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
	d.Restarts = int32(jm.attempt)
	d.Checkpoints = jm.checkpointSummaryLocked()
	for vi, v := range jm.jg.Vertices {
		vd := &flinkpb.VertexDetails{Id: v.Id, Name: v.Name, Parallelism: v.Parallelism, MaxParallelism: v.MaxParallelism}
		for s, t := range jm.tasks[vi] {
			sd := &flinkpb.SubtaskDetails{Index: int32(s), Attempt: int32(t.attempt), State: t.state, TaskManagerId: t.tm, Endpoint: t.endpoint, StartTimeMs: -1, EndTimeMs: -1}
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
