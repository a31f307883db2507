package jobmanager

// Task state: what TaskManagers report of the job's subtasks.

import (
	"fmt"
	"time"

	"loom/proto/flinkpb"
)

type subtask struct {
	state string
	// attempt is the subtask's execution attempt: each restart of its
	// region deploys a new one.
	attempt    int
	tm         string
	endpoint   string
	start, end time.Time
	// io is the attempt's counts as its worker last reported them.
	io *flinkpb.IOMetrics
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
		if u.Metrics != nil {
			t.io = u.Metrics
		}
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
