package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loom-project/loom/localcluster"
)

// appProcs returns the pids of every process of an application.
func appProcs(appID string) []int { return localcluster.AppProcesses(appID, "") }

// appProcsRunning returns the pids of an application's processes whose
// command line contains s.
func appProcsRunning(appID, s string) []int { return localcluster.AppProcesses(appID, s) }

func (c *cluster) waitNoProcessOf(appID string) {
	c.t.Helper()
	waitFor(c.t, 20*time.Second, "no process of "+appID+" left", func() (bool, string) {
		pids := appProcs(appID)
		return len(pids) == 0, fmt.Sprintf("still running: %v", pids)
	})
}

// jobs lists the jobs of a Flink application's JobManager.
func (c *cluster) jobs(appID string) ([]jobJSON, error) {
	out, errs, code := c.loom("job", "list", "--app", appID, "-o", "json")
	if code != 0 {
		return nil, fmt.Errorf("job list: exit %d: %s", code, errs)
	}
	var jobs []jobJSON
	if err := json.Unmarshal([]byte(out), &jobs); err != nil {
		return nil, err
	}
	return jobs, nil
}

// waitAppJob waits until the application's one job satisfies cond.
func (c *cluster) waitAppJob(appID string, cond func(jobJSON) bool, what string) jobJSON {
	c.t.Helper()
	var j jobJSON
	waitFor(c.t, 60*time.Second, what, func() (bool, string) {
		jobs, err := c.jobs(appID)
		if err != nil {
			return false, err.Error()
		}
		if len(jobs) != 1 {
			return false, fmt.Sprintf("jobs: %+v", jobs)
		}
		j = jobs[0]
		return cond(j), fmt.Sprintf("%+v", j)
	})
	return j
}

func (c *cluster) waitApp(appID string, cond func(appJSON) bool, what string) appJSON {
	c.t.Helper()
	var a appJSON
	waitFor(c.t, 60*time.Second, what, func() (bool, string) {
		a = c.app(appID)
		return cond(a), fmt.Sprintf("%s %s %q", a.State, a.FinalStatus, a.Diagnostics)
	})
	return a
}

var appIDRe = regexp.MustCompile(`application_\d+_\d+`)

// runDetached starts a per-job application with -d and returns its id.
func (c *cluster) runDetached(args ...string) string {
	c.t.Helper()
	out := c.mustLoom(append([]string{"run", "-t", "per-job", "-d"}, args...)...)
	id := appIDRe.FindString(out)
	if id == "" || !strings.Contains(out, "JobManager web interface: http://") {
		c.t.Fatalf("run -d said:\n%s", out)
	}
	return id
}

func countRoles(a appJSON) (am, tm int) {
	for _, ct := range a.Containers {
		if ct.IsAM {
			am++
		} else {
			tm++
		}
	}
	return am, tm
}

// wordcount per-job at -p 4 with 2 slots per TaskManager, its input and
// output named relative to the directory `loom run` runs in: one AM, two
// TaskManager containers, every word counted in that directory, the
// application SUCCEEDED and nothing of it left running. A second run
// into the same output is refused before it is submitted.
func TestPerJobWordCount(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	input := filepath.Join(c.dir, "words.txt")
	want := writeWords(t, input)
	output := filepath.Join(c.dir, "out")
	inDir := func(args ...string) (string, int) {
		cmd := c.command(context.Background(), args...)
		cmd.Dir = c.dir
		b, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(b), code
	}
	out, code := inDir("run", "-t", "per-job", "-p", "4", "--slots-per-tm", "2", wordcountBin, "--input", "words.txt", "--output", "out")
	if code != 0 {
		t.Fatalf("loom run exited %d:\n%s", code, out)
	}
	for _, step := range []string{"submitted application", "ACCEPTED", "ApplicationMaster running", "TaskManager container", "job WordCount RUNNING", "FINISHED (SUCCEEDED)"} {
		if !strings.Contains(out, step) {
			t.Errorf("run's output lacks %q:\n%s", step, out)
		}
	}
	// The job's end as followed, or, when its JobManager went with the
	// application before the next look, as the AM's final report says.
	if !strings.Contains(out, "job WordCount FINISHED") && !regexp.MustCompile(`(?m)^Job [0-9a-f]{32} FINISHED`).MatchString(out) {
		t.Errorf("run's output does not say the job FINISHED:\n%s", out)
	}
	checkCounts(t, output, 4, want)
	id := appIDRe.FindString(out)
	a := c.app(id)
	if a.State != "FINISHED" || a.FinalStatus != "SUCCEEDED" {
		t.Errorf("app %s %s, want FINISHED SUCCEEDED (%s)", a.State, a.FinalStatus, a.Diagnostics)
	}
	if am, tm := countRoles(a); am != 1 || tm != 2 {
		t.Errorf("%d AM and %d TaskManager containers, want 1 and 2: %+v", am, tm, a.Containers)
	}
	c.waitNoProcessOf(id)

	again, code := inDir("run", "-t", "per-job", "-p", "2", wordcountBin, "--input", "words.txt", "--output", "out")
	if code == 0 || !strings.Contains(again, output+" already holds 4 files") || strings.Contains(again, "submitted application") {
		t.Errorf("a second run into the same output: exit %d:\n%s\nwant it refused before it is submitted", code, again)
	}
}

// A detached long-running job, found and listed through its application,
// then `loom app kill`: everything of it gone.
func TestPerJobDetachedThenAppKill(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	id := c.runDetached("-p", "2", topspeedBin, "--duration", "0", "--output", filepath.Join(c.dir, "out"))
	c.waitAppJob(id, func(j jobJSON) bool {
		return j.State == "RUNNING" && j.Tasks.Running == j.Tasks.Total && j.Tasks.Total > 0
	}, "all tasks RUNNING")
	if status := c.mustLoom("app", "status", id); !strings.Contains(status, "AM (JobManager)") || strings.Count(status, "TaskManager ") != 2 {
		t.Errorf("app status does not show the AM and 2 TaskManagers:\n%s", status)
	}
	c.mustLoom("app", "kill", id)
	c.waitNoProcessOf(id)
	if a := c.app(id); a.State != "KILLED" {
		t.Errorf("app %s after kill", a.State)
	}
	_, errs, code := c.loom("job", "list", "--app", id)
	if code == 0 || !strings.Contains(errs, "has ended") {
		t.Errorf("job list of a killed app: exit %d, %q", code, errs)
	}
}

// `loom job cancel --app` ends the job CANCELED and the application
// KILLED.
func TestPerJobCancel(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	id := c.runDetached("-p", "2", topspeedBin, "--duration", "0", "--output", filepath.Join(c.dir, "out"))
	j := c.waitAppJob(id, func(j jobJSON) bool { return j.State == "RUNNING" }, "the job RUNNING")
	if out := c.mustLoom("job", "cancel", "--app", id, j.ID); !strings.Contains(out, "CANCELED") {
		t.Errorf("job cancel said %q", out)
	}
	c.waitApp(id, func(a appJSON) bool { return a.FinalStatus == "KILLED" }, "the app to end KILLED")
	c.waitNoProcessOf(id)
}

// attachedRun is `loom run -t per-job` running attached.
type attachedRun struct {
	cmd       *exec.Cmd
	out, errb syncBuffer
	done      chan error
	id        string
}

// syncBuffer is a buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runAttached starts `loom run -t per-job ARGS` and waits until all the
// job's tasks are RUNNING.
func (c *cluster) runAttached(args ...string) *attachedRun {
	c.t.Helper()
	r := &attachedRun{done: make(chan error, 1)}
	r.cmd = c.command(context.Background(), append([]string{"run", "-t", "per-job"}, args...)...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.errb
	if err := r.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	c.t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
		}
	})
	waitFor(c.t, 30*time.Second, "the application id", func() (bool, string) {
		r.id = appIDRe.FindString(r.out.String())
		return r.id != "", r.out.String()
	})
	c.waitAppJob(r.id, func(j jobJSON) bool {
		return j.State == "RUNNING" && j.Tasks.Running == j.Tasks.Total && j.Tasks.Total > 0
	}, "all tasks RUNNING")
	return r
}

// wait waits for the run to end and returns its exit status.
func (r *attachedRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(60 * time.Second):
		t.Fatalf("run did not end:\n%s\n%s", r.out.String(), r.errb.String())
		return -1
	}
}

// Ctrl-C on an attached run cancels the job and ends the application.
func TestPerJobInterruptCancels(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	r := c.runAttached("-p", "2", topspeedBin, "--duration", "0", "--output", filepath.Join(c.dir, "out"))
	c.waitAppJob(r.id, func(j jobJSON) bool { return j.State == "RUNNING" && j.Tasks.Running == j.Tasks.Total }, "all tasks RUNNING")
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 1 {
		t.Errorf("run exited %d after Ctrl-C, want 1", code)
	}
	// The run says the user's interrupt ended the job, not the broken
	// connections of the tasks it canceled.
	out, errs := r.out.String(), r.errb.String()
	if !strings.Contains(out, "canceling job") || !strings.Contains(out, "CANCELED") || !strings.Contains(out, "the attached `loom run` was interrupted") ||
		strings.Contains(out+errs, "broke") || strings.Contains(errs, "cause:") {
		t.Errorf("run's output:\n%s\n%s", out, errs)
	}
	c.waitApp(r.id, func(a appJSON) bool { return a.FinalStatus == "KILLED" }, "the app to end KILLED")
	c.waitNoProcessOf(r.id)
}

// A TaskManager killed -9 fails the job with a cause that says what
// broke, and the application ends FAILED with nothing left.
func TestPerJobTaskManagerKilled(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	r := c.runAttached("-p", "2", topspeedBin, "--duration", "0", "--output", filepath.Join(c.dir, "out"))
	id := r.id
	tms := appProcsRunning(id, "loom taskmanager")
	if len(tms) != 2 {
		t.Fatalf("TaskManager processes: %v", tms)
	}
	if err := syscall.Kill(tms[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 1 {
		t.Errorf("run exited %d after a TaskManager was killed, want 1", code)
	}
	out, errs := r.out.String(), r.errb.String()
	if !strings.Contains(out, "job CarTopSpeedWindowingExample FAILED") || !strings.Contains(errs, "cause: ") {
		t.Errorf("run's output does not say the job failed and why:\n%s\n%s", out, errs)
	}
	if !regexp.MustCompile(`TaskManager|broke|exited`).MatchString(errs) {
		t.Errorf("the cause does not say what broke: %s", errs)
	}
	if a := c.app(id); a.FinalStatus != "FAILED" {
		t.Errorf("app final status %s, want FAILED", a.FinalStatus)
	}
	c.waitNoProcessOf(id)
}

// The AM killed -9: the RM starts a second attempt, whose JobManager runs
// the job again.
func TestPerJobAMKilled(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	id := c.runDetached("-p", "2", topspeedBin, "--duration", "0", "--output", filepath.Join(c.dir, "out"))
	first := c.waitAppJob(id, func(j jobJSON) bool { return j.State == "RUNNING" }, "the job RUNNING")
	ams := appProcsRunning(id, "loom am ")
	if len(ams) != 1 {
		t.Fatalf("AM processes: %v", ams)
	}
	if err := syscall.Kill(ams[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var attempts struct {
		Attempts []struct {
			ID    string `json:"appAttemptId"`
			State string `json:"appAttemptState"`
		} `json:"appAttempts"`
	}
	waitFor(t, 60*time.Second, "a second attempt", func() (bool, string) {
		_ = json.Unmarshal([]byte(c.mustLoom("app", "status", id, "-o", "json")), &attempts)
		return len(attempts.Attempts) == 2, fmt.Sprintf("%+v", attempts)
	})
	again := c.waitAppJob(id, func(j jobJSON) bool {
		return j.State == "RUNNING" && j.Tasks.Running == j.Tasks.Total && j.Tasks.Total > 0
	}, "the job RUNNING in the second attempt")
	if again.ID != first.ID {
		t.Errorf("the second attempt runs job %s, want %s", again.ID, first.ID)
	}
	if tms := appProcsRunning(id, "loom taskmanager"); len(tms) != 2 {
		t.Errorf("TaskManagers after the AM's restart: %v, want the new attempt's 2", tms)
	}
	c.mustLoom("job", "cancel", "--app", id, again.ID)
	c.waitApp(id, func(a appJSON) bool { return a.FinalStatus == "KILLED" }, "the app to end KILLED")
	c.waitNoProcessOf(id)
}

// A job needing more slots than the cluster can give waits, and says
// why; the cluster goes on serving others.
func TestPerJobWaitsForSlotsTheClusterCannotGive(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 1, memoryMB: 1024})
	id := c.runDetached("-p", "4", "--tm-memory-mb", "512", topspeedBin, "--duration", "0")
	j := c.waitAppJob(id, func(j jobJSON) bool { return strings.Contains(j.Diag, "not allocated") }, "a diagnostic for the missing containers")
	if j.State != "CREATED" || !strings.Contains(j.Diag, "3 TaskManager containers (512 MB") || !strings.Contains(j.Diag, "free on 1 node") {
		t.Errorf("job %s, diagnostic %q", j.State, j.Diag)
	}
	if nodes := c.nodes(false); len(nodes) != 1 || nodes[0].State != "RUNNING" {
		t.Errorf("nodes: %+v", nodes)
	}
	c.mustLoom("app", "kill", id)
	c.waitNoProcessOf(id)
	// The freed cluster runs the next job.
	if out := c.mustLoom("run", "-t", "per-job", "-p", "1", wordcountBin, "--discard"); !strings.Contains(out, "FINISHED (SUCCEEDED)") {
		t.Errorf("the next job:\n%s", out)
	}
}

// An artifact that is not a loom job is refused at the client, and
// nothing is submitted.
func TestPerJobRefusesWhatIsNotAJob(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 1})
	for _, prog := range [][]string{{"/bin/true"}, {filepath.Join(c.dir, "nothing-here")}} {
		_, errs, code := c.loom(append([]string{"run", "-t", "per-job"}, prog...)...)
		if code == 0 || !regexp.MustCompile(`not a loom job|no such file`).MatchString(errs) {
			t.Errorf("run %v: exit %d, stderr %q", prog, code, errs)
		}
	}
	_, errs, code := c.loom("run", "-t", "per-job", "--tm-memory-mb", "100000", wordcountBin)
	if code == 0 || !strings.Contains(errs, "maximum allocation") {
		t.Errorf("a TaskManager above the maximum allocation: exit %d, %q", code, errs)
	}
	if out := c.mustLoom("app", "list", "--all"); !strings.Contains(out, "Total number of applications: 0") {
		t.Errorf("something was submitted:\n%s", out)
	}
}

// `loom run -t per-job --web-dir` ships a dashboard build to the AM, whose
// JobManager serves it at the tracking URL beside its REST API.
func TestPerJobServesADashboard(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	web := filepath.Join(t.TempDir(), "web")
	m := marker()
	for name, body := range map[string]string{"index.html": "<html>dashboard " + m + "</html>", "assets/app.js": "console.log(" + m + ")"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(web, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(web, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := c.mustLoom("run", "-t", "per-job", "-d", "--web-dir", web, "-p", "1", topspeedBin, "--duration", "0", "--output", filepath.Join(c.dir, "out"))
	id := appIDRe.FindString(out)
	link := regexp.MustCompile(`http://[0-9.:]+/\?token=[0-9a-f]+`).FindString(out)
	if id == "" || link == "" {
		t.Fatalf("run -d said:\n%s", out)
	}
	base := strings.SplitN(link, "/?", 2)[0]
	for path, want := range map[string]string{"/": "dashboard " + m, "/assets/app.js": "console.log(" + m + ")"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %s %q, want %q", path, resp.Status, b, want)
		}
	}
	var overview struct {
		TaskManagers int `json:"taskmanagers"`
	}
	getJSON(t, base+"/overview", &overview)
	c.mustLoom("app", "kill", id)
	c.waitNoProcessOf(id)
	// A directory that is no dashboard build is refused before anything
	// is submitted, and so is --web-dir outside per-job.
	if _, errs, code := c.loom("run", "-t", "per-job", "--web-dir", t.TempDir(), topspeedBin); code == 0 || !strings.Contains(errs, "index.html") {
		t.Errorf("--web-dir of an empty directory: exit %d, %q", code, errs)
	}
	if _, errs, code := c.loom("run", "-t", "remote", "--web-dir", web, topspeedBin); code == 0 || !strings.Contains(errs, "session start --web-dir") {
		t.Errorf("--web-dir with -t remote: exit %d, %q", code, errs)
	}
}
