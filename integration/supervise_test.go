package integration

import (
	"encoding/json"
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

// A NodeManager killed -9 under `cluster up` is started again at its
// address: it is the same node, RUNNING again, and the containers it ran
// are reported ended, for their AMs to replace.
func TestClusterUpRestartsADeadNodeManager(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	mark := marker()
	id := strings.TrimSpace(c.mustLoom("dshell", "-d", "--num-containers", "2", "--memory-mb", "64", "--", "sleep", mark))
	t.Cleanup(func() { c.loom("app", "kill", id) })
	var victim containerJSON
	waitFor(t, 30*time.Second, "2 containers running", func() (bool, string) {
		running := 0
		for _, ct := range c.app(id).Containers {
			if !ct.IsAM && ct.State == "RUNNING" {
				running++
				victim = ct
			}
		}
		return running == 2, ""
	})
	old := c.nmPid(victim.NodeID)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the victim's container reported ended", func() (bool, string) {
		for _, ct := range c.app(id).Containers {
			if ct.ID == victim.ID {
				return ct.State == "COMPLETED", ct.State + " " + ct.Diagnostics
			}
		}
		return false, "container missing"
	})
	if pid := c.nmPid(victim.NodeID); pid == old {
		t.Fatalf("the NodeManager of %s was not started again", victim.NodeID)
	}
	nodes := c.nodes(true)
	if len(nodes) != 2 {
		t.Fatalf("nodes after the restart: %+v, want the same 2", nodes)
	}
	for _, n := range nodes {
		if n.State != "RUNNING" {
			t.Errorf("node %s is %s after its NodeManager came back", n.ID, n.State)
		}
	}
}

// A ResourceManager killed while it launches an application's AM comes
// back (cluster up starts it again) and the application runs on in its
// first attempt: launching again an AM container that its node already
// runs is not a failure.
func TestRMKilledDuringAMLaunchKeepsTheAttempt(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	id := strings.TrimSpace(c.mustLoom("dshell", "-d", "--num-containers", "2", "--memory-mb", "64", "--", "sleep", "2"))
	old := c.rmPid()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the RM started again", func() (bool, string) {
		pids := pgrep("--data-dir " + c.dir + "/rm ")
		return len(pids) == 1 && pids[0] != old, ""
	})
	var a struct {
		State       string `json:"state"`
		FinalStatus string `json:"finalStatus"`
		Diagnostics string `json:"diagnostics"`
		Attempts    []struct {
			ID    string `json:"appAttemptId"`
			State string `json:"appAttemptState"`
		} `json:"appAttempts"`
	}
	waitFor(t, 60*time.Second, "the application ended", func() (bool, string) {
		out, _, code := c.loom("app", "status", id, "-o", "json")
		if code != 0 || json.Unmarshal([]byte(out), &a) != nil {
			return false, out
		}
		return a.State == "FINISHED" || a.State == "FAILED" || a.State == "KILLED", a.State
	})
	if a.FinalStatus != "SUCCEEDED" || len(a.Attempts) != 1 {
		t.Fatalf("after an RM kill during its launch the application ended %s in %d attempts: %s %+v", a.FinalStatus, len(a.Attempts), a.Diagnostics, a.Attempts)
	}
}
