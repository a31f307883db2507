package jobmanager

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loom-project/loom/flinkrt/metricnames"
	"github.com/loom-project/loom/proto/flinkpb"
)

// taskMetrics are the task metrics the REST API answers for, by
// Flink's names.
var taskMetrics = func() (out []struct {
	name  string
	value func(*flinkpb.IOMetrics) float64
}) {
	for _, m := range metricnames.Task {
		out = append(out, struct {
			name  string
			value func(*flinkpb.IOMetrics) float64
		}{m.Name, m.Value})
	}
	return out
}()

// maxMetricNames bounds a get= list.
const maxMetricNames = 256

// requested is the get= list of names, if any.
func requested(r *http.Request) ([]string, bool) {
	get := r.URL.Query().Get("get")
	if get == "" {
		return nil, false
	}
	names := strings.Split(get, ",")
	if len(names) > maxMetricNames {
		names = names[:maxMetricNames]
	}
	return names, true
}

func vertexOf(d *flinkpb.JobDetails, id string) *flinkpb.VertexDetails {
	for _, v := range d.Vertices {
		if v.Id == id {
			return v
		}
	}
	return nil
}

func formatMetric(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// restVertexMetrics answers Flink's per-subtask metrics of a vertex:
// names "<subtask>.<metric>" for the task's and
// "<subtask>.<operator>.<metric>" for those its functions registered;
// without get=, the list of those it has.
func (jm *JobManager) restVertexMetrics(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails, v *flinkpb.VertexDetails) {
	names, get := requested(r)
	out := []obj{}
	if !get {
		for _, t := range v.Subtasks {
			if t.Metrics == nil {
				continue
			}
			for _, m := range subtaskMetrics(t.Metrics) {
				out = append(out, obj{"id": strconv.Itoa(int(t.Index)) + "." + m.name})
			}
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	for _, name := range names {
		i, metric, ok := strings.Cut(name, ".")
		idx, err := strconv.Atoi(i)
		if !ok || err != nil || idx < 0 || idx >= len(v.Subtasks) || v.Subtasks[idx].Metrics == nil {
			continue
		}
		ms := subtaskMetrics(v.Subtasks[idx].Metrics)
		if j := slices.IndexFunc(ms, func(m namedValue) bool { return m.name == metric }); j >= 0 {
			out = append(out, obj{"id": name, "value": formatMetric(ms[j].value)})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// restWatermarks answers each subtask's input watermark, as Flink's
// currentInputWatermark; a subtask without one (a source) is left out.
func (jm *JobManager) restWatermarks(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails, v *flinkpb.VertexDetails) {
	out := []obj{}
	for _, t := range v.Subtasks {
		// An ended subtask's metrics are gone, as in Flink, whose metric
		// store keeps only running tasks'; its last watermark is the end
		// of input's, no time a person reads.
		if t.Metrics != nil && t.Metrics.HasInputWatermark && !taskTerminal(t.State) {
			out = append(out, obj{"id": strconv.Itoa(int(t.Index)) + ".currentInputWatermark", "value": strconv.FormatInt(t.Metrics.InputWatermark, 10)})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// backPressureLevel is Flink's level for a share of time back pressured.
func backPressureLevel(ratio float64) string {
	switch {
	case ratio <= 0.10:
		return "ok"
	case ratio <= 0.5:
		return "low"
	}
	return "high"
}

// restBackPressure answers Flink's back-pressure view of a vertex, from
// the time its subtasks waited for credit to send in the last report.
func (jm *JobManager) restBackPressure(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails, v *flinkpb.VertexDetails) {
	subtasks := []obj{}
	worst := 0.0
	for _, t := range v.Subtasks {
		if t.Metrics == nil {
			continue
		}
		ratio := t.Metrics.BackPressuredMsPerSecond / 1000
		worst = max(worst, ratio)
		subtasks = append(subtasks, obj{
			"subtask": t.Index, "attempt-number": t.Attempt, "backpressureLevel": backPressureLevel(ratio), "ratio": ratio,
			"idleRatio": t.Metrics.IdleMsPerSecond / 1000, "busyRatio": metricnames.BusyMsPerSecond(t.Metrics) / 1000,
		})
	}
	if len(subtasks) == 0 {
		writeJSON(w, http.StatusOK, obj{"status": "deprecated"})
		return
	}
	writeJSON(w, http.StatusOK, obj{"status": "ok", "backpressureLevel": backPressureLevel(worst), "end-timestamp": time.Now().UnixMilli(), "subtasks": subtasks})
}

// subtaskMetrics are a subtask's metrics by their names in its subtask
// scope: the task's, then those its functions registered by name.
func subtaskMetrics(m *flinkpb.IOMetrics) []namedValue {
	out := make([]namedValue, 0, len(taskMetrics)+len(m.UserMetrics))
	for _, tm := range taskMetrics {
		out = append(out, namedValue{tm.name, tm.value(m)})
	}
	for _, name := range slices.Sorted(maps.Keys(m.UserMetrics)) {
		out = append(out, namedValue{name, m.UserMetrics[name]})
	}
	return out
}

// restSubtasksMetrics answers Flink's metrics aggregated over a vertex's
// subtasks: min, max, avg, sum and skew (how far the largest is above
// the average, in percent) of those that have each.
func (jm *JobManager) restSubtasksMetrics(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails, v *flinkpb.VertexDetails) {
	var names []string
	values := map[string][]float64{}
	for _, t := range v.Subtasks {
		if t.Metrics == nil {
			continue
		}
		for _, m := range subtaskMetrics(t.Metrics) {
			if _, ok := values[m.name]; !ok {
				names = append(names, m.name)
			}
			values[m.name] = append(values[m.name], m.value)
		}
	}
	out := []obj{}
	asked, get := requested(r)
	for _, name := range names {
		if !get {
			out = append(out, obj{"id": name})
			continue
		}
		if !slices.Contains(asked, name) {
			continue
		}
		xs := values[name]
		lo, hi, sum := xs[0], xs[0], 0.0
		for _, x := range xs {
			lo, hi, sum = min(lo, x), max(hi, x), sum+x
		}
		avg := sum / float64(len(xs))
		skew := 0.0
		if avg > 0 {
			skew = (hi - avg) / avg * 100
		}
		out = append(out, obj{"id": name, "min": lo, "max": hi, "avg": avg, "sum": sum, "skew": skew})
	}
	writeJSON(w, http.StatusOK, out)
}

// userAccumulators sums subtasks' accumulators by name, sorted, as
// Flink's user-task-accumulators (every loom accumulator is a counter).
func userAccumulators(subtasks ...*flinkpb.SubtaskDetails) []obj {
	sums := map[string]int64{}
	for _, t := range subtasks {
		if t.Metrics == nil {
			continue
		}
		for k, v := range t.Metrics.Accumulators {
			sums[k] += v
		}
	}
	names := make([]string, 0, len(sums))
	for k := range sums {
		names = append(names, k)
	}
	slices.Sort(names)
	out := []obj{}
	for _, k := range names {
		out = append(out, obj{"name": k, "type": "LongCounter", "value": strconv.FormatInt(sums[k], 10)})
	}
	return out
}

// Accumulators sums a job's accumulators over its subtasks.
func Accumulators(d *flinkpb.JobDetails) map[string]int64 {
	sums := map[string]int64{}
	for _, v := range d.Vertices {
		for _, t := range v.Subtasks {
			if t.Metrics != nil {
				for k, n := range t.Metrics.Accumulators {
					sums[k] += n
				}
			}
		}
	}
	return sums
}

func (jm *JobManager) restJobAccumulators(w http.ResponseWriter, _ *http.Request, d *flinkpb.JobDetails) {
	var all []*flinkpb.SubtaskDetails
	for _, v := range d.Vertices {
		all = append(all, v.Subtasks...)
	}
	writeJSON(w, http.StatusOK, obj{"job-accumulators": []obj{}, "user-task-accumulators": userAccumulators(all...), "serialized-user-task-accumulators": obj{}})
}

func (jm *JobManager) restVertexAccumulators(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails, v *flinkpb.VertexDetails) {
	writeJSON(w, http.StatusOK, obj{"id": v.Id, "user-accumulators": userAccumulators(v.Subtasks...)})
}

func (jm *JobManager) restSubtaskAccumulators(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails, v *flinkpb.VertexDetails) {
	subtasks := []obj{}
	for _, t := range v.Subtasks {
		subtasks = append(subtasks, obj{"subtask": t.Index, "attempt": t.Attempt, "host": t.TaskManagerId, "user-accumulators": userAccumulators(t)})
	}
	writeJSON(w, http.StatusOK, obj{"id": v.Id, "parallelism": v.Parallelism, "subtasks": subtasks})
}
