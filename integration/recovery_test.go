package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/state/storage"
)

// checkExactlyOnce checks wordcount's running counts: for every word
// counted n times the output holds (word,1) to (word,n), each exactly once.
// A record lost or replayed into the output shows as a gap or a repeat.
func checkExactlyOnce(t *testing.T, output string, want map[string]int) {
	t.Helper()
	seen := map[string]map[int]int{}
	files := eachCount(t, output, func(word string, n int) {
		if seen[word] == nil {
			seen[word] = map[int]int{}
		}
		seen[word][n]++
	})
	if files == 0 {
		t.Fatalf("no part files in %s", output)
	}
	bad := 0
	for w, n := range want {
		for i := 1; i <= n; i++ {
			if got := seen[w][i]; got != 1 && bad < 10 {
				t.Errorf("(%s,%d) is in the output %d times, want once", w, i, got)
				bad++
			}
		}
		if len(seen[w]) != n && bad < 10 {
			t.Errorf("%s: %d distinct counts in the output, want %d", w, len(seen[w]), n)
			bad++
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d words in the output, want %d", len(seen), len(want))
	}
}

// recoveryRun starts wordcount per-job with checkpoints every 100 ms over
// an input paced by lineDelay, waits for a checkpoint, and returns the
// run, with the input's word counts and the output directory.
func recoveryRun(t *testing.T, c *cluster, lineDelay string, extra ...string) (*attachedRun, map[string]int, string) {
	return recoveryRunIn(t, c, filepath.Join(c.dir, "checkpoints"), lineDelay, extra...)
}

// recoveryRunIn is recoveryRun with its checkpoints in checkpointDir.
func recoveryRunIn(t *testing.T, c *cluster, checkpointDir, lineDelay string, extra ...string) (*attachedRun, map[string]int, string) {
	t.Helper()
	input, output := filepath.Join(c.dir, "words.txt"), filepath.Join(c.dir, "out")
	want := writeWords(t, input)
	args := append([]string{"-p", "2", "--slots-per-tm", "1", "--checkpoint-interval", "100ms", "--checkpoint-dir", checkpointDir,
		"--restart-strategy", "fixed-delay", "-D", "restart-strategy.fixed-delay.attempts=3", "-D", "restart-strategy.fixed-delay.delay=100ms",
		"-D", "state.checkpoints.num-retained=100"}, extra...)
	args = append(args, wordcountBin, "--input", input, "--output", output, "--line-delay", lineDelay)
	r := c.runAttached(args...)
	j := c.waitAppJob(r.id, func(j jobJSON) bool { return j.Checkpoints.Counts.Completed >= 2 }, "two checkpoints completed")
	web := regexp.MustCompile(`http://[0-9.:]+`).FindString(r.out.String())
	checkCheckpointsREST(t, web, j.ID)
	token := regexp.MustCompile(`/\?token=([0-9a-f]+)`).FindStringSubmatch(r.out.String())
	if token == nil {
		t.Fatalf("loom run printed no dashboard link with its token:\n%s", r.out.String())
	}
	checkJobManagerLog(t, web, token[1])
	return r, want, output
}

// checkTaskMetricsREST reads a running job's task metrics as Flink's
// dashboard does: the records its source vertex sends per second, its
// busy and back-pressured time, and the back-pressure view.
func checkTaskMetricsREST(t *testing.T, web, token, jobID string) {
	t.Helper()
	var job struct {
		Vertices []struct {
			ID string `json:"id"`
		} `json:"vertices"`
	}
	getJSON(t, web+"/jobs/"+jobID, &job)
	src := job.Vertices[0].ID
	waitFor(t, 20*time.Second, "the source's records per second", func() (bool, string) {
		var agg []struct {
			ID  string  `json:"id"`
			Sum float64 `json:"sum"`
		}
		getJSON(t, web+"/jobs/"+jobID+"/vertices/"+src+"/subtasks/metrics?get=numRecordsOutPerSecond,busyTimeMsPerSecond,backPressuredTimeMsPerSecond", &agg)
		got := map[string]float64{}
		for _, a := range agg {
			got[a.ID] = a.Sum
		}
		return len(agg) == 3 && got["numRecordsOutPerSecond"] > 0 && got["busyTimeMsPerSecond"] > 0, fmt.Sprint(agg)
	})
	var bp struct {
		Status   string `json:"status"`
		Level    string `json:"backpressureLevel"`
		Subtasks []struct {
			Ratio float64 `json:"ratio"`
		} `json:"subtasks"`
	}
	getJSON(t, web+"/jobs/"+jobID+"/vertices/"+src+"/backpressure", &bp)
	if bp.Status != "ok" || bp.Level == "" || len(bp.Subtasks) == 0 {
		t.Errorf("back pressure of the source: %+v", bp)
	}
	// The Timeline: when each subtask entered each state.
	var times struct {
		Subtasks []struct {
			Host       string           `json:"host"`
			Timestamps map[string]int64 `json:"timestamps"`
		} `json:"subtasks"`
	}
	getJSON(t, web+"/jobs/"+jobID+"/vertices/"+src+"/subtasktimes", &times)
	if len(times.Subtasks) == 0 {
		t.Fatal("subtasktimes lists no subtask")
	}
	for _, st := range times.Subtasks {
		ts := st.Timestamps
		if st.Host == "" || ts["CREATED"] == 0 || ts["DEPLOYING"] < ts["CREATED"] || ts["RUNNING"] < ts["DEPLOYING"] || ts["FINISHED"] != 0 {
			t.Errorf("a running subtask's times: %+v", st)
		}
	}
	// The vertex's subtasks by TaskManager, and its detail's durations.
	var tms struct {
		TaskManagers []struct {
			Status string         `json:"status"`
			End    int64          `json:"end-time"`
			Counts map[string]int `json:"status-counts"`
		} `json:"taskmanagers"`
	}
	getJSON(t, web+"/jobs/"+jobID+"/vertices/"+src+"/taskmanagers", &tms)
	if len(tms.TaskManagers) == 0 || tms.TaskManagers[0].Status != "RUNNING" || tms.TaskManagers[0].End != -1 || tms.TaskManagers[0].Counts["RUNNING"] == 0 {
		t.Errorf("the source's TaskManagers: %+v", tms)
	}
	var vd struct {
		Subtasks []struct {
			StartTime int64            `json:"start_time"`
			Durations map[string]int64 `json:"status-duration"`
		} `json:"subtasks"`
		Aggregated struct {
			Durations map[string]map[string]int64 `json:"status-duration"`
		} `json:"aggregated"`
	}
	getJSON(t, web+"/jobs/"+jobID+"/vertices/"+src, &vd)
	if len(vd.Subtasks) == 0 || vd.Subtasks[0].StartTime <= 0 || vd.Subtasks[0].Durations["RUNNING"] < 0 || vd.Aggregated.Durations["RUNNING"]["max"] < 0 {
		t.Errorf("the source's detail: %+v", vd)
	}
	// The job's and the processes' metrics, as the dashboard asks.
	var jobm, jmm []struct {
		ID    string `json:"id"`
		Value string `json:"value"`
	}
	getJSON(t, web+"/jobs/"+jobID+"/metrics?get=uptime,numRestarts", &jobm)
	if len(jobm) != 2 || jobm[0].ID != "uptime" || jobm[0].Value == "0" {
		t.Errorf("the job's metrics: %+v", jobm)
	}
	getJSON(t, web+"/jobmanager/metrics?get=Status.JVM.Memory.Heap.Used,Status.JVM.GarbageCollector.Go.Count", &jmm)
	if len(jmm) != 2 || jmm[0].Value == "0" {
		t.Errorf("the JobManager's metrics: %+v", jmm)
	}
	// The flame graph: Flink's "waiting" while the first sample is
	// taken, then the source's stacks.
	type node struct {
		Name     string  `json:"name"`
		Value    int64   `json:"value"`
		Children []*node `json:"children"`
	}
	var fg struct {
		End  int64 `json:"endTimestamp"`
		Data *node `json:"data"`
	}
	var has func(n *node, frame string) bool
	has = func(n *node, frame string) bool {
		if strings.Contains(n.Name, frame) {
			return true
		}
		return slices.ContainsFunc(n.Children, func(c *node) bool { return has(c, frame) })
	}
	waitFor(t, 30*time.Second, "a flame graph of the source", func() (bool, string) {
		req, _ := http.NewRequest(http.MethodGet, web+"/jobs/"+jobID+"/vertices/"+src+"/flamegraph?type=full", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&fg)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("the flame graph: %s, %v", resp.Status, err)
		}
		if fg.End != -3 && fg.End <= 0 {
			t.Fatalf("the flame graph of a running vertex: %+v", fg)
		}
		return fg.End > 0 && fg.Data != nil && fg.Data.Name == "root" && fg.Data.Value > 0 && has(fg.Data, "source.textFile.Run"), fmt.Sprintf("%+v", fg)
	})
}

// checkJobManagerLog reads the JobManager's log over REST, as Flink's
// dashboard does: its container's files, and what it logged. Logs need
// the web token even on a loopback address.
func checkJobManagerLog(t *testing.T, web, token string) {
	t.Helper()
	resp, err := http.Get(web + "/jobmanager/log")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the JobManager's log without the web token: %s, want 401", resp.Status)
	}
	getJSON := func(t *testing.T, url string, v any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	get := func(url string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		return http.DefaultClient.Do(req)
	}
	var list struct {
		Logs []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		} `json:"logs"`
	}
	getJSON(t, web+"/jobmanager/logs", &list)
	names := map[string]bool{}
	for _, l := range list.Logs {
		names[l.Name] = true
	}
	if !names["stderr"] || !names["stdout"] {
		t.Errorf("/jobmanager/logs: %+v, want the container's stderr and stdout", list)
	}
	resp, err = get(web + "/jobmanager/log")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "checkpoint completed") {
		t.Errorf("/jobmanager/log: %s, %d bytes, want the JobManager's log with its checkpoints", resp.Status, len(b))
	}
	// A TaskManager's, fetched from its container's NodeManager.
	var tms struct {
		TaskManagers []struct {
			ID string `json:"id"`
		} `json:"taskmanagers"`
	}
	getJSON(t, web+"/taskmanagers", &tms)
	if len(tms.TaskManagers) == 0 {
		t.Fatal("no TaskManagers over REST")
	}
	id := tms.TaskManagers[0].ID
	getJSON(t, web+"/taskmanagers/"+id+"/logs", &list)
	if len(list.Logs) != 2 || list.Logs[0].Size <= 0 {
		t.Errorf("/taskmanagers/%s/logs: %+v, want stderr and stdout", id, list)
	}
	resp2, err := get(web + "/taskmanagers/" + id + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	b, _ = io.ReadAll(resp2.Body)
	if resp2.StatusCode != http.StatusOK || !strings.Contains(string(b), "TaskManager started") {
		t.Errorf("/taskmanagers/%s/log: %s, %q", id, resp2.Status, lastLines(string(b), 3))
	}
	// Thread dumps, as the dashboard's pages show them: the JobManager's
	// goroutines; a TaskManager's and its job worker's, whose goroutines
	// run the tasks.
	type dump struct {
		ThreadInfos []struct {
			Name  string `json:"threadName"`
			Stack string `json:"stringifiedThreadInfo"`
		} `json:"threadInfos"`
	}
	var jd, td dump
	getJSON(t, web+"/jobmanager/thread-dump", &jd)
	if len(jd.ThreadInfos) < 2 || !strings.Contains(jd.ThreadInfos[0].Name, "jobmanager") || !strings.Contains(jd.ThreadInfos[0].Stack, "goroutine") && !strings.Contains(jd.ThreadInfos[0].Stack, ".go:") {
		t.Errorf("/jobmanager/thread-dump: %d goroutines, first %+v", len(jd.ThreadInfos), jd.ThreadInfos[:min(1, len(jd.ThreadInfos))])
	}
	getJSON(t, web+"/taskmanagers/"+id+"/thread-dump", &td)
	worker, task := false, false
	for _, ti := range td.ThreadInfos {
		if strings.Contains(ti.Name, "worker of job") {
			worker = true
			task = task || strings.Contains(ti.Stack, "github.com/loom-project/loom/flinkrt/task.")
		}
	}
	if !worker || !task {
		t.Errorf("/taskmanagers/%s/thread-dump: %d goroutines, a worker's %v, a task's %v", id, len(td.ThreadInfos), worker, task)
	}
}

// checkCheckpointsREST reads the job's checkpoints from the JobManager's
// REST API, as Flink's dashboard does, and checks the latest one's
// metadata file is where it says.
func checkCheckpointsREST(t *testing.T, web, jobID string) {
	t.Helper()
	resp, err := http.Get(web + "/jobs/" + jobID + "/checkpoints")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cps struct {
		Counts struct {
			Completed int `json:"completed"`
		} `json:"counts"`
		Latest struct {
			Completed struct {
				ID     int    `json:"id"`
				Status string `json:"status"`
				Path   string `json:"external_path"`
			} `json:"completed"`
		} `json:"latest"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cps); err != nil {
		t.Fatal(err)
	}
	if cps.Counts.Completed < 2 || cps.Latest.Completed.Status != "COMPLETED" {
		t.Fatalf("checkpoints: %+v", cps)
	}
	if ok, err := storage.Exists(context.Background(), storage.Join(cps.Latest.Completed.Path, "_metadata")); !ok || err != nil {
		t.Errorf("the latest checkpoint's metadata in %s: %v, %v", cps.Latest.Completed.Path, ok, err)
	}
	// Its details, vertex by vertex and subtask by subtask.
	var detail struct {
		Status string `json:"status"`
		Tasks  map[string]struct {
			Subtasks int `json:"num_subtasks"`
			Acked    int `json:"num_acknowledged_subtasks"`
		} `json:"tasks"`
	}
	base := fmt.Sprintf("%s/jobs/%s/checkpoints/details/%d", web, jobID, cps.Latest.Completed.ID)
	getJSON(t, base, &detail)
	if detail.Status != "COMPLETED" || len(detail.Tasks) == 0 {
		t.Fatalf("checkpoint %d's details: %+v", cps.Latest.Completed.ID, detail)
	}
	for vid, v := range detail.Tasks {
		if v.Subtasks == 0 || v.Acked != v.Subtasks {
			t.Errorf("vertex %s of checkpoint %d: %d of %d subtasks acknowledged", vid, cps.Latest.Completed.ID, v.Acked, v.Subtasks)
		}
		var sub struct {
			Subtasks []struct {
				Status     string `json:"status"`
				Ack        int64  `json:"ack_timestamp"`
				EndToEnd   int64  `json:"end_to_end_duration"`
				StartDelay *int64 `json:"start_delay"`
			} `json:"subtasks"`
		}
		getJSON(t, base+"/subtasks/"+vid, &sub)
		if len(sub.Subtasks) != v.Subtasks || sub.Subtasks[0].Status != "completed" || sub.Subtasks[0].Ack == 0 {
			t.Errorf("checkpoint %d, vertex %s, by subtask: %+v", cps.Latest.Completed.ID, vid, sub)
		}
		// A subtask's first barrier came after the trigger and before
		// its acknowledgement.
		for i, st := range sub.Subtasks {
			if st.StartDelay == nil || *st.StartDelay < 0 || *st.StartDelay > st.EndToEnd {
				t.Errorf("checkpoint %d, vertex %s, subtask %d: start delay %v of %d ms end to end", cps.Latest.Completed.ID, vid, i, st.StartDelay, st.EndToEnd)
			}
		}
	}
}

// A TaskManager killed -9 mid-run: the job restarts from its latest
// checkpoint on a new TaskManager and finishes with every word counted
// exactly once.
func TestPerJobRecoversFromTaskManagerKill(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	r, want, output := recoveryRun(t, c, "3ms")
	c.killATaskManagerAndFinish(r, want, output)
}

// killATaskManagerAndFinish kills one of the run's two TaskManagers -9
// and checks the job restarts, finishes, and counted every word once.
func (c *cluster) killATaskManagerAndFinish(r *attachedRun, want map[string]int, output string) {
	t := c.t
	t.Helper()
	tms := appProcsRunning(r.id, "loom taskmanager")
	if len(tms) != 2 {
		t.Fatalf("TaskManager processes: %v", tms)
	}
	if err := syscall.Kill(tms[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("run exited %d after a TaskManager was killed, want 0:\n%s\n%s", code, r.out.String(), r.errb.String())
	}
	if out := r.out.String(); !strings.Contains(out, "RESTARTING") || !strings.Contains(out, "FINISHED") {
		t.Errorf("run's output does not show the job restarting and finishing:\n%s", out)
	}
	t.Logf("run:\n%s", r.out.String())
	checkExactlyOnce(t, output, want)
	// A job that recovered and finished did not fail: its application's
	// diagnostics say how it ended, not what it recovered from.
	if a := c.app(r.id); a.FinalStatus != "SUCCEEDED" || !regexp.MustCompile(`FINISHED \(after \d+ restarts?\)$`).MatchString(a.Diagnostics) || strings.Contains(a.Diagnostics, "TaskManager") {
		t.Errorf("the recovered job's application: %s, %q", a.FinalStatus, a.Diagnostics)
	}
	c.waitNoProcessOf(r.id)
}

// A job worker killed -9 mid-run: its TaskManager stays, a new worker
// runs the restarted job, and every word is counted exactly once.
func TestPerJobRecoversFromWorkerKill(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	r, want, output := recoveryRun(t, c, "3ms")
	workers := appProcsRunning(r.id, "--line-delay")
	if len(workers) != 2 {
		t.Fatalf("worker processes: %v", workers)
	}
	if err := syscall.Kill(workers[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("run exited %d after a worker was killed, want 0:\n%s\n%s", code, r.out.String(), r.errb.String())
	}
	if tms := appProcsRunning(r.id, "loom taskmanager"); len(tms) > 2 {
		t.Errorf("TaskManagers: %v; a worker's death needs no new TaskManager", tms)
	}
	checkExactlyOnce(t, output, want)
	c.waitNoProcessOf(r.id)
}

// The AM killed -9 mid-run: the RM starts a second attempt, whose
// JobMaster finds the job's latest checkpoint in checkpoint storage and
// resumes from it on the first attempt's TaskManagers, which follow it;
// every word is counted exactly once.
func TestPerJobRecoversFromAMKill(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	started := time.Now()
	r, want, output := recoveryRun(t, c, "3ms")
	tms := appProcsRunning(r.id, "loom taskmanager")
	if len(tms) != 2 {
		t.Fatalf("TaskManager processes: %v", tms)
	}
	ams := appProcsRunning(r.id, "loom am ")
	if len(ams) != 1 {
		t.Fatalf("AM processes: %v", ams)
	}
	if err := syscall.Kill(ams[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("run exited %d after the AM was killed, want 0:\n%s\n%s", code, r.out.String(), r.errb.String())
	}
	out := r.out.String()
	if !strings.Contains(out, "started attempt") || !strings.Contains(out, "FINISHED") {
		t.Errorf("run's output does not show a second attempt finishing the job:\n%s", out)
	}
	t.Logf("run:\n%s", out)
	// The job's time is the whole job's, both attempts'.
	if m := regexp.MustCompile(`FINISHED after (\S+)`).FindStringSubmatch(out); m == nil {
		t.Errorf("no job duration in the run's output")
	} else if d, err := time.ParseDuration(m[1]); err != nil || d < time.Since(started)-5*time.Second || d > time.Since(started) {
		t.Errorf("the job took %s by its end line, %s since the run started: want both attempts counted", m[1], time.Since(started).Round(time.Millisecond))
	}
	checkExactlyOnce(t, output, want)
	if _, n := countRoles(c.app(r.id)); n != 2 {
		t.Errorf("%d TaskManager containers, want the first attempt's 2 kept", n)
	}
	if strings.Count(out, "TaskManager container") != 2 {
		t.Errorf("the second attempt started TaskManager containers of its own:\n%s", out)
	}
	c.waitNoProcessOf(r.id)
}

// A NodeManager killed -9 mid-run, with the TaskManager it ran: the job
// restarts on a TaskManager in a container elsewhere and counts every
// word exactly once.
func TestPerJobRecoversFromNodeManagerKill(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	r, want, output := recoveryRun(t, c, "3ms")
	// A node with a TaskManager, one without the AM if there is one (a
	// node with the AM takes the AM down too, which the RM restarts).
	var amNode, victim string
	cs := c.app(r.id).Containers
	for _, ct := range cs {
		if ct.IsAM {
			amNode = ct.NodeID
		}
	}
	for _, ct := range cs {
		if !ct.IsAM && ct.State == "RUNNING" && (victim == "" || victim == amNode) {
			victim = ct.NodeID
		}
	}
	if victim == "" {
		t.Fatalf("no TaskManager container running: %+v", cs)
	}
	if err := syscall.Kill(c.nmPid(victim), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("run exited %d after a NodeManager was killed, want 0:\n%s\n%s", code, r.out.String(), r.errb.String())
	}
	t.Logf("run:\n%s", r.out.String())
	checkExactlyOnce(t, output, want)
	c.waitNoProcessOf(r.id)
}

var savepointPathRe = regexp.MustCompile(`Savepoint completed\. Path: (\S+)`)

// A savepoint taken over REST and one with `loom job savepoint` leave the
// job running; `loom job stop` takes a last one and ends the job
// FINISHED. That savepoint restores into a changed job (no --line-delay
// operator) through the UIDs of its stateful operators, and the two runs
// together count every word exactly once.
func TestSavepointRestoresIntoAChangedJob(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	r, want, output := recoveryRun(t, c, "10ms")
	j := c.waitAppJob(r.id, func(j jobJSON) bool { return j.State == "RUNNING" }, "the job RUNNING")
	link := regexp.MustCompile(`(http://[0-9.:]+)/\?token=([0-9a-f]+)`).FindStringSubmatch(r.out.String())
	if link == nil {
		t.Fatalf("loom run printed no dashboard link:\n%s", r.out.String())
	}
	checkTaskMetricsREST(t, link[1], link[2], j.ID)
	spDir := filepath.Join(c.dir, "savepoints")

	// A savepoint through the REST API takes the web token of the
	// dashboard link `loom run` printed.
	web := link[1]
	req, _ := http.NewRequest(http.MethodPost, web+"/jobs/"+j.ID+"/savepoints", bytes.NewBufferString(`{"target-directory":"`+spDir+`","cancel-job":false}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+link[2])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var trigger struct {
		ID string `json:"request-id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&trigger)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || trigger.ID == "" {
		t.Fatalf("POST savepoints: %s, request-id %q", resp.Status, trigger.ID)
	}
	var st struct {
		Status struct {
			ID string `json:"id"`
		} `json:"status"`
		Operation struct {
			Location string          `json:"location"`
			Failure  json.RawMessage `json:"failure-cause"`
		} `json:"operation"`
	}
	waitFor(t, 30*time.Second, "the REST savepoint to complete", func() (bool, string) {
		resp, err := http.Get(web + "/jobs/" + j.ID + "/savepoints/" + trigger.ID)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st.Status.ID == "COMPLETED", st.Status.ID
	})
	if st.Operation.Failure != nil || !strings.HasPrefix(st.Operation.Location, "file:"+spDir+"/savepoint-") {
		t.Fatalf("REST savepoint: %+v %s", st.Operation, st.Operation.Failure)
	}

	out := c.mustLoom("job", "savepoint", "--app", r.id, "--dir", spDir, j.ID)
	if m := savepointPathRe.FindStringSubmatch(out); m == nil {
		t.Fatalf("job savepoint said:\n%s", out)
	} else if _, err := os.Stat(filepath.Join(m[1], "_metadata")); err != nil {
		t.Fatalf("job savepoint: %v", err)
	}
	if j := c.waitAppJob(r.id, func(jobJSON) bool { return true }, "the job"); j.State != "RUNNING" {
		t.Fatalf("after a savepoint the job is %s, want RUNNING", j.State)
	}

	out = c.mustLoom("job", "stop", "--app", r.id, "--savepoint-dir", spDir, j.ID)
	m := savepointPathRe.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "FINISHED") {
		t.Fatalf("job stop said:\n%s", out)
	}
	// The stop is what ended the job, not what its tasks saw of it.
	if !strings.Contains(out, "FINISHED after") || !strings.Contains(out, "stopped with a savepoint at "+m[1]) || strings.Contains(out, "broke") {
		t.Errorf("job stop does not say the job ended as stopped:\n%s", out)
	}
	t.Logf("job stop:\n%s", out)
	if code := r.wait(t); code != 0 {
		t.Fatalf("the stopped job's run exited %d, want 0:\n%s\n%s", code, r.out.String(), r.errb.String())
	}
	if !strings.Contains(r.out.String(), "stopped with a savepoint at") || strings.Contains(r.errb.String(), "cause:") {
		t.Errorf("the attached run does not say the job was stopped:\n%s\n%s", r.out.String(), r.errb.String())
	}
	if a := c.app(r.id); a.FinalStatus != "SUCCEEDED" {
		t.Errorf("stopped job's app: %s, want SUCCEEDED", a.FinalStatus)
	}

	input := filepath.Join(c.dir, "words.txt")
	out = c.mustLoom("run", "-t", "per-job", "-p", "2", "--slots-per-tm", "1", "--checkpoint-interval", "100ms",
		"--checkpoint-dir", filepath.Join(c.dir, "checkpoints"), "-s", m[1], wordcountBin, "--input", input, "--output", output)
	if !strings.Contains(out, "FINISHED") {
		t.Fatalf("the restored run said:\n%s", out)
	}
	t.Logf("the restored run:\n%s", out)
	checkExactlyOnce(t, output, want)
}

// vertexSubtask is a subtask as the JobManager's REST API shows it.
type vertexSubtask struct {
	Subtask int    `json:"subtask"`
	Status  string `json:"status"`
	Attempt int    `json:"attempt"`
	TM      string `json:"taskmanager-id"`
}

// subtasksOf reads the subtasks of a job's only vertex over REST.
func subtasksOf(t *testing.T, web, jobID string) []vertexSubtask {
	t.Helper()
	var job struct {
		Vertices []struct {
			ID string `json:"id"`
		} `json:"vertices"`
	}
	getJSON(t, web+"/jobs/"+jobID, &job)
	if len(job.Vertices) != 1 {
		t.Fatalf("job %s has %d vertices, want one chained vertex", jobID, len(job.Vertices))
	}
	var v struct {
		Subtasks []vertexSubtask `json:"subtasks"`
	}
	getJSON(t, web+"/jobs/"+jobID+"/vertices/"+job.Vertices[0].ID, &v)
	return v.Subtasks
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// A TaskManager killed -9 under grep, whose four parallel instances are
// four pipelined regions on two TaskManagers: only the two regions it ran
// restart, from the latest checkpoint, on a new TaskManager; the other two
// run on in their first attempt and the job never leaves RUNNING. Every
// matching line is in the output exactly once.
func TestRegionFailoverRestartsOnlyTheLostRegions(t *testing.T) {
	regionFailover(t, "loom taskmanager")
}

// The same with a job worker killed -9: its TaskManager stays and runs the
// two restarted regions in a new worker.
func TestRegionFailoverAfterAWorkerKill(t *testing.T) {
	regionFailover(t, "--line-delay")
}

// regionFailover runs grep at -p 4 on two TaskManagers, kills -9 the
// first process of the application whose command line holds victim, and
// checks that only two subtasks restarted and the output is exactly once.
func regionFailover(t *testing.T, victim string) {
	c := startCluster(t, clusterOpts{nodes: 3})
	input, output := filepath.Join(c.dir, "lines.txt"), filepath.Join(c.dir, "out")
	var text strings.Builder
	want := map[string]int{}
	for i := 0; i < 4000; i++ {
		line := fmt.Sprintf("line %05d", i)
		text.WriteString(line + "\n")
		if i%2 == 0 {
			want[line] = 1
		}
	}
	if err := os.WriteFile(input, []byte(text.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := c.runAttached("-p", "4", "--slots-per-tm", "2", "--checkpoint-interval", "100ms", "--checkpoint-dir", filepath.Join(c.dir, "checkpoints"),
		"--restart-strategy", "fixed-delay", "-D", "restart-strategy.fixed-delay.attempts=3", "-D", "restart-strategy.fixed-delay.delay=100ms",
		grepBin, "--input", input, "--output", output, "--line-delay", "3ms", "[02468]$")
	j := c.waitAppJob(r.id, func(j jobJSON) bool { return j.Checkpoints.Counts.Completed >= 2 }, "two checkpoints completed")
	web := regexp.MustCompile(`http://[0-9.:]+`).FindString(r.out.String())
	before := subtasksOf(t, web, j.ID)
	victims := appProcsRunning(r.id, victim)
	if len(before) != 4 || len(victims) != 2 {
		t.Fatalf("subtasks %+v in processes %v (%q): want 4 in 2", before, victims, victim)
	}
	if err := syscall.Kill(victims[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The job restarts two subtasks, which run again in attempt 1; the
	// other two are still in attempt 0 on the TaskManager that lived.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run:\n%s\n%s", r.out.String(), r.errb.String())
		}
	})
	var after []vertexSubtask
	waitFor(t, 60*time.Second, "two subtasks in attempt 1 running", func() (bool, string) {
		after = subtasksOf(t, web, j.ID)
		n := 0
		for _, st := range after {
			if st.Attempt == 1 && st.Status == "RUNNING" {
				n++
			}
		}
		return n == 2, fmt.Sprintf("%+v", after)
	})
	survivors := map[string]bool{}
	for i, st := range after {
		if st.Attempt == 0 {
			survivors[before[i].TM] = true
			if st.TM != before[i].TM {
				t.Errorf("subtask %d in attempt 0 moved from %s to %s", i, before[i].TM, st.TM)
			}
		}
	}
	if len(survivors) != 1 {
		t.Errorf("subtasks before %+v and after %+v: want the two of one TaskManager untouched", before, after)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("run exited %d after %q was killed, want 0:\n%s\n%s", code, victim, r.out.String(), r.errb.String())
	}
	out := r.out.String()
	if strings.Contains(out, "RESTARTING") || !strings.Contains(out, "FINISHED") {
		t.Errorf("run's output should show the job finishing without a restart of the whole job:\n%s", out)
	}
	t.Logf("run:\n%s", out)
	got := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(output, "part-*"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if line != "" {
				got[line]++
			}
		}
	}
	bad := 0
	for line := range want {
		if got[line] != 1 && bad < 10 {
			t.Errorf("%q is in the output %d times, want once", line, got[line])
			bad++
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d distinct lines in the output, want %d", len(got), len(want))
	}
	c.waitNoProcessOf(r.id)
}

// A savepoint of wordcount at -p 2 restores at -p 3: the running counts,
// state by key, are split over the new subtasks by key group, the text
// source's unread input and the text sink's part files over the new
// subtasks by splits, and the two runs together count every word exactly
// once.
func TestSavepointRestoresAtAnotherParallelism(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	input, output := filepath.Join(c.dir, "words.txt"), filepath.Join(c.dir, "out")
	want := writeWords(t, input)
	r := c.runAttached("-p", "2", "--slots-per-tm", "2", "--checkpoint-interval", "100ms", "--checkpoint-dir", filepath.Join(c.dir, "checkpoints"),
		wordcountBin, "--input", input, "--output", output, "--line-delay", "5ms")
	j := c.waitAppJob(r.id, func(j jobJSON) bool { return j.Checkpoints.Counts.Completed >= 2 }, "two checkpoints completed")
	out := c.mustLoom("job", "stop", "--app", r.id, "--savepoint-dir", filepath.Join(c.dir, "savepoints"), j.ID)
	m := savepointPathRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("job stop said:\n%s", out)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("the stopped run exited %d:\n%s", code, r.errb.String())
	}

	out = c.mustLoom("run", "-t", "per-job", "-p", "3", "--slots-per-tm", "3", "--checkpoint-interval", "100ms",
		"--checkpoint-dir", filepath.Join(c.dir, "checkpoints"), "-s", m[1], wordcountBin, "--input", input, "--output", output)
	if !strings.Contains(out, "FINISHED") {
		t.Fatalf("the run at -p 3 from the savepoint said:\n%s", out)
	}
	checkExactlyOnce(t, output, want)
}
