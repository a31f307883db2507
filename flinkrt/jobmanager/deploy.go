package jobmanager

// Placement and deployment: subtasks into offered slots, deployments
// to TaskManagers, and cancelling them.

import (
	"context"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/proto/flinkpb"
)

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
		// The attempt was created when the last one ended (or with the
		// job), and is scheduled and deploying now that it has its slot.
		created := t.created
		if created.IsZero() || jm.deployed {
			created = t.end
		}
		if created.IsZero() {
			created = now
		}
		*t = subtask{attempt: attempt, tm: sl.tm, endpoint: sl.dataAddr, start: now, created: created}
		t.stamps = map[string]int64{TaskCreated: created.UnixMilli()}
		t.enter(TaskScheduled, now)
		t.enter(TaskDeploying, now)
		req := perTM[sl.tm]
		if req == nil {
			req = &flinkpb.SubmitTasksRequest{JobId: jm.id, Attempt: int32(jm.restarts), Checkpointing: jm.checkpointing(), MinCheckpointId: jm.cp.next,
				JobName: jm.jg.Name, VertexIds: jm.vertexIDs(), VertexNames: jm.vertexNames()}
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
						st.end = time.Now()
						st.enter(TaskCanceled, st.end)
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
		t.enter(TaskCanceling, time.Now())
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

// vertexIDs and vertexNames are the job's vertices' ids and names, by
// index.
func (jm *JobMaster) vertexIDs() []string {
	out := make([]string, len(jm.jg.Vertices))
	for i, v := range jm.jg.Vertices {
		out[i] = v.Id
	}
	return out
}

func (jm *JobMaster) vertexNames() []string {
	out := make([]string, len(jm.jg.Vertices))
	for i, v := range jm.jg.Vertices {
		out[i] = v.Name
	}
	return out
}
