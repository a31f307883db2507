package jobmanager

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/flinkrt/procstats"
	"github.com/loom-project/loom/proto/flinkpb"
)

// namedValue is one metric of a metric view: its Flink name and value.
type namedValue struct {
	name  string
	value float64
}

// processMetrics are a process's (or a TaskManager's processes') Go
// runtime figures under the names of Flink's Status.JVM metrics, which
// the dashboard's JobManager and TaskManager metric pages read: the heap,
// the other runtime memory as non-heap, one "Go" collector. A Go process
// has no metaspace, direct or mapped buffers: those are 0, as Flink
// reports a pool it lacks.
func processMetrics(st *flinkpb.ProcessStats) []namedValue {
	if st == nil {
		return nil
	}
	return []namedValue{
		{"Status.JVM.Memory.Heap.Used", float64(st.HeapUsed)},
		{"Status.JVM.Memory.Heap.Committed", float64(st.HeapCommitted)},
		{"Status.JVM.Memory.Heap.Max", float64(st.HeapMax)},
		{"Status.JVM.Memory.NonHeap.Used", float64(st.NonHeapUsed)},
		{"Status.JVM.Memory.NonHeap.Committed", float64(st.NonHeapUsed)},
		{"Status.JVM.Memory.NonHeap.Max", -1},
		{"Status.JVM.Memory.Metaspace.Used", 0},
		{"Status.JVM.Memory.Metaspace.Max", -1},
		{"Status.JVM.Memory.Direct.Count", 0},
		{"Status.JVM.Memory.Direct.MemoryUsed", 0},
		{"Status.JVM.Memory.Direct.TotalCapacity", 0},
		{"Status.JVM.Memory.Mapped.Count", 0},
		{"Status.JVM.Memory.Mapped.MemoryUsed", 0},
		{"Status.JVM.Memory.Mapped.TotalCapacity", 0},
		{"Status.JVM.Threads.Count", float64(st.Goroutines)},
		{"Status.JVM.GarbageCollector.Go.Count", float64(st.GcCount)},
		{"Status.JVM.GarbageCollector.Go.Time", float64(st.GcTimeMs)},
		{"Status.JVM.CPU.Time", float64(st.CpuTimeNs)},
		{"Status.JVM.CPU.Load", st.CpuLoad},
	}
}

// answerMetrics answers a metric view: without get=, the names it has;
// with it, the values of those asked for that it has.
func answerMetrics(w http.ResponseWriter, r *http.Request, metrics []namedValue) {
	out := []obj{}
	names, get := requested(r)
	if !get {
		for _, m := range metrics {
			out = append(out, obj{"id": m.name})
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	for _, name := range names {
		if i := slices.IndexFunc(metrics, func(m namedValue) bool { return m.name == name }); i >= 0 {
			out = append(out, obj{"id": name, "value": formatMetric(metrics[i].value)})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (jm *JobManager) restJMMetrics(w http.ResponseWriter, r *http.Request) {
	st := procstats.Read()
	// In a container, its memory bounds the heap as -Xmx would.
	if mb, err := strconv.ParseInt(os.Getenv("LOOM_CONTAINER_MEMORY_MB"), 10, 64); st.HeapMax < 0 && err == nil && mb > 0 {
		st.HeapMax = mb << 20
	}
	metrics := processMetrics(st)
	running := 0
	for _, j := range jm.Jobs() {
		if !JobTerminal(j.Details(false).State) {
			running++
		}
	}
	tms := jm.rm.TaskManagers()
	slots, free := 0, 0
	for _, tm := range tms {
		slots += tm.Slots
		free += tm.FreeSlots
	}
	metrics = append(metrics,
		namedValue{"numRegisteredTaskManagers", float64(len(tms))},
		namedValue{"numRunningJobs", float64(running)},
		namedValue{"taskSlotsTotal", float64(slots)},
		namedValue{"taskSlotsAvailable", float64(free)},
	)
	answerMetrics(w, r, metrics)
}

func (jm *JobManager) restTMMetrics(w http.ResponseWriter, r *http.Request) {
	for _, tm := range jm.rm.TaskManagers() {
		if tm.ID == r.PathValue("tmid") {
			answerMetrics(w, r, processMetrics(tmStats(tm)))
			return
		}
	}
	restError(w, http.StatusNotFound, "TaskManager "+r.PathValue("tmid")+" not found")
}

// restTMsMetrics answers metrics aggregated over the TaskManagers, as
// Flink's /taskmanagers/metrics: min, max, avg and sum of each.
func (jm *JobManager) restTMsMetrics(w http.ResponseWriter, r *http.Request) {
	byName := map[string][]float64{}
	var order []string
	for _, tm := range jm.rm.TaskManagers() {
		for _, m := range processMetrics(tmStats(tm)) {
			if _, ok := byName[m.name]; !ok {
				order = append(order, m.name)
			}
			byName[m.name] = append(byName[m.name], m.value)
		}
	}
	names, get := requested(r)
	out := []obj{}
	if !get {
		names = order
	}
	for _, name := range names {
		switch _, ok := byName[name]; {
		case !ok:
		case !get:
			out = append(out, obj{"id": name})
		default:
			out = append(out, aggregate(name, byName[name]))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// aggregate is a metric's min, max, avg and sum over values.
func aggregate(name string, values []float64) obj {
	o := obj{"id": name}
	if len(values) == 0 {
		return o
	}
	lo, hi, sum := values[0], values[0], 0.0
	for _, v := range values {
		lo, hi, sum = min(lo, v), max(hi, v), sum+v
	}
	o["min"], o["max"], o["avg"], o["sum"] = lo, hi, sum/float64(len(values)), sum
	return o
}

// restJobMetrics answers a job's own metrics, by Flink's names: its
// restarts, up and down time, and its checkpoints.
func (jm *JobManager) restJobMetrics(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails) {
	now := time.Now().UnixMilli()
	var uptime, downtime float64
	if ts := d.Timestamps[JobRunning]; ts > 0 && d.State == JobRunning {
		uptime = float64(now - ts)
	}
	if d.State == JobRestarting || d.State == JobFailing || d.State == JobCreated {
		if ts := d.Timestamps[d.State]; ts > 0 {
			downtime = float64(now - ts)
		}
	}
	cp := d.Checkpoints
	if cp == nil {
		cp = &flinkpb.CheckpointSummary{}
	}
	answerMetrics(w, r, []namedValue{
		{"numRestarts", float64(d.Restarts)},
		{"fullRestarts", float64(d.Restarts)},
		{"uptime", uptime},
		{"downtime", downtime},
		{"totalNumberOfCheckpoints", float64(cp.Completed + cp.Failed + cp.InProgress)},
		{"numberOfCompletedCheckpoints", float64(cp.Completed)},
		{"numberOfFailedCheckpoints", float64(cp.Failed)},
		{"numberOfInProgressCheckpoints", float64(cp.InProgress)},
		{"lastCheckpointDuration", float64(cp.LastDurationMs)},
		{"lastCheckpointSize", float64(cp.LastSize)},
		{"lastCheckpointFullSize", float64(cp.LastSize)},
		{"lastCompletedCheckpointId", float64(cp.LastId)},
	})
}

// threadInfos is a process dump in the shape of Flink's thread dump: one
// entry per goroutine, each with its stack.
func threadInfos(d *flinkpb.ProcessDump) []obj {
	out := []obj{}
	for _, block := range strings.Split(strings.TrimSpace(d.Goroutines), "\n\n") {
		head, stack, _ := strings.Cut(block, "\n")
		name := fmt.Sprintf("%s (pid %d) %s", d.Name, d.Pid, strings.TrimSuffix(head, ":"))
		out = append(out, obj{"threadName": name, "stringifiedThreadInfo": fmt.Sprintf("%q\n%s\n\n", name, stack)})
	}
	if d.Truncated {
		out = append(out, obj{"threadName": d.Name, "stringifiedThreadInfo": fmt.Sprintf("(the dump of %s was cut at its size limit)\n\n", d.Name)})
	}
	return out
}

func (jm *JobManager) restJMThreadDump(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, obj{"threadInfos": threadInfos(procstats.Dump("jobmanager"))})
}

// restTMThreadDump asks a TaskManager for its goroutines and its
// workers'.
func (jm *JobManager) restTMThreadDump(w http.ResponseWriter, r *http.Request) {
	for _, tm := range jm.rm.TaskManagers() {
		if tm.ID != r.PathValue("tmid") {
			continue
		}
		cc, release, err := jm.conns.Get(tm.Address)
		if err != nil {
			restError(w, http.StatusServiceUnavailable, "TaskManager "+tm.ID+" cannot be reached: "+err.Error())
			return
		}
		defer release()
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		resp, err := flinkpb.NewTaskExecutorClient(cc).ThreadDump(ctx, &flinkpb.ThreadDumpRequest{})
		if err != nil {
			restError(w, http.StatusServiceUnavailable, "TaskManager "+tm.ID+" did not answer: "+status.Convert(err).Message())
			return
		}
		infos := []obj{}
		for _, p := range resp.Processes {
			infos = append(infos, threadInfos(p)...)
		}
		writeJSON(w, http.StatusOK, obj{"threadInfos": infos})
		return
	}
	restError(w, http.StatusNotFound, "TaskManager "+r.PathValue("tmid")+" not found")
}
