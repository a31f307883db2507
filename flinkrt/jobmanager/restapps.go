package jobmanager

import (
	"net/http"
	"strconv"

	"github.com/loom-project/loom/proto/flinkpb"
)

// Flink's applications views. A loom JobManager runs jobs, each submitted
// on its own, so each job is an application of one job with the job's
// id, as a job submitted to a Flink session cluster is.

// applicationStatus is a job's state as an application's: Flink's
// ApplicationState has no RESTARTING, during which the application runs.
func applicationStatus(jobState string) string {
	switch jobState {
	case JobRestarting:
		return JobRunning
	case "CANCELLING":
		return "CANCELING"
	}
	return jobState
}

// jobStatusCounts is Flink's per-state job counts of an application.
func jobStatusCounts(d *flinkpb.JobDetails) obj {
	c := obj{"TOTAL": 1}
	for _, s := range []string{"CANCELED", "CANCELING", "CREATED", "FAILED", "FAILING", "FINISHED", "RECONCILING", "RUNNING", "RESTARTING", "INITIALIZING", "SUSPENDED"} {
		c[s] = 0
	}
	c[d.State] = 1
	return c
}

func applicationItem(d *flinkpb.JobDetails) obj {
	return obj{
		"id": d.JobId, "name": d.Name, "status": applicationStatus(d.State), "start-time": d.StartTimeMs, "end-time": d.EndTimeMs,
		"duration": duration(d.StartTimeMs, d.EndTimeMs), "jobs": jobStatusCounts(d),
	}
}

func (jm *JobManager) restApplicationsOverview(w http.ResponseWriter, _ *http.Request) {
	apps := []obj{}
	for _, j := range jm.Jobs() {
		apps = append(apps, applicationItem(j.Details(false)))
	}
	writeJSON(w, http.StatusOK, obj{"applications": apps})
}

func (jm *JobManager) restApplication(w http.ResponseWriter, _ *http.Request, d *flinkpb.JobDetails) {
	a := applicationItem(d)
	tasks, total := taskCounts(d, true)
	tasks["total"] = total
	a["jobs"] = []obj{{
		"jid": d.JobId, "name": d.Name, "state": d.State, "start-time": d.StartTimeMs, "end-time": d.EndTimeMs,
		"duration": duration(d.StartTimeMs, d.EndTimeMs), "last-modification": lastModification(d), "tasks": tasks,
	}}
	a["status-counts"] = jobStatusCounts(d)
	stamps := obj{}
	for k, v := range d.Timestamps {
		stamps[applicationStatus(k)] = v
	}
	a["timestamps"] = stamps
	writeJSON(w, http.StatusOK, a)
}

func (jm *JobManager) restApplicationExceptions(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails) {
	entries := []obj{}
	if d.Failure != "" {
		if max, err := strconv.Atoi(r.URL.Query().Get("maxExceptions")); err != nil || max > 0 {
			entries = append(entries, obj{"exceptionName": "loom.TaskFailure", "stacktrace": d.Failure, "timestamp": d.FailureTimeMs, "jobId": d.JobId})
		}
	}
	writeJSON(w, http.StatusOK, obj{"exceptionHistory": obj{"entries": entries}})
}

// restNoRescales answers as Flink does for a job its adaptive scheduler
// does not run: loom does not rescale a running job (a savepoint and a
// run at another parallelism does).
func (jm *JobManager) restNoRescales(w http.ResponseWriter, _ *http.Request, d *flinkpb.JobDetails) {
	restError(w, http.StatusNotFound, "AdaptiveScheduler is not enabled for this job ("+d.JobId+").")
}
