package jobmanager

import (
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/loom-project/loom/flinkrt/task"
	"github.com/loom-project/loom/proto/flinkpb"
)

// The states whose durations Flink's vertex views show, in the order an
// attempt goes through them.
var durationStates = []string{TaskCreated, TaskScheduled, TaskDeploying, TaskInitializing, TaskRunning}

// stateOrder ranks execution states: an attempt only moves to a later one.
var stateOrder = map[string]int{
	TaskCreated: 0, TaskScheduled: 1, TaskDeploying: 2, TaskInitializing: 3, TaskRunning: 4,
	TaskFinished: 5, TaskCanceling: 5, TaskCanceled: 6, TaskFailed: 6,
}

// stateEnd is when an attempt left state: the first later state it
// entered, or 0 when it has not.
func stateEnd(t *flinkpb.SubtaskDetails, state string) int64 {
	var end int64
	for s, ts := range t.Timestamps {
		if stateOrder[s] > stateOrder[state] && ts > 0 && (end == 0 || ts < end) {
			end = ts
		}
	}
	return end
}

// statusDuration is how long an attempt spent in each state, as Flink's
// StatusDurationUtils: -1 for a state it never entered, until now for
// the one it is in.
func statusDuration(t *flinkpb.SubtaskDetails, now int64) map[string]int64 {
	out := map[string]int64{}
	for _, s := range durationStates {
		start, end := t.Timestamps[s], stateEnd(t, s)
		if t.State == s {
			end = now
		}
		if start == 0 || end == 0 {
			out[s] = -1
			continue
		}
		out[s] = end - start
	}
	return out
}

// accumulatedBusy is the time an attempt ran neither waiting for input
// nor for credit, from when it started RUNNING.
func accumulatedBusy(t *flinkpb.SubtaskDetails, now int64) int64 {
	start := t.Timestamps[TaskRunning]
	if start == 0 || t.Metrics == nil {
		return 0
	}
	end := stateEnd(t, TaskRunning)
	if t.State == TaskRunning || end == 0 {
		end = now
	}
	return max(end-start-t.Metrics.IdleMs-t.Metrics.BackPressuredMs, 0)
}

// subtaskIO is one attempt's IOMetricsInfo, with its accumulated times.
func subtaskIO(t *flinkpb.SubtaskDetails, now int64) obj {
	m := ioMetrics(t)
	var bp, idle int64
	if t.Metrics != nil {
		bp, idle = t.Metrics.BackPressuredMs, t.Metrics.IdleMs
	}
	m["accumulated-backpressured-time"] = bp
	m["accumulated-idle-time"] = idle
	m["accumulated-busy-time"] = float64(accumulatedBusy(t, now))
	return m
}

// statistics is Flink's MetricsStatistics of values: min, max, avg
// (truncated), sum and the percentiles its dashboard shows.
func statistics(values []int64) obj {
	out := obj{"min": int64(0), "max": int64(0), "avg": int64(0), "sum": int64(0), "median": int64(0), "p25": int64(0), "p75": int64(0), "p95": int64(0)}
	if len(values) == 0 {
		return out
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	var sum int64
	for _, v := range sorted {
		sum += v
	}
	out["min"], out["max"], out["sum"], out["avg"] = sorted[0], sorted[len(sorted)-1], sum, sum/int64(len(sorted))
	for name, p := range map[string]float64{"median": 50, "p25": 25, "p75": 75, "p95": 95} {
		out[name] = int64(task.Percentile(sorted, p))
	}
	return out
}

// aggregated is Flink's AggregatedTaskDetailsInfo of attempts: their IO
// metrics and state durations, each as statistics.
func aggregated(subtasks []*flinkpb.SubtaskDetails, now int64) obj {
	metrics := map[string][]int64{}
	durations := map[string][]int64{}
	for _, t := range subtasks {
		m := t.Metrics
		if m == nil {
			m = &flinkpb.IOMetrics{}
		}
		for name, v := range map[string]int64{
			"read-bytes": m.BytesIn, "write-bytes": m.BytesOut, "read-records": m.RecordsIn, "write-records": m.RecordsOut,
			"accumulated-idle-time": m.IdleMs, "accumulated-backpressured-time": m.BackPressuredMs, "accumulated-busy-time": accumulatedBusy(t, now),
		} {
			metrics[name] = append(metrics[name], v)
		}
		for s, d := range statusDuration(t, now) {
			durations[s] = append(durations[s], d)
		}
	}
	mo, do := obj{}, obj{}
	for _, name := range []string{"read-bytes", "write-bytes", "read-records", "write-records", "accumulated-idle-time", "accumulated-backpressured-time", "accumulated-busy-time"} {
		mo[name] = statistics(metrics[name])
	}
	for _, s := range durationStates {
		do[s] = statistics(durations[s])
	}
	return obj{"metrics": mo, "status-duration": do}
}

func (jm *JobManager) restVertex(w http.ResponseWriter, _ *http.Request, d *flinkpb.JobDetails, v *flinkpb.VertexDetails) {
	now := time.Now().UnixMilli()
	subtasks := []obj{}
	for _, t := range v.Subtasks {
		subtasks = append(subtasks, obj{
			"subtask": t.Index, "status": t.State, "attempt": t.Attempt, "endpoint": t.Endpoint,
			// start_time is the spelling the dashboard's template reads.
			"start-time": t.StartTimeMs, "start_time": t.StartTimeMs, "end-time": t.EndTimeMs, "duration": duration(t.StartTimeMs, t.EndTimeMs),
			"metrics": subtaskIO(t, now), "taskmanager-id": t.TaskManagerId, "status-duration": statusDuration(t, now),
		})
	}
	writeJSON(w, http.StatusOK, obj{"id": v.Id, "name": v.Name, "parallelism": v.Parallelism, "maxParallelism": v.MaxParallelism, "now": now,
		"subtasks": subtasks, "aggregated": aggregated(v.Subtasks, now)})
}

// restSubtaskTimes answers when each subtask's current attempt entered
// each execution state (0 for those it has not), the Timeline's data.
func (jm *JobManager) restSubtaskTimes(w http.ResponseWriter, _ *http.Request, d *flinkpb.JobDetails, v *flinkpb.VertexDetails) {
	now := time.Now().UnixMilli()
	subtasks := []obj{}
	for _, t := range v.Subtasks {
		stamps := obj{}
		for _, s := range TaskStates {
			stamps[s] = t.Timestamps[s]
		}
		start := t.StartTimeMs
		if start < 0 {
			start = t.Timestamps[TaskCreated]
		}
		end := t.EndTimeMs
		if end < 0 {
			end = now
		}
		subtasks = append(subtasks, obj{"subtask": t.Index, "host": hostOf(t.Endpoint), "endpoint": t.Endpoint, "duration": end - start, "timestamps": stamps})
	}
	writeJSON(w, http.StatusOK, obj{"id": v.Id, "name": v.Name, "now": now, "subtasks": subtasks})
}

// restVertexTaskManagers answers a vertex's subtasks grouped by the
// TaskManager they run on.
func (jm *JobManager) restVertexTaskManagers(w http.ResponseWriter, _ *http.Request, d *flinkpb.JobDetails, v *flinkpb.VertexDetails) {
	now := time.Now().UnixMilli()
	byTM := map[string][]*flinkpb.SubtaskDetails{}
	for _, t := range v.Subtasks {
		byTM[t.TaskManagerId] = append(byTM[t.TaskManagerId], t)
	}
	ids := make([]string, 0, len(byTM))
	for id := range byTM {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	tms := []obj{}
	for _, id := range ids {
		ts := byTM[id]
		counts := obj{}
		for _, s := range TaskStates {
			counts[s] = 0
		}
		start, end, done := int64(-1), int64(0), true
		for _, t := range ts {
			counts[t.State] = counts[t.State].(int) + 1
			if dep := t.Timestamps[TaskDeploying]; dep > 0 && (start < 0 || dep < start) {
				start = dep
			}
			done = done && taskTerminal(t.State)
			end = max(end, t.Timestamps[t.State])
		}
		dur := int64(-1)
		switch {
		case start < 0:
			end = -1
		case done:
			dur = end - start
		default:
			end, dur = -1, now-start
		}
		endpoint, tmID := "(unassigned)", "(unassigned)"
		if id != "" {
			endpoint, tmID = ts[0].Endpoint, id
		}
		m := ioMetrics(ts...)
		var bp, idle, busy int64
		for _, t := range ts {
			if t.Metrics != nil {
				bp += t.Metrics.BackPressuredMs
				idle += t.Metrics.IdleMs
			}
			busy += accumulatedBusy(t, now)
		}
		m["accumulated-backpressured-time"], m["accumulated-idle-time"], m["accumulated-busy-time"] = bp, idle, float64(busy)
		tms = append(tms, obj{
			"host": endpoint, "endpoint": endpoint, "taskmanager-id": tmID, "status": vertexState(&flinkpb.VertexDetails{Subtasks: ts}),
			"start-time": start, "end-time": end, "duration": dur, "metrics": m, "status-counts": counts, "aggregated": aggregated(ts, now),
		})
	}
	writeJSON(w, http.StatusOK, obj{"id": v.Id, "name": v.Name, "now": now, "taskmanagers": tms})
}

// hostOf is the host of a host:port endpoint.
func hostOf(endpoint string) string {
	for i := len(endpoint) - 1; i >= 0; i-- {
		if endpoint[i] == ':' {
			return endpoint[:i]
		}
	}
	return endpoint
}
