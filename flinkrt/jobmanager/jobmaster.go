package jobmanager

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"loom/flinkrt/graph"
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

// regionRestart is a region being restarted: its tasks are stopped, then
// after the restart delay it is deployed again once it has slots.
type regionRestart struct {
	since    time.Time // when its tasks were told to stop
	at       time.Time // when it may be deployed again
	deadline time.Time // when it fails the job without slots
}

type subtask struct {
	state string
	// attempt is the subtask's execution attempt: each restart of its
	// region deploys a new one.
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

// slotRef names an offered slot.
type slotRef struct {
	tm    string
	index int32
}

func (sl offeredSlot) ref() slotRef { return slotRef{sl.tm, sl.index} }

type tmConn struct {
	id, addr string
	release  func() // the pooled connection behind client
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
		jm.cancelInBackground(nil)
	}
}

// failoverLocked handles a failure the job may recover from: the subtasks
// failed (by vertex and subtask; none for a failure of the whole job)
// failed, or were lost with their TaskManager or worker. The restart
// strategy decides whether the job recovers, from its latest checkpoint;
// the failover strategy whether the whole job restarts or only the
// regions of the failed subtasks.
func (jm *JobMaster) failoverLocked(failed [][2]int, task, cause string) {
	if jm.state != JobRunning {
		if jm.state != JobRestarting {
			jm.failLocked(task, cause)
		}
		return
	}
	regions := jm.regionsToRestartLocked(failed)
	if regions != nil && len(regions) == 0 {
		return // the failed subtasks' regions are restarting already
	}
	now := time.Now()
	delay, ok := jm.restart.restart(now)
	if !ok {
		jm.failLocked(task, cause+" ("+jm.restart.describe()+")")
		jm.cancelInBackground(nil)
		return
	}
	jm.restarts++
	jm.failure, jm.failureTask, jm.failureTime = cause, task, now
	if regions == nil {
		jm.restarting = map[int]*regionRestart{}
		jm.restartAt = now.Add(delay)
		jm.slotDeadline = jm.restartAt.Add(jm.timing.SlotTimeout)
		jm.abortCheckpointsLocked("the job is restarting")
		jm.log.Warn("job failed; restarting", "cause", cause, "delay", delay, "restart", jm.restarts)
		jm.setStateLocked(JobRestarting)
		jm.cancelInBackground(nil)
		return
	}
	at := now.Add(delay)
	for r := range regions {
		jm.restarting[r] = &regionRestart{since: now, at: at, deadline: at.Add(jm.timing.SlotTimeout)}
	}
	jm.abortCheckpointsLocked("a region of the job is restarting")
	jm.log.Warn("task failed; restarting its region", "cause", cause, "delay", delay, "restart", jm.restarts,
		"regions", len(regions), "of", jm.numRegions)
	jm.changedLocked()
	jm.cancelInBackground(regions)
}

// regionsToRestartLocked is the regions a failure of the subtasks failed
// restarts: nil for the whole job (a failure of the whole job, the full
// failover strategy, or every region touched), empty when they are all
// restarting already.
func (jm *JobMaster) regionsToRestartLocked(failed [][2]int) map[int]bool {
	if !jm.regionFailover || len(failed) == 0 {
		return nil
	}
	regions := map[int]bool{}
	for _, f := range failed {
		if r := jm.regions[f[0]][f[1]]; jm.restarting[r] == nil {
			regions[r] = true
		}
	}
	if len(regions)+len(jm.restarting) >= jm.numRegions {
		return nil
	}
	return regions
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
	if !jm.deployed || jm.state == JobRestarting && jm.stoppedLocked(nil) {
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

// stoppedLocked says whether every task of the regions given (of the
// whole job when nil) has stopped.
func (jm *JobMaster) stoppedLocked(regions map[int]bool) bool {
	stopped := true
	jm.forEachTaskLocked(regions, func(_, _ int, t *subtask) {
		stopped = stopped && (taskTerminal(t.state) || t.state == TaskCreated)
	})
	return stopped
}

// endIfStoppedLocked ends a failing or cancelling job once every task has
// stopped, or when the cancel timeout has passed without word from them.
func (jm *JobMaster) endIfStoppedLocked() {
	if !jm.stoppedLocked(nil) && time.Since(jm.stateSince) < jm.timing.CancelTimeout {
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

// regionsReadyLocked is the restarting regions ready to be deployed
// again: their tasks stopped and their restart delay passed. It also says
// when to look again. A region without the slots it needs past its
// deadline fails the job; tasks that do not say they stopped within the
// cancel timeout are taken as gone.
func (jm *JobMaster) regionsReadyLocked(now time.Time) (map[int]bool, time.Time) {
	ready := map[int]bool{}
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for r, rr := range jm.restarting {
		if !jm.stoppedLocked(map[int]bool{r: true}) {
			if now.Sub(rr.since) < jm.timing.CancelTimeout {
				later(rr.since.Add(jm.timing.CancelTimeout))
				continue
			}
			jm.forEachTaskLocked(map[int]bool{r: true}, func(_, _ int, t *subtask) {
				if !taskTerminal(t.state) {
					t.state, t.end = TaskCanceled, now
				}
			})
		}
		switch {
		case now.Before(rr.at):
			later(rr.at)
		case now.After(rr.deadline):
			jm.failLocked("", fmt.Sprintf("could not get the slots a restarting region of the job needs within %s: start more TaskManagers or lower the parallelism", jm.timing.SlotTimeout))
			jm.cancelInBackground(nil)
			return nil, time.Time{}
		default:
			ready[r] = true
			later(rr.deadline)
		}
	}
	return ready, next
}

// forEachTaskLocked calls f on every subtask of the regions given (of the
// whole job when nil).
func (jm *JobMaster) forEachTaskLocked(regions map[int]bool, f func(vertex, index int, t *subtask)) {
	for vi, row := range jm.tasks {
		for s, t := range row {
			if regions == nil || regions[jm.regions[vi][s]] {
				f(vi, s, t)
			}
		}
	}
}

// placeLocked places the logical slots of the regions given (of the
// whole job when nil) in offered slots, and returns every logical slot's
// placement; nil when there are too few slots. A logical slot stays where
// it was while that slot is still held.
func (jm *JobMaster) placeLocked(regions map[int]bool) map[int]slotRef {
	held := map[slotRef]bool{}
	for _, sl := range jm.slots {
		held[sl.ref()] = true
	}
	placed := map[int]slotRef{}
	taken := map[slotRef]bool{}
	for l, ref := range jm.assigned {
		if held[ref] {
			placed[l], taken[ref] = ref, true
		}
	}
	need := map[int]bool{}
	jm.forEachTaskLocked(regions, func(vi, s int, _ *subtask) {
		if _, ok := placed[jm.logical[vi][s]]; !ok {
			need[jm.logical[vi][s]] = true
		}
	})
	var free []slotRef
	for _, sl := range jm.slots {
		if !taken[sl.ref()] {
			free = append(free, sl.ref())
		}
	}
	if len(free) < len(need) {
		return nil
	}
	sort.Slice(free, func(a, b int) bool {
		if free[a].tm != free[b].tm {
			return free[a].tm < free[b].tm
		}
		return free[a].index < free[b].index
	})
	logical := make([]int, 0, len(need))
	for l := range need {
		logical = append(logical, l)
	}
	sort.Ints(logical)
	for i, l := range logical {
		placed[l] = free[i]
	}
	return placed
}

// deploy deploys the regions given (the whole job when nil) into their
// slots and sends each TaskManager its part: a first deployment, a
// restart of the job, or a restart of regions while the others run on.
// Each deployed subtask starts from the latest completed checkpoint (or
// the state the job was submitted with) in a new execution attempt.
func (jm *JobMaster) deploy(ctx context.Context, regions map[int]bool) {
	jm.mu.Lock()
	if jm.deployed && (regions != nil || jm.state == JobRestarting) {
		if err := jm.restoreLatestLocked(); err != nil {
			jm.failLocked("", fmt.Sprintf("restoring the latest checkpoint: %v", err))
			jm.cancelInBackground(nil)
			jm.mu.Unlock()
			return
		}
	}
	placed := jm.placeLocked(regions)
	if placed == nil {
		jm.mu.Unlock()
		return
	}
	jm.assigned = placed
	byRef := map[slotRef]offeredSlot{}
	for _, sl := range jm.slots {
		byRef[sl.ref()] = sl
	}
	now := time.Now()
	restore := restoreIndex(jm.cp.restore)
	perTM := map[string]*flinkpb.SubmitTasksRequest{}
	var order []string
	jm.forEachTaskLocked(regions, func(vi, s int, t *subtask) {
		sl := byRef[placed[jm.logical[vi][s]]]
		attempt := t.attempt
		if jm.deployed {
			attempt++
		}
		*t = subtask{state: TaskDeploying, attempt: attempt, tm: sl.tm, endpoint: sl.dataAddr, start: now}
		req := perTM[sl.tm]
		if req == nil {
			req = &flinkpb.SubmitTasksRequest{JobId: jm.id, Attempt: int32(jm.restarts), Checkpointing: jm.checkpointing(), MinCheckpointId: jm.cp.next}
			if jm.cp.restore != nil {
				req.Restore = &flinkpb.RestoreState{CheckpointId: jm.cp.restore.CheckpointId, Path: jm.cp.restore.Path}
			}
			perTM[sl.tm] = req
			order = append(order, sl.tm)
		}
		req.Tasks = append(req.Tasks, &flinkpb.TaskDeployment{Vertex: int32(vi), Subtask: int32(s), Attempt: int32(attempt), Region: int32(jm.regions[vi][s])})
		if st := restore[[2]int{vi, s}]; st != nil {
			req.Restore.Subtasks = append(req.Restore.Subtasks, st)
		}
	})
	locations := make([]*flinkpb.SubtaskLocations, len(jm.tasks))
	for vi, row := range jm.tasks {
		locations[vi] = &flinkpb.SubtaskLocations{}
		for _, t := range row {
			locations[vi].Addresses = append(locations[vi].Addresses, t.endpoint)
		}
	}
	if regions == nil {
		jm.deployed = true
		jm.diagnostic = ""
		jm.lastTrigger = now
		jm.setStateLocked(JobRunning)
	} else {
		for r := range regions {
			delete(jm.restarting, r)
		}
		jm.log.Info("redeploying restarted regions", "regions", len(regions), "restart", jm.restarts)
		jm.changedLocked()
	}
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
			var failed [][2]int
			for _, rest := range order[i:] {
				for _, t := range perTM[rest].Tasks {
					if st := jm.tasks[t.Vertex][t.Subtask]; int(t.Attempt) == st.attempt && !taskTerminal(st.state) {
						st.state, st.end = TaskCanceled, time.Now()
						failed = append(failed, [2]int{int(t.Vertex), int(t.Subtask)})
					}
				}
			}
			jm.failoverLocked(failed, "", fmt.Sprintf("deploying to TaskManager %s at %s: %v", id, conns[id].addr, status.Convert(err).Message()))
			jm.changedLocked()
			jm.mu.Unlock()
			break
		}
	}
	// A cancel that came while tasks were being deployed (of the job, or
	// of a region deployed here that failed again) may have reached a
	// TaskManager before them: cancel again.
	jm.mu.Lock()
	stopping := jm.state == JobFailing || jm.state == JobCancelling || jm.state == JobRestarting
	again := map[int]bool{}
	for r := range regions {
		if jm.restarting[r] != nil {
			again[r] = true
		}
	}
	jm.mu.Unlock()
	switch {
	case stopping:
		jm.cancelTasks(ctx, nil)
	case len(again) > 0:
		jm.cancelTasks(ctx, again)
	}
}

// restoreIndex indexes a restore's subtask states by vertex and subtask.
func restoreIndex(rs *flinkpb.RestoreState) map[[2]int]*flinkpb.SubtaskState {
	out := map[[2]int]*flinkpb.SubtaskState{}
	if rs != nil {
		for _, st := range rs.Subtasks {
			out[[2]int{int(st.Vertex), int(st.Subtask)}] = st
		}
	}
	return out
}

// cancelTasks tells the TaskManagers running tasks of the regions given
// (of the whole job when nil) to stop them.
func (jm *JobMaster) cancelTasks(ctx context.Context, regions map[int]bool) {
	jm.mu.Lock()
	perTM := map[string]*flinkpb.CancelTasksRequest{}
	jm.forEachTaskLocked(regions, func(vi, s int, t *subtask) {
		if taskTerminal(t.state) || t.state == TaskCreated {
			return
		}
		t.state = TaskCanceling
		req := perTM[t.tm]
		if req == nil {
			req = &flinkpb.CancelTasksRequest{JobId: jm.id, Attempt: int32(jm.restarts)}
			perTM[t.tm] = req
		}
		req.Tasks = append(req.Tasks, &flinkpb.TaskDeployment{Vertex: int32(vi), Subtask: int32(s), Attempt: int32(t.attempt)})
	})
	conns := map[*tmConn]*flinkpb.CancelTasksRequest{}
	for tm, req := range perTM {
		if c := jm.tms[tm]; c != nil {
			conns[c] = req
		}
	}
	jm.changedLocked()
	jm.mu.Unlock()
	for c, req := range conns {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _ = c.client.CancelJob(cctx, req)
		cancel()
	}
}

// cancelInBackground runs cancelTasks without holding up the caller (who
// may hold jm.mu); cleanup waits for it.
func (jm *JobMaster) cancelInBackground(regions map[int]bool) {
	jm.background.Add(1)
	go func() {
		defer jm.background.Done()
		jm.cancelTasks(context.Background(), regions)
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
	// All at once: one slow TaskManager does not hold up the others'
	// heartbeats, however many there are.
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jm.heartbeatOne(ctx, c)
		}()
	}
	wg.Wait()
}

func (jm *JobMaster) heartbeatOne(ctx context.Context, c *tmConn) {
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
		return
	case now.Sub(c.lastOK) > jm.timing.HeartbeatTimeout:
		jm.mu.Unlock()
		jm.TaskManagerLost(c.id, fmt.Sprintf("TaskManager %s at %s is unreachable: no heartbeat answer for %s (%v)", c.id, c.addr, jm.timing.HeartbeatTimeout, status.Convert(err).Message()))
		return
	}
	jm.mu.Unlock()
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
	failed := jm.failTasksOnLocked(tmID)
	if jm.state == JobCreated || jm.state == JobRestarting {
		// Nothing runs there any more: wait for other slots.
		jm.log.Warn("a TaskManager offering slots was lost; waiting for others", "tm", tmID, "cause", cause)
		jm.waitingLocked()
		jm.changedLocked()
		return
	}
	if len(failed) > 0 {
		jm.failoverLocked(failed, "", cause)
	}
	jm.changedLocked()
}

// failTasksOnLocked marks the tasks running on TaskManager tmID failed
// (their TaskManager or worker is gone) and returns them.
func (jm *JobMaster) failTasksOnLocked(tmID string) [][2]int {
	var failed [][2]int
	now := time.Now()
	jm.forEachTaskLocked(nil, func(vi, s int, t *subtask) {
		if t.tm == tmID && !taskTerminal(t.state) && t.state != TaskCreated {
			t.state, t.end = TaskFailed, now
			failed = append(failed, [2]int{vi, s})
		}
	})
	return failed
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
		c.release()
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
		c.release()
	}
	jm.rm.ReleaseJob(jm.id)
}

// Cancel cancels the job and returns its state before.
func (jm *JobMaster) Cancel() string {
	jm.mu.Lock()
	before := jm.state
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

// stopLocked ends a job whose final savepoint completed: its tasks are
// stopped and it ends FINISHED.
func (jm *JobMaster) stopLocked() {
	if jm.state != JobRunning {
		return
	}
	jm.stopping = true
	jm.setStateLocked(JobCancelling)
	jm.cancelInBackground(nil)
}

// offerSlots takes the slots a TaskManager offers, up to the job's need.
func (jm *JobMaster) offerSlots(req *flinkpb.OfferSlotsRequest) ([]int32, error) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.state != JobCreated && jm.state != JobRestarting && jm.state != JobRunning {
		return nil, nil
	}
	c := jm.tms[req.TaskManagerId]
	if c == nil {
		conn, release, err := jm.conns.Get(req.TaskManagerAddress)
		if err != nil {
			return nil, err
		}
		c = &tmConn{id: req.TaskManagerId, addr: req.TaskManagerAddress, release: release, client: flinkpb.NewTaskExecutorClient(conn), lastOK: time.Now()}
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
			jm.failoverLocked([][2]int{{int(u.Vertex), int(u.Subtask)}}, name, u.Failure)
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
	failed := jm.failTasksOnLocked(tmID)
	jm.dropTaskManagerLocked(tmID)
	// A worker that ends before the job runs fails it (it cannot start the
	// job's program); one of a running job fails the tasks it ran.
	if len(failed) > 0 || jm.state != JobRunning {
		jm.failoverLocked(failed, "", msg)
	}
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
	d.Restarts = int32(jm.restarts)
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
