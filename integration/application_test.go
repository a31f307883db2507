package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Application mode: the client ships the program and its arguments and
// plans nothing; the AM runs main, its JobManager runs the job, and the
// application ends with it, attached and detached.
func TestApplicationModeRunsMainOnTheCluster(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	input := filepath.Join(c.dir, "words.txt")
	want := writeWords(t, input)
	out := c.mustLoom("run", "-t", "application", "-p", "2", wordcountBin, "--input", input, "--output", filepath.Join(c.dir, "out"))
	if !strings.Contains(out, "its ApplicationMaster plans the job") || strings.Contains(out, "planned job") ||
		!strings.Contains(out, "FINISHED after") || !strings.Contains(out, "FINISHED (SUCCEEDED)") {
		t.Fatalf("run -t application said:\n%s", out)
	}
	checkCounts(t, filepath.Join(c.dir, "out"), 2, want)
	id := appIDRe.FindString(out)
	if logs := c.mustLoom("app", "logs", id); !strings.Contains(logs, "flink-am: planned job") {
		t.Errorf("the AM's output does not say it planned the job:\n%s", logs)
	}

	// Detached: the application's id, and it ends SUCCEEDED by itself.
	out = c.mustLoom("run", "-t", "application", "-d", "-p", "1", wordcountBin, "--discard")
	id = appIDRe.FindString(out)
	if id == "" {
		t.Fatalf("run -t application -d said:\n%s", out)
	}
	c.waitApp(id, func(a appJSON) bool { return a.FinalStatus == "SUCCEEDED" }, "the detached application to succeed")
	c.waitNoProcessOf(id)
}

// A program that fails as it plans on the cluster fails its application,
// and the attached client shows the program's own error.
func TestApplicationModePlanningFailureReachesTheClient(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 1})
	prog := filepath.Join(c.dir, "boom.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho 'boom: no such topic' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, errs, code := c.loom("run", "-t", "application", prog)
	if code == 0 || !strings.Contains(errs, "planning the job on the cluster") || !strings.Contains(errs, "boom: no such topic") {
		t.Errorf("a program failing on the cluster: exit %d\n%s\n%s", code, out, errs)
	}
	if id := appIDRe.FindString(out); id != "" {
		if a := c.app(id); a.FinalStatus != "FAILED" {
			t.Errorf("its application ended %s, want FAILED", a.FinalStatus)
		}
	}
}

// An AM killed -9 during a checkpointed application-mode job: the next
// attempt runs the graph the first planned (kept beside the job's
// checkpoints), not a second run of main, and the job ends exactly once.
func TestApplicationModeRecoversFromAMKill(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	r, want, output := recoveryRun(t, c, "3ms", "-t", "application")
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
	if out := r.out.String(); !strings.Contains(out, "started attempt") || !strings.Contains(out, "FINISHED") {
		t.Errorf("run's output does not show a second attempt finishing the job:\n%s", out)
	}
	checkExactlyOnce(t, output, want)
	logs := c.mustLoom("app", "logs", r.id)
	if strings.Count(logs, "flink-am: planned job") != 1 || !strings.Contains(logs, "the job graph an earlier attempt planned") {
		t.Errorf("the AMs' output: want one plan, and the second attempt on the first's graph:\n%s", logs)
	}
	c.waitNoProcessOf(r.id)
}
