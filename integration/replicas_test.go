package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type raftPeerJSON struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
}

// raftLeader is the id (gRPC address) of the replica `loom admin raft
// list-peers` names as leader, waiting for one.
func (c *cluster) raftLeader(not string) string {
	c.t.Helper()
	var leader string
	waitFor(c.t, 30*time.Second, "a raft leader", func() (bool, string) {
		out, errs, code := c.loom("admin", "raft", "list-peers", "-o", "json")
		var peers []raftPeerJSON
		if code != 0 || json.Unmarshal([]byte(out), &peers) != nil {
			return false, out + errs
		}
		for _, p := range peers {
			if p.Leader && p.ID != not && len(peers) == len(c.rmAddrs) {
				leader = p.ID
				return true, ""
			}
		}
		return false, out
	})
	return leader
}

// Three RM replicas under `cluster up --rm-replicas 3`: the leader killed
// -9 during a per-job wordcount is replaced by another replica, the job
// finishes with every word counted once and the attached `loom run` exits
// 0, a new application is accepted and runs, and the supervisor starts
// the killed replica again, as a follower.
func TestRMReplicasFailOverUnderAJob(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2, rmReplicas: 3})
	waitFor(t, 10*time.Second, "cluster up printing the replicas' list", func() (bool, string) {
		return strings.Contains(c.out.String(), "export LOOM_RM="+strings.Join(c.rmAddrs, ",")), c.out.String()
	})
	r, want, output := recoveryRun(t, c, "3ms")
	// A shell whose AM asks for more containers than fit at once: it
	// waits for containers through the failover.
	const shells = 120
	waiting := strings.TrimSpace(c.mustLoom("dshell", "-d", "--num-containers", fmt.Sprint(shells), "--memory-mb", "64", "--", "sleep", "0.05"))
	waitFor(t, 30*time.Second, "the shell's first containers", func() (bool, string) {
		return len(c.app(waiting).Containers) > 5, ""
	})
	old := c.raftLeader("")
	pids := pgrep("--addr " + old + " ")
	if len(pids) != 1 {
		t.Fatalf("leader processes %v", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	next := c.raftLeader(old)
	out, errs, code := c.loom("dshell", "--num-containers", "3", "--memory-mb", "64", "--", "/bin/true")
	if code != 0 || !strings.Contains(out, "SUCCEEDED") {
		for _, name := range []string{"rm-1", "rm-2", "rm-3"} {
			b, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
			t.Logf("%s.log:\n%s", name, b)
		}
		t.Fatalf("a dshell after the failover: exit %d\n%s%s", code, out, errs)
	}
	t.Logf("leader %s killed; %s leads; a 3-container dshell ran to the end %s after the kill", old, next, time.Since(killed).Round(time.Millisecond))
	if code := r.wait(t); code != 0 {
		t.Fatalf("loom run exited %d after the leader was killed:\n%s\n%s", code, r.out.String(), r.errb.String())
	}
	checkExactlyOnce(t, output, want)
	// The shell got every container it asked for, once: none lost with
	// the leader, none handed out twice.
	var a appJSON
	waitFor(t, 60*time.Second, "the waiting shell finished", func() (bool, string) {
		a = c.app(waiting)
		return a.State == "FINISHED" || a.State == "FAILED" || a.State == "KILLED", a.State
	})
	seen := map[string]bool{}
	ran, allocated := 0, 0
	for _, ct := range a.Containers {
		if !ct.IsAM {
			allocated++
		}
		if seen[ct.ID] {
			t.Errorf("container %s listed twice", ct.ID)
		}
		seen[ct.ID] = true
		if !ct.IsAM && ct.State == "COMPLETED" && ct.ExitStatus == 0 {
			ran++
		}
	}
	if a.FinalStatus != "SUCCEEDED" || ran != shells || allocated != shells {
		t.Fatalf("the shell across the failover: %s, %d containers allocated and %d ran, want %d (%s)", a.FinalStatus, allocated, ran, shells, a.Diagnostics)
	}
	waitFor(t, 30*time.Second, "the killed replica back", func() (bool, string) {
		pids := pgrep("--addr " + old + " ")
		return len(pids) == 1, c.out.String()
	})
}
