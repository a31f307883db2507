package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startSession starts a detached session cluster and returns its id.
func (c *cluster) startSession(args ...string) string {
	c.t.Helper()
	out := c.mustLoom(append([]string{"session", "start", "-d"}, args...)...)
	id := appIDRe.FindString(out)
	if id == "" || !strings.Contains(out, "JobManager web interface: http://") {
		c.t.Fatalf("session start said:\n%s", out)
	}
	return id
}

// taskManagerContainers counts a session's TaskManager containers by
// state.
func (c *cluster) taskManagerContainers(appID string) (running, total int) {
	for _, ct := range c.app(appID).Containers {
		if ct.IsAM {
			continue
		}
		total++
		if ct.State == "RUNNING" {
			running++
		}
	}
	return running, total
}

// Three different jobs submitted at once to one session all run right; a
// job on warm TaskManagers asks for no container; idle TaskManagers are
// returned; stopping the session leaves nothing running.
func TestSessionRunsJobsSideBySide(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	id := c.startSession("--idle-timeout", "8s")
	if out := c.mustLoom("session", "list"); !strings.Contains(out, id) {
		t.Fatalf("session list:\n%s", out)
	}
	input := filepath.Join(c.dir, "words.txt")
	want := writeWords(t, input)
	runs := [][]string{
		{"-p", "2", wordcountBin, "--input", input, "--output", filepath.Join(c.dir, "wc")},
		{"-p", "2", topspeedBin, "--duration", "2s", "--output", filepath.Join(c.dir, "tsw")},
		{"-p", "1", wordcountBin, "--discard"},
	}
	var wg sync.WaitGroup
	outs := make([]string, len(runs))
	codes := make([]int, len(runs))
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var errs string
			outs[i], errs, codes[i] = c.loom(append([]string{"run", "-t", "session"}, r...)...)
			outs[i] += errs
		}()
	}
	wg.Wait()
	for i := range runs {
		if codes[i] != 0 || !strings.Contains(outs[i], "FINISHED after") {
			t.Errorf("job %d: exit %d\n%s", i, codes[i], outs[i])
		}
	}
	checkCounts(t, filepath.Join(c.dir, "wc"), 2, want)
	_, before := c.taskManagerContainers(id)

	// Warm TaskManagers: the next job needs no new container.
	if out := c.mustLoom("run", "-t", "session", "-p", "2", wordcountBin, "--discard"); !strings.Contains(out, "FINISHED after") {
		t.Fatalf("a job on warm TaskManagers:\n%s", out)
	}
	if _, after := c.taskManagerContainers(id); after != before {
		t.Errorf("a job on warm TaskManagers took %d new containers", after-before)
	}

	// Idle past the timeout: every TaskManager goes back.
	waitFor(t, 30*time.Second, "idle TaskManagers returned", func() (bool, string) {
		running, total := c.taskManagerContainers(id)
		return running == 0, fmt.Sprintf("%d of %d TaskManager containers running", running, total)
	})
	if _, total := c.taskManagerContainers(id); total == 0 {
		t.Fatal("the session never had TaskManagers")
	}

	out := c.mustLoom("session", "stop", id)
	if !strings.Contains(out, "FINISHED (SUCCEEDED)") {
		t.Errorf("session stop said:\n%s", out)
	}
	c.waitNoProcessOf(id)
	if out := c.mustLoom("session", "list"); strings.Contains(out, id) {
		t.Errorf("a stopped session is listed:\n%s", out)
	}
}

// A crashing job leaves another running; stopping the session cancels
// the one left.
func TestSessionJobFailureLeavesOthersRunning(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	id := c.startSession()
	long := c.mustLoom("run", "-t", "session", "-d", "-p", "1", topspeedBin, "--duration", "0")
	longID := strings.TrimSpace(long)
	c.waitAppJob(id, func(j jobJSON) bool { return j.State == "RUNNING" }, "the long job RUNNING")
	// shiftyjob builds another graph in its workers: it fails.
	if _, _, code := c.loom("run", "-t", "session", "-p", "1", shiftyBin); code == 0 {
		t.Fatal("a failing job reported success")
	}
	jobs, err := c.jobs(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.ID == longID && j.State != "RUNNING" {
			t.Errorf("the long job is %s after another failed", j.State)
		}
	}
	if out := c.mustLoom("session", "stop", id); !strings.Contains(out, "FINISHED (SUCCEEDED)") {
		t.Errorf("session stop said:\n%s", out)
	}
	c.waitNoProcessOf(id)
}

// Without a session, `run -t session` says what to do.
func TestRunInNoSession(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 1})
	_, errs, code := c.loom("run", "-t", "session", wordcountBin)
	if code == 0 || !strings.Contains(errs, "no running session") || !strings.Contains(errs, "loom session start") {
		t.Errorf("exit %d, %q", code, errs)
	}
}

// A job that needs more slots than the session may ever have is refused
// at once, with the numbers, and one that fits runs.
func TestSessionRefusesAJobOverItsMaxSlots(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	id := c.startSession("--max-slots", "2")
	start := time.Now()
	out, errs, code := c.loom("run", "-t", "session", "--session", id, "-p", "4", wordcountBin, "--discard")
	if code == 0 || !strings.Contains(errs, "needs 4 slots") || !strings.Contains(errs, "at most 2 (--max-slots)") {
		t.Errorf("a job over the session's slots: exit %d\n%s\n%s", code, out, errs)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the refusal took %s", took)
	}
	if out := c.mustLoom("run", "-t", "session", "--session", id, "-p", "2", wordcountBin, "--discard"); !strings.Contains(out, "FINISHED after") {
		t.Errorf("a job that fits:\n%s", out)
	}
	c.mustLoom("session", "stop", id)
	c.waitNoProcessOf(id)
}
