package integration

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// `cluster up` supervises its daemons: a ResourceManager killed -9 during
// a per-job wordcount is started again with its data dir; the job
// finishes with every word counted once, and the attached `loom run`
// exits 0.
func TestClusterUpRestartsADeadRM(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	r, want, output := recoveryRun(t, c, "3ms")
	old := c.rmPid()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the RM started again", func() (bool, string) {
		pids := pgrep("--data-dir " + c.dir + "/rm ")
		return len(pids) == 1 && pids[0] != old, c.out.String()
	})
	if !strings.Contains(c.out.String(), "rm exited") {
		t.Errorf("cluster up did not say the RM exited:\n%s", c.out.String())
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("loom run exited %d after the RM restart:\n%s\n%s", code, r.out.String(), r.errb.String())
	}
	checkExactlyOnce(t, output, want)
}
