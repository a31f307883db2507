package jobmanager

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/flinkrt/resourcemanager"
	"github.com/loom-project/loom/flinkrt/state/storage"

	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/proto/yarnpb"
)

// The REST API speaks Flink's contract (paths, JSON field names, error
// bodies) so that Flink's dashboard and tools work against loom.

// FlinkVersion is the Flink REST version loom's JobManager answers as.
const FlinkVersion = "2.0.0"

type obj = map[string]any

func (jm *JobManager) restHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /config", jm.restConfig)
	mux.HandleFunc("GET /overview", jm.restOverview)
	mux.HandleFunc("GET /jobs", jm.restJobs)
	mux.HandleFunc("GET /jobs/overview", jm.restJobsOverview)
	// Prometheus's scrape (not a Flink REST path), behind the same token.
	mux.Handle("GET /metrics", jm.prometheusHandler())
	mux.HandleFunc("GET /jobs/{jobid}", jm.withJob(jm.restJob))
	mux.HandleFunc("PATCH /jobs/{jobid}", jm.withJob(jm.restCancel))
	mux.HandleFunc("GET /jobs/{jobid}/yarn-cancel", jm.withJob(jm.restCancel))
	mux.HandleFunc("GET /jobs/{jobid}/plan", jm.withJob(func(w http.ResponseWriter, _ *http.Request, d *flinkpb.JobDetails) {
		writeJSON(w, http.StatusOK, obj{"plan": planJSON(d)})
	}))
	mux.HandleFunc("GET /jobs/{jobid}/config", jm.withJob(jm.restJobConfig))
	mux.HandleFunc("GET /jobs/{jobid}/exceptions", jm.withJob(jm.restExceptions))
	mux.HandleFunc("GET /jobs/{jobid}/checkpoints", jm.withJobMaster(func(j *JobMaster) obj { return j.checkpointsJSON() }))
	mux.HandleFunc("GET /jobs/{jobid}/checkpoints/config", jm.withJobMaster(func(j *JobMaster) obj { return j.checkpointConfigJSON() }))
	mux.HandleFunc("GET /jobs/{jobid}/checkpoints/details/{cid}", jm.restCheckpointDetail)
	mux.HandleFunc("GET /jobs/{jobid}/checkpoints/details/{cid}/subtasks/{vertexid}", jm.restCheckpointDetail)
	mux.HandleFunc("POST /jobs/{jobid}/savepoints", jm.restSavepoint)
	mux.HandleFunc("POST /jobs/{jobid}/stop", jm.restSavepoint)
	mux.HandleFunc("GET /jobs/{jobid}/savepoints/{triggerid}", jm.restSavepointStatus)
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}", jm.withVertex(jm.restVertex))
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}/metrics", jm.withVertex(jm.restVertexMetrics))
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}/subtasks/metrics", jm.withVertex(jm.restSubtasksMetrics))
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}/watermarks", jm.withVertex(jm.restWatermarks))
	mux.HandleFunc("GET /jobs/{jobid}/accumulators", jm.withJob(jm.restJobAccumulators))
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}/accumulators", jm.withVertex(jm.restVertexAccumulators))
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}/subtasks/accumulators", jm.withVertex(jm.restSubtaskAccumulators))
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}/backpressure", jm.withVertex(jm.restBackPressure))
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}/subtasktimes", jm.withVertex(jm.restSubtaskTimes))
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}/taskmanagers", jm.withVertex(jm.restVertexTaskManagers))
	mux.HandleFunc("GET /jobs/{jobid}/metrics", jm.withJob(jm.restJobMetrics))
	mux.HandleFunc("GET /jobs/{jobid}/rescales/{what}", jm.withJob(jm.restNoRescales))
	mux.HandleFunc("GET /jobs/{jobid}/rescales/details/{id}", jm.withJob(jm.restNoRescales))
	mux.HandleFunc("GET /applications/overview", jm.restApplicationsOverview)
	mux.HandleFunc("GET /applications/{jobid}", jm.withJob(jm.restApplication))
	mux.HandleFunc("GET /applications/{jobid}/exceptions", jm.withJob(jm.restApplicationExceptions))
	mux.HandleFunc("POST /applications/{jobid}/cancel", jm.withJob(jm.restCancel))
	mux.HandleFunc("GET /jobmanager/metrics", jm.restJMMetrics)
	mux.HandleFunc("GET /jobmanager/thread-dump", jm.restJMThreadDump)
	mux.HandleFunc("GET /taskmanagers/{tmid}/thread-dump", jm.restTMThreadDump)
	mux.HandleFunc("GET /jobs/{jobid}/vertices/{vertexid}/flamegraph", jm.withVertex(jm.restFlameGraph))
	mux.HandleFunc("GET /taskmanagers/metrics", jm.restTMsMetrics)
	mux.HandleFunc("GET /taskmanagers/{tmid}/metrics", jm.restTMMetrics)
	mux.HandleFunc("DELETE /cluster", func(w http.ResponseWriter, _ *http.Request) {
		jm.requestShutdown("shut down through the REST API")
		writeJSON(w, http.StatusAccepted, map[string]any{})
	})
	mux.HandleFunc("GET /taskmanagers", jm.restTaskManagers)
	mux.HandleFunc("GET /taskmanagers/{tmid}", jm.restTaskManager)
	mux.HandleFunc("GET /jobmanager/config", jm.restJMConfig)
	mux.HandleFunc("GET /jobmanager/environment", restEnvironment)
	// loom logs to standard error: the container's stderr is Flink's
	// jobmanager.log.
	mux.HandleFunc("GET /jobmanager/log", func(w http.ResponseWriter, r *http.Request) { jm.serveLog(w, r, cmp.Or(jm.cfg.LogName, "stderr")) })
	mux.HandleFunc("GET /jobmanager/stdout", func(w http.ResponseWriter, r *http.Request) { jm.serveLog(w, r, cmp.Or(jm.cfg.OutName, "stdout")) })
	mux.HandleFunc("GET /jobmanager/logs/{name}", func(w http.ResponseWriter, r *http.Request) { jm.serveLog(w, r, r.PathValue("name")) })
	mux.HandleFunc("GET /jobmanager/logs", jm.restLogList)
	mux.HandleFunc("GET /taskmanagers/{tmid}/log", func(w http.ResponseWriter, r *http.Request) { jm.serveTMLog(w, r, "stderr") })
	mux.HandleFunc("GET /taskmanagers/{tmid}/stdout", func(w http.ResponseWriter, r *http.Request) { jm.serveTMLog(w, r, "stdout") })
	mux.HandleFunc("GET /taskmanagers/{tmid}/logs/{name}", func(w http.ResponseWriter, r *http.Request) { jm.serveTMLog(w, r, r.PathValue("name")) })
	mux.HandleFunc("GET /taskmanagers/{tmid}/logs", jm.restTMLogList)
	var static http.Handler
	if jm.cfg.WebDir != "" {
		static = http.FileServer(http.Dir(jm.cfg.WebDir))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if static != nil && r.Method == http.MethodGet {
			if _, err := os.Stat(jm.cfg.WebDir + "/" + strings.TrimPrefix(r.URL.Path, "/")); err == nil {
				if strings.HasSuffix(r.URL.Path, ".js") {
					w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
				}
				static.ServeHTTP(w, r)
				return
			}
		}
		restError(w, http.StatusNotFound, "Not found: "+r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := strings.CutPrefix(r.URL.Path, "/v1/"); ok {
			r.URL.Path = "/" + p
		}
		mux.ServeHTTP(w, r)
	})
}

// serveLog serves one of the JobManager's log files.
func (jm *JobManager) serveLog(w http.ResponseWriter, r *http.Request, name string) {
	if jm.cfg.LogDir == "" {
		restError(w, http.StatusNotFound, "This JobManager keeps no log files: it logs to the standard error of the process that runs it")
		return
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		restError(w, http.StatusBadRequest, "Bad log file name")
		return
	}
	path := filepath.Join(jm.cfg.LogDir, name)
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		restError(w, http.StatusNotFound, "The file "+name+" does not exist on the JobManager.")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	http.ServeFile(w, r, path)
}

// taskManagerLogs is a Driver that can fetch its TaskManagers' log files
// (the cluster's: from their containers' NodeManagers).
type taskManagerLogs interface {
	TaskManagerLog(ctx context.Context, tmID, name string, head bool) (*http.Response, bool, error)
}

// tmLog fetches a TaskManager's log file through the driver; it answers
// the request itself when it cannot.
func (jm *JobManager) tmLog(w http.ResponseWriter, r *http.Request, name string, head bool) *http.Response {
	tl, ok := jm.cfg.Driver.(taskManagerLogs)
	if !ok {
		tl = rpcLogs{jm}
	}
	if !yarnpb.PlainName(name) {
		restError(w, http.StatusBadRequest, "Bad log file name")
		return nil
	}
	resp, known, err := tl.TaskManagerLog(r.Context(), r.PathValue("tmid"), name, head)
	switch {
	case !known:
		restError(w, http.StatusNotFound, "TaskManager "+r.PathValue("tmid")+" not found")
		return nil
	case err != nil:
		restError(w, http.StatusBadGateway, "Fetching the TaskManager's log: "+err.Error())
		return nil
	}
	return resp
}

// serveTMLog serves one of a TaskManager's log files.
func (jm *JobManager) serveTMLog(w http.ResponseWriter, r *http.Request, name string) {
	resp := jm.tmLog(w, r, name, false)
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		restError(w, resp.StatusCode, "The file "+name+" does not exist on the TaskManager ("+resp.Status+").")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.Copy(w, resp.Body)
}

// restTMLogList lists a TaskManager's log files.
func (jm *JobManager) restTMLogList(w http.ResponseWriter, r *http.Request) {
	logs := []obj{}
	for _, name := range []string{"stderr", "stdout"} {
		resp := jm.tmLog(w, r, name, true)
		if resp == nil {
			return
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			logs = append(logs, obj{"name": name, "size": resp.ContentLength})
		}
	}
	writeJSON(w, http.StatusOK, obj{"logs": logs})
}

// restCheckpointDetail answers a checkpoint's details, or one vertex's
// part of it, while the checkpoint history holds it.
func (jm *JobManager) restCheckpointDetail(w http.ResponseWriter, r *http.Request) {
	j, err := jm.job(r.PathValue("jobid"))
	if err != nil {
		restError(w, http.StatusNotFound, "Job "+r.PathValue("jobid")+" not found")
		return
	}
	id, err := strconv.ParseInt(r.PathValue("cid"), 10, 64)
	if err != nil {
		restError(w, http.StatusBadRequest, "Bad checkpoint id "+r.PathValue("cid"))
		return
	}
	var e obj
	if v := r.PathValue("vertexid"); v != "" {
		e = j.checkpointSubtasksJSON(id, v)
	} else {
		e = j.checkpointDetailJSON(id)
	}
	if e == nil {
		restError(w, http.StatusNotFound, "Could not find checkpointing statistics for checkpoint "+r.PathValue("cid")+".")
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// restLogList lists the JobManager's log files, as Flink's /jobmanager/logs.
func (jm *JobManager) restLogList(w http.ResponseWriter, _ *http.Request) {
	logs := []obj{}
	if jm.cfg.LogDir != "" {
		entries, _ := os.ReadDir(jm.cfg.LogDir)
		for _, e := range entries {
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
				logs = append(logs, obj{"name": e.Name(), "size": info.Size(), "mtime": info.ModTime().UnixMilli()})
			}
		}
	}
	writeJSON(w, http.StatusOK, obj{"logs": logs})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func restError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, obj{"errors": []string{msg}})
}

func (jm *JobManager) withJob(h func(http.ResponseWriter, *http.Request, *flinkpb.JobDetails)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		j, err := jm.job(r.PathValue("jobid"))
		if err != nil {
			restError(w, http.StatusNotFound, "Job "+r.PathValue("jobid")+" not found")
			return
		}
		h(w, r, j.Details(true))
	}
}

// withVertex runs h with the path's job and vertex, or answers 404.
func (jm *JobManager) withVertex(h func(http.ResponseWriter, *http.Request, *flinkpb.JobDetails, *flinkpb.VertexDetails)) http.HandlerFunc {
	return jm.withJob(func(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails) {
		v := vertexOf(d, r.PathValue("vertexid"))
		if v == nil {
			restError(w, http.StatusNotFound, "Vertex "+r.PathValue("vertexid")+" not found in job "+d.JobId)
			return
		}
		h(w, r, d, v)
	})
}

// withJobMaster answers with what fn says of the path's job.
func (jm *JobManager) withJobMaster(fn func(*JobMaster) obj) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		j, err := jm.job(r.PathValue("jobid"))
		if err != nil {
			restError(w, http.StatusNotFound, "Job "+r.PathValue("jobid")+" not found")
			return
		}
		writeJSON(w, http.StatusOK, fn(j))
	}
}

func (jm *JobManager) restConfig(w http.ResponseWriter, _ *http.Request) {
	name, offset := time.Now().Zone()
	writeJSON(w, http.StatusOK, obj{
		"refresh-interval": 3000,
		"timezone-name":    name,
		"timezone-offset":  offset * 1000,
		"flink-version":    FlinkVersion,
		"flink-revision":   "loom",
		"features":         obj{"web-submit": false, "web-cancel": true, "web-rescale": false, "web-history": false},
	})
}

func (jm *JobManager) restOverview(w http.ResponseWriter, _ *http.Request) {
	tms := jm.rm.TaskManagers()
	total, free := 0, 0
	for _, tm := range tms {
		total += tm.Slots
		free += tm.FreeSlots
	}
	counts := map[string]int{}
	for _, j := range jm.Jobs() {
		d := j.Details(false)
		switch d.State {
		case JobFinished, JobFailed, JobCanceled:
			counts[d.State]++
		default:
			counts[JobRunning]++
		}
	}
	writeJSON(w, http.StatusOK, obj{
		"taskmanagers": len(tms), "slots-total": total, "slots-available": free,
		"jobs-running": counts[JobRunning], "jobs-finished": counts[JobFinished],
		"jobs-cancelled": counts[JobCanceled], "jobs-failed": counts[JobFailed],
		"flink-version": FlinkVersion, "flink-commit": "loom",
	})
}

func (jm *JobManager) restJobs(w http.ResponseWriter, _ *http.Request) {
	jobs := []obj{}
	for _, j := range jm.Jobs() {
		d := j.Details(false)
		jobs = append(jobs, obj{"id": d.JobId, "status": d.State})
	}
	writeJSON(w, http.StatusOK, obj{"jobs": jobs})
}

// duration is a job's or task's running time in ms, to now while it runs.
func duration(start, end int64) int64 {
	if start < 0 {
		return -1
	}
	if end < 0 {
		return time.Now().UnixMilli() - start
	}
	return end - start
}

func taskCounts(d *flinkpb.JobDetails, lower bool) (obj, int) {
	counts := obj{}
	for _, s := range TaskStates {
		k := s
		if lower {
			k = strings.ToLower(s)
		}
		counts[k] = 0
	}
	total := 0
	for _, v := range d.Vertices {
		for _, t := range v.Subtasks {
			k := t.State
			if lower {
				k = strings.ToLower(k)
			}
			counts[k] = counts[k].(int) + 1
			total++
		}
	}
	return counts, total
}

func (jm *JobManager) restJobsOverview(w http.ResponseWriter, _ *http.Request) {
	jobs := []obj{}
	for _, j := range jm.Jobs() {
		d := j.Details(false)
		tasks, total := taskCounts(d, true)
		tasks["total"] = total
		jobs = append(jobs, obj{
			"jid": d.JobId, "name": d.Name, "state": d.State, "start-time": d.StartTimeMs, "end-time": d.EndTimeMs,
			"duration": duration(d.StartTimeMs, d.EndTimeMs), "last-modification": lastModification(d), "tasks": tasks,
		})
	}
	writeJSON(w, http.StatusOK, obj{"jobs": jobs})
}

func lastModification(d *flinkpb.JobDetails) int64 {
	last := d.StartTimeMs
	for _, t := range d.Timestamps {
		last = max(last, t)
	}
	return last
}

// vertexState is a vertex's state from its subtasks', as Flink derives it.
func vertexState(v *flinkpb.VertexDetails) string {
	counts := map[string]int{}
	for _, t := range v.Subtasks {
		counts[t.State]++
	}
	n := len(v.Subtasks)
	for _, s := range []string{TaskFailed, TaskCanceling, TaskCanceled, TaskRunning, TaskInitializing, TaskDeploying, TaskScheduled} {
		if counts[s] > 0 && (s != TaskCanceled || counts[TaskFinished]+counts[TaskCanceled] == n) {
			return s
		}
	}
	if counts[TaskFinished] == n {
		return TaskFinished
	}
	return TaskCreated
}

func vertexTimes(v *flinkpb.VertexDetails) (start, end int64) {
	start, end = -1, -1
	done := true
	for _, t := range v.Subtasks {
		if t.StartTimeMs >= 0 && (start < 0 || t.StartTimeMs < start) {
			start = t.StartTimeMs
		}
		if t.EndTimeMs < 0 {
			done = false
		} else {
			end = max(end, t.EndTimeMs)
		}
	}
	if !done {
		end = -1
	}
	return start, end
}

// ioMetrics is the REST form of subtasks' counts summed, as Flink's
// IOMetricsInfo: each "-complete" says every subtask has reported.
func ioMetrics(subtasks ...*flinkpb.SubtaskDetails) obj {
	var m flinkpb.IOMetrics
	complete := true
	for _, t := range subtasks {
		if t.Metrics == nil {
			complete = false
			continue
		}
		m.RecordsIn += t.Metrics.RecordsIn
		m.RecordsOut += t.Metrics.RecordsOut
		m.BytesIn += t.Metrics.BytesIn
		m.BytesOut += t.Metrics.BytesOut
	}
	return obj{
		"read-bytes": m.BytesIn, "read-bytes-complete": complete, "write-bytes": m.BytesOut, "write-bytes-complete": complete,
		"read-records": m.RecordsIn, "read-records-complete": complete, "write-records": m.RecordsOut, "write-records-complete": complete,
	}
}

func (jm *JobManager) restJob(w http.ResponseWriter, _ *http.Request, d *flinkpb.JobDetails) {
	counts, _ := taskCounts(d, false)
	vertices := []obj{}
	for _, v := range d.Vertices {
		tasks := obj{}
		for _, s := range TaskStates {
			tasks[s] = 0
		}
		for _, t := range v.Subtasks {
			tasks[t.State] = tasks[t.State].(int) + 1
		}
		start, end := vertexTimes(v)
		vertices = append(vertices, obj{
			"id": v.Id, "name": v.Name, "parallelism": v.Parallelism, "maxParallelism": v.MaxParallelism,
			"status": vertexState(v), "start-time": start, "end-time": end, "duration": duration(start, end),
			"tasks": tasks, "metrics": ioMetrics(v.Subtasks...),
		})
	}
	timestamps := obj{}
	for _, s := range []string{"INITIALIZING", JobCreated, JobRunning, JobFailing, JobFailed, JobCancelling, JobCanceled, JobFinished, "RESTARTING", "SUSPENDED", "RECONCILING"} {
		timestamps[s] = int64(0)
	}
	for k, v := range d.Timestamps {
		timestamps[k] = v
	}
	writeJSON(w, http.StatusOK, obj{
		"jid": d.JobId, "name": d.Name, "isStoppable": false, "state": d.State, "job-type": "STREAMING",
		"start-time": d.StartTimeMs, "end-time": d.EndTimeMs, "duration": duration(d.StartTimeMs, d.EndTimeMs),
		"maxParallelism": -1, "now": time.Now().UnixMilli(), "timestamps": timestamps,
		"vertices": vertices, "status-counts": counts, "plan": planJSON(d),
	})
}

func planJSON(d *flinkpb.JobDetails) obj {
	jg := d.JobGraph
	nodes := []obj{}
	for _, v := range jg.Vertices {
		n := obj{
			"id": v.Id, "parallelism": v.Parallelism, "operator": "", "operator_strategy": "",
			"description": v.Name, "optimizer_properties": obj{},
		}
		var inputs []obj
		for _, e := range jg.Edges {
			if e.TargetVertex == v.Id {
				inputs = append(inputs, obj{"num": len(inputs), "id": e.SourceVertex, "ship_strategy": e.Partitioner, "exchange": "pipelined_bounded"})
			}
		}
		if inputs != nil {
			n["inputs"] = inputs
		}
		nodes = append(nodes, n)
	}
	return obj{"jid": d.JobId, "name": d.Name, "type": "STREAMING", "nodes": nodes}
}

func (jm *JobManager) restCancel(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails) {
	if mode := r.URL.Query().Get("mode"); mode != "" && mode != "cancel" {
		restError(w, http.StatusBadRequest, "mode "+mode+": only cancel is supported")
		return
	}
	if j, err := jm.job(d.JobId); err == nil {
		j.Cancel("canceled over the REST API")
	}
	writeJSON(w, http.StatusAccepted, obj{})
}

// restartText is the job's restart strategy as Flink's configuration page
// shows it.
func restartText(conf map[string]string) string {
	interval, err := configDuration(conf, ConfCheckpointInterval, 0)
	if err != nil {
		return "unknown: " + err.Error()
	}
	r, err := newRestartStrategy(conf, interval > 0)
	if err != nil {
		return "unknown: " + err.Error()
	}
	return r.String()
}

func (jm *JobManager) restJobConfig(w http.ResponseWriter, _ *http.Request, d *flinkpb.JobDetails) {
	p, _ := strconv.Atoi(d.JobGraph.Config["parallelism.default"])
	user := obj{}
	for k, v := range d.JobGraph.Config {
		user[k] = v
	}
	writeJSON(w, http.StatusOK, obj{
		"jid": d.JobId, "name": d.Name,
		"execution-config": obj{"execution-mode": "PIPELINED", "restart-strategy": restartText(d.JobGraph.Config), "job-parallelism": p, "object-reuse-mode": false, "user-config": user},
	})
}

func (jm *JobManager) restExceptions(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails) {
	entries := []obj{}
	var root any
	var ts any
	if d.Failure != "" {
		root, ts = d.Failure, d.FailureTimeMs
		e := obj{"exceptionName": "loom.TaskFailure", "stacktrace": d.Failure, "timestamp": d.FailureTimeMs, "taskName": nilIfEmpty(d.FailureTask), "endpoint": nil, "taskManagerId": nil, "failureLabels": obj{}, "concurrentExceptions": []any{}}
		if max, err := strconv.Atoi(r.URL.Query().Get("maxExceptions")); err != nil || max > 0 {
			entries = append(entries, e)
		}
	}
	writeJSON(w, http.StatusOK, obj{
		"root-exception": root, "timestamp": ts, "all-exceptions": []any{}, "truncated": false,
		"exceptionHistory": obj{"entries": entries, "truncated": false},
	})
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func tmJSON(tm resourcemanager.TaskManagerInfo, detailed bool) obj {
	mem := tm.MemoryMB << 20
	// What its free slots hold of its resources.
	freeCPU, freeMem := 0.0, int64(0)
	if tm.Slots > 0 {
		freeCPU = float64(tm.CPUCores) * float64(tm.FreeSlots) / float64(tm.Slots)
		freeMem = mem * int64(tm.FreeSlots) / int64(tm.Slots)
	}
	o := obj{
		"id": tm.ID, "path": tm.Address, "dataPort": 0, "jmxPort": -1, "timeSinceLastHeartbeat": tm.LastHeartbeat.UnixMilli(),
		"slotsNumber": tm.Slots, "freeSlots": tm.FreeSlots, "blocked": false,
		"totalResource": obj{"cpuCores": tm.CPUCores, "taskHeapMemory": mem, "taskOffHeapMemory": 0, "managedMemory": 0, "networkMemory": 0},
		"freeResource":  obj{"cpuCores": freeCPU, "taskHeapMemory": freeMem, "taskOffHeapMemory": 0, "managedMemory": 0, "networkMemory": 0},
		"hardware":      obj{"cpuCores": tm.CPUCores, "physicalMemory": mem, "freeMemory": mem, "managedMemory": 0},
		"memoryConfiguration": obj{"frameworkHeap": 0, "taskHeap": mem, "frameworkOffHeap": 0, "taskOffHeap": 0, "networkMemory": 0,
			"managedMemory": 0, "jvmMetaspace": 0, "jvmOverhead": 0, "totalFlinkMemory": mem, "totalProcessMemory": mem},
	}
	if detailed {
		slots := []obj{}
		for _, j := range tm.SlotJobs {
			slots = append(slots, obj{"jobId": j, "resource": obj{}})
		}
		o["allocatedSlots"] = slots
		o["metrics"] = tmMetrics(tmStats(tm))
	}
	return o
}

// tmMetrics is a TaskManager's runtime figures in the shape of Flink's
// TaskManager metrics: its processes' (the TaskManager's and its job
// workers') Go heap and other runtime memory, and their collections.
// A Go process has no direct or mapped buffers and no network memory
// segments: those are 0.
// tmStats are a TaskManager's runtime figures with, when its processes
// set no soft memory limit, its memory as the heap's maximum: what its
// container may use before it is stopped, as -Xmx bounds a JVM's heap.
func tmStats(tm resourcemanager.TaskManagerInfo) *flinkpb.ProcessStats {
	st := tm.Stats
	if st == nil || st.HeapMax >= 0 || tm.MemoryMB <= 0 {
		return st
	}
	st = proto.Clone(st).(*flinkpb.ProcessStats)
	st.HeapMax = tm.MemoryMB << 20
	return st
}

func tmMetrics(st *flinkpb.ProcessStats) obj {
	if st == nil {
		st = &flinkpb.ProcessStats{HeapMax: -1}
	}
	return obj{
		"heapUsed": st.HeapUsed, "heapCommitted": st.HeapCommitted, "heapMax": st.HeapMax,
		"nonHeapUsed": st.NonHeapUsed, "nonHeapCommitted": st.NonHeapUsed, "nonHeapMax": -1,
		"directCount": 0, "directUsed": 0, "directMax": 0, "mappedCount": 0, "mappedUsed": 0, "mappedMax": 0,
		"memorySegmentsAvailable": 0, "memorySegmentsTotal": 0,
		"nettyShuffleMemorySegmentsAvailable": 0, "nettyShuffleMemorySegmentsUsed": 0, "nettyShuffleMemorySegmentsTotal": 0,
		"nettyShuffleMemoryAvailable": 0, "nettyShuffleMemoryUsed": 0, "nettyShuffleMemoryTotal": 0,
		"garbageCollectors": []obj{{"name": "Go", "count": st.GcCount, "time": st.GcTimeMs}},
	}
}

func (jm *JobManager) restTaskManagers(w http.ResponseWriter, _ *http.Request) {
	tms := []obj{}
	for _, tm := range jm.rm.TaskManagers() {
		tms = append(tms, tmJSON(tm, false))
	}
	writeJSON(w, http.StatusOK, obj{"taskmanagers": tms})
}

func (jm *JobManager) restTaskManager(w http.ResponseWriter, r *http.Request) {
	for _, tm := range jm.rm.TaskManagers() {
		if tm.ID == r.PathValue("tmid") {
			writeJSON(w, http.StatusOK, tmJSON(tm, true))
			return
		}
	}
	restError(w, http.StatusNotFound, "TaskManager "+r.PathValue("tmid")+" not found")
}

func (jm *JobManager) restJMConfig(w http.ResponseWriter, _ *http.Request) {
	t := jm.cfg.Timing
	kv := []obj{
		{"key": "jobmanager.rpc.address", "value": jm.addr},
		{"key": "rest.address", "value": jm.RestAddr()},
		{"key": "heartbeat.interval", "value": strconv.FormatInt(t.HeartbeatInterval.Milliseconds(), 10)},
		{"key": "heartbeat.timeout", "value": strconv.FormatInt(t.HeartbeatTimeout.Milliseconds(), 10)},
		{"key": "slot.request.timeout", "value": strconv.FormatInt(t.SlotTimeout.Milliseconds(), 10)},
		{"key": "web.tmpdir", "value": jm.cfg.Dir},
	}
	writeJSON(w, http.StatusOK, kv)
}

func restEnvironment(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, obj{
		"jvm":       obj{"version": runtime.Version(), "arch": runtime.GOOS + "/" + runtime.GOARCH, "options": os.Args},
		"classpath": []string{},
	})
}

// savepointOp is a savepoint asked for over REST, which answers with a
// trigger id at once; the client polls for the outcome.
type savepointOp struct {
	job  string
	done bool
	path string
	err  error
}

// maxSavepointOps is how many REST savepoint outcomes are kept.
const maxSavepointOps = 100

// restSavepoint takes a savepoint (POST /jobs/:jobid/savepoints, with
// target-directory and cancel-job) or stops the job with one (POST
// /jobs/:jobid/stop, with targetDirectory), and answers 202 with the
// request-id to poll.
func (jm *JobManager) restSavepoint(w http.ResponseWriter, r *http.Request) {
	j, err := jm.job(r.PathValue("jobid"))
	if err != nil {
		restError(w, http.StatusNotFound, "Job "+r.PathValue("jobid")+" not found")
		return
	}
	var body struct {
		TargetDirectory string `json:"target-directory"`
		CancelJob       bool   `json:"cancel-job"`
		StopDirectory   string `json:"targetDirectory"`
		Drain           bool   `json:"drain"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
			restError(w, http.StatusBadRequest, "request body: "+err.Error())
			return
		}
	}
	stop := strings.HasSuffix(r.URL.Path, "/stop")
	dir := body.TargetDirectory
	if stop {
		dir = body.StopDirectory
	}
	if body.Drain {
		restError(w, http.StatusBadRequest, "drain is not supported: stop without it, and the job ends after the savepoint without draining its windows")
		return
	}
	id := NewJobID()
	op := &savepointOp{job: j.id}
	jm.mu.Lock()
	ctx := jm.ctx
	jm.savepointOps[id] = op
	jm.savepointOrder = append(jm.savepointOrder, id)
	if len(jm.savepointOrder) > maxSavepointOps {
		delete(jm.savepointOps, jm.savepointOrder[0])
		jm.savepointOrder = jm.savepointOrder[1:]
	}
	jm.wg.Add(1)
	jm.mu.Unlock()
	go func() {
		defer jm.wg.Done()
		path, err := j.TriggerSavepoint(ctx, dir, stop)
		if err == nil && body.CancelJob {
			j.Cancel("canceled after a savepoint at " + path)
		}
		jm.mu.Lock()
		op.done, op.path, op.err = true, path, err
		jm.mu.Unlock()
	}()
	writeJSON(w, http.StatusAccepted, obj{"request-id": id})
}

// restSavepointStatus answers GET /jobs/:jobid/savepoints/:triggerid as
// Flink does: IN_PROGRESS, or COMPLETED with the location or the failure.
func (jm *JobManager) restSavepointStatus(w http.ResponseWriter, r *http.Request) {
	jm.mu.Lock()
	op := jm.savepointOps[r.PathValue("triggerid")]
	var done bool
	var path string
	var opErr error
	if op != nil {
		done, path, opErr = op.done, op.path, op.err
	}
	jm.mu.Unlock()
	if op == nil || op.job != r.PathValue("jobid") {
		restError(w, http.StatusNotFound, "There is no savepoint operation with trigger id "+r.PathValue("triggerid")+" for job "+r.PathValue("jobid"))
		return
	}
	switch {
	case !done:
		writeJSON(w, http.StatusOK, obj{"status": obj{"id": "IN_PROGRESS"}})
	case opErr != nil:
		msg := status.Convert(opErr).Message()
		writeJSON(w, http.StatusOK, obj{"status": obj{"id": "COMPLETED"}, "operation": obj{"failure-cause": obj{
			"class": "loom.SavepointException", "stack-trace": msg, "serialized-throwable": msg}}})
	default:
		writeJSON(w, http.StatusOK, obj{"status": obj{"id": "COMPLETED"}, "operation": obj{"location": storage.URI(path)}})
	}
}
