package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two queues at 70/30 with elastic maximums, on two 2,048 MB nodes.
const seventyThirty = `queue "root" {
  queue "prod" {
    capacity          = "70%"
    maximum_capacity  = "100%"
    user_limit_factor = 2
    acl_submit        = ["group:admins"]
  }
  queue "dev" {
    capacity          = "30%"
    maximum_capacity  = "100%"
    user_limit_factor = 2
  }
}
`

// The capacity scheduler end to end: a job in prod fills the idle
// cluster past its 70%; a job in dev arrives, and preemption takes a
// TaskManager back from prod within the grace, so dev gets its
// guarantee and finishes; the preempted job fails over from its
// checkpoint, waits for room, and its output is exactly once. A user
// prod's ACL does not name is refused, naming the queue and the user; a
// queue file that does not parse changes nothing on refresh-queues.
func TestPreemptionGivesAQueueItsGuarantee(t *testing.T) {
	queues := filepath.Join(t.TempDir(), "queues.hcl")
	if err := os.WriteFile(queues, []byte(seventyThirty), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, clusterOpts{nodes: 2, memoryMB: 2048, extra: []string{"--queues", queues, "--preemption-grace", "5s"}})

	// prod: the AM (256 MB) and six TaskManagers of 512 MB, 81% of
	// the memory and 7 of the 8 vcores.
	prod, want, output := recoveryRun(t, c, "100ms", "-p", "6", "--queue", "prod")
	// dev: its AM fits in what is left; its TaskManager does not.
	devInput, devOutput := filepath.Join(c.dir, "dev-words.txt"), filepath.Join(c.dir, "dev-out")
	devWant := writeWords(t, devInput)
	began := time.Now()
	dev := c.command(t.Context(), "run", "-t", "per-job", "-p", "1", "--queue", "dev", wordcountBin, "--input", devInput, "--output", devOutput)
	var devOut syncBuffer
	dev.Stdout, dev.Stderr = &devOut, &devOut
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- dev.Wait() }()
	var devID string
	waitFor(t, 30*time.Second, "dev's application id", func() (bool, string) {
		devID = appIDRe.FindString(devOut.String())
		return devID != "", devOut.String()
	})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev's job: %v\n%s", err, devOut.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("dev's job did not end:\n%s", devOut.String())
	}
	// The Flink AM gives the container back when warned, rather than at
	// the end of the grace: dev's job ran on its room while prod's job
	// was still running.
	took := time.Since(began)
	select {
	case <-prod.done:
		t.Fatalf("prod's job ended before dev's (%s after dev's submission): no preemption was needed\n%s", took, prod.out.String())
	default:
	}
	t.Logf("dev's job ran and finished %s after its submission:\n%s", took.Round(time.Millisecond), devOut.String())
	checkCounts(t, devOutput, 1, devWant)

	// prod lost a TaskManager to preemption, failed over from its
	// checkpoint, and finishes exactly once.
	if code := prod.wait(t); code != 0 {
		t.Fatalf("prod's job exited %d:\n%s\n%s", code, prod.out.String(), prod.errb.String())
	}
	checkExactlyOnce(t, output, want)
	logs := c.mustLoom("app", "logs", prod.id, "--log-files", "stderr")
	if !strings.Contains(logs, "the cluster preempts a TaskManager container; giving it back") {
		t.Errorf("prod's AM did not log giving a TaskManager back:\n%s", tail(logs, 40))
	}

	// A user prod's ACL does not name is refused.
	eve := userConfig(t, c, "eve")
	_, errs, code := runLoomEnv(append(c.env(), "LOOM_CONFIG="+eve), "dshell", "--queue", "prod", "--", "true")
	if code == 0 || !strings.Contains(errs, "user eve may not submit applications to queue root.prod") {
		t.Errorf("eve's submission to prod: exit %d, %s", code, errs)
	}
	// A bad edit: refresh-queues refuses it and the queues stay.
	if err := os.WriteFile(queues, []byte(strings.Replace(seventyThirty, `"30%"`, `"40%"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code = c.loom("admin", "refresh-queues")
	if code == 0 || !strings.Contains(errs, "queues.hcl:2: the capacities of the queues under root add up to 110%, not 100%") || !strings.Contains(errs, "the queues are unchanged") {
		t.Errorf("refresh-queues with a bad file: exit %d, %s", code, errs)
	}
	if out := c.mustLoom("queue", "list"); !strings.Contains(out, "root.dev") || !strings.Contains(out, "30.0%") {
		t.Errorf("queues after a refused refresh:\n%s", out)
	}
}
