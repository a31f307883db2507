package jobmanager

// Task state: what TaskManagers report of the job's subtasks.

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/loom-project/loom/flinkrt/task"
	"github.com/loom-project/loom/proto/flinkpb"

	"google.golang.org/protobuf/proto"
)

type subtask struct {
	state string
	// attempt is the subtask's execution attempt: each restart of its
	// region deploys a new one.
	attempt    int
	tm         string
	endpoint   string
	start, end time.Time
	// created is when the attempt was made: with the job, or when the
	// attempt before it ended.
	created time.Time
	// stamps is when the attempt entered each state it reached (epoch
	// ms), one entry per execution state at most.
	stamps map[string]int64
	// io is the attempt's counts as its worker last reported them, at
	// ioAt.
	io   *flinkpb.IOMetrics
	ioAt time.Time
}

// The most user accumulators and metric values a report may carry, and
// the longest name of one; a report over them keeps none of that kind.
const (
	maxReportedAccumulators = task.MaxAccumulators
	maxReportedUserMetrics  = 12 * task.MaxUserMetrics
	maxReportedNameLen      = 512
)

// boundUserCounts drops a report's accumulators or user metrics when
// there are more, or longer named, than a worker makes.
func boundUserCounts(m *flinkpb.IOMetrics) {
	if len(m.Accumulators) > maxReportedAccumulators || slices.ContainsFunc(slices.Collect(maps.Keys(m.Accumulators)), tooLong) {
		m.Accumulators = nil
	}
	if len(m.UserMetrics) > maxReportedUserMetrics || slices.ContainsFunc(slices.Collect(maps.Keys(m.UserMetrics)), tooLong) {
		m.UserMetrics = nil
	}
}

func tooLong(name string) bool { return len(name) > maxReportedNameLen }

// checkpointed records the alignment and start delay of the attempt's
// latest checkpoint acknowledgement as its task metrics.
// The counts are copied, never changed in place: job details handed out
// share them.
func (t *subtask) checkpointed(alignment, startDelay time.Duration) {
	m := &flinkpb.IOMetrics{}
	if t.io != nil {
		m = proto.Clone(t.io).(*flinkpb.IOMetrics)
	}
	m.CheckpointAlignmentNs, m.CheckpointStartDelayNs = alignment.Nanoseconds(), startDelay.Nanoseconds()
	t.io = m
}

// enter moves the attempt to state at now.
func (t *subtask) enter(state string, now time.Time) {
	t.state = state
	if t.stamps == nil {
		t.stamps = map[string]int64{}
	}
	if _, ok := t.stamps[state]; !ok {
		t.stamps[state] = now.UnixMilli()
	}
}

// report records an attempt's counts, with their rates since the last
// report.
func (t *subtask) report(m *flinkpb.IOMetrics, now time.Time, final bool) {
	m = proto.Clone(m).(*flinkpb.IOMetrics)
	boundUserCounts(m)
	if t.io != nil {
		m.CheckpointAlignmentNs, m.CheckpointStartDelayNs = t.io.CheckpointAlignmentNs, t.io.CheckpointStartDelayNs
	}
	if prev := t.io; prev != nil && !final && !t.ioAt.IsZero() {
		if dt := now.Sub(t.ioAt).Seconds(); dt > 0 {
			m.RecordsInPerSecond = float64(m.RecordsIn-prev.RecordsIn) / dt
			m.RecordsOutPerSecond = float64(m.RecordsOut-prev.RecordsOut) / dt
			m.BytesInPerSecond = float64(m.BytesIn-prev.BytesIn) / dt
			m.BytesOutPerSecond = float64(m.BytesOut-prev.BytesOut) / dt
			m.BackPressuredMsPerSecond = min(float64(m.BackPressuredMs-prev.BackPressuredMs)/dt, 1000)
			m.IdleMsPerSecond = min(float64(m.IdleMs-prev.IdleMs)/dt, 1000)
		}
	} else {
		m.RecordsInPerSecond, m.RecordsOutPerSecond, m.BytesInPerSecond, m.BytesOutPerSecond = 0, 0, 0, 0
		m.BackPressuredMsPerSecond, m.IdleMsPerSecond = 0, 0
	}
	t.io, t.ioAt = m, now
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
		now := time.Now()
		t.enter(u.State, now)
		if u.Metrics != nil {
			t.report(u.Metrics, now, taskTerminal(u.State))
		}
		if taskTerminal(u.State) {
			t.end = now
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
