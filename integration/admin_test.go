package integration

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Admin commands say, node by node, what they did, and what a node
// already was when there was nothing to do; exit 0 either way.
func TestAdminNodeCommandsSayWhatTheyDid(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	nodes := c.nodes(false)
	if len(nodes) != 2 {
		t.Fatalf("nodes: %+v", nodes)
	}
	a, b := nodes[0].ID, nodes[1].ID
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"admin", "decommission", "--graceful", a}, "node " + a + ": RUNNING -> DECOMMISSIONING"},
		{[]string{"admin", "decommission", "--graceful", a}, "node " + a + ": already DECOMMISSIONING, nothing to do"},
		{[]string{"admin", "recommission", a}, "node " + a + ": DECOMMISSIONING -> RUNNING"},
		{[]string{"admin", "recommission", a}, "node " + a + ": already RUNNING, nothing to do"},
		{[]string{"admin", "decommission", b}, "node " + b + ": RUNNING -> DECOMMISSIONED"},
		{[]string{"admin", "decommission", b}, "node " + b + ": already DECOMMISSIONED, nothing to do"},
		{[]string{"admin", "recommission", b}, "node " + b + ": DECOMMISSIONED -> SHUTDOWN (it comes back RUNNING when its NodeManager registers again)"},
	} {
		if out := c.mustLoom(step.args...); !strings.Contains(out, step.want) {
			t.Errorf("loom %s said %q, want %q", strings.Join(step.args, " "), out, step.want)
		}
	}
	if _, errs, code := c.loom("admin", "recommission"); code == 0 || !strings.Contains(errs, "name the nodes") {
		t.Errorf("recommission of no node: exit %d, %s", code, errs)
	}
	if _, errs, code := c.loom("admin", "recommission", "nosuch:1"); code == 0 || !strings.Contains(errs, "nosuch:1 not found") {
		t.Errorf("recommission of a node that is not: exit %d, %s", code, errs)
	}
}

// A daemon started by hand says where it listens when it is up, and that
// it stopped when it is told to.
func TestRMSaysWhereItListensAndWhenItStops(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(loomBin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("loom %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("tls", "ca", "create")
	run("tls", "cert", "create", "--server", "--name", "rm1", "--host", "127.0.0.1")
	p := fixedPort(3)
	var logs syncBuffer
	cmd := exec.Command(loomBin, "rm", "--data-dir", filepath.Join(dir, "rm"), "--addr", fmt.Sprintf("127.0.0.1:%d", p),
		"--raft-addr", fmt.Sprintf("127.0.0.1:%d", p+1), "--http-addr", fmt.Sprintf("127.0.0.1:%d", p+2),
		"--tls-ca", "ca.pem", "--tls-cert", "server-rm1.pem", "--tls-key", "server-rm1-key.pem")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	waitFor(t, 20*time.Second, "the RM's started line", func() (bool, string) {
		s := logs.String()
		return strings.Contains(s, "resource manager started") && strings.Contains(s, fmt.Sprintf("listen=127.0.0.1:%d", p)) &&
			strings.Contains(s, fmt.Sprintf("raft=127.0.0.1:%d", p+1)) && strings.Contains(s, "leadership established"), s
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the RM exited with %v on SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the RM did not stop on SIGTERM")
	}
	if !strings.Contains(logs.String(), "resource manager stopped") {
		t.Errorf("the RM said nothing as it stopped:\n%s", logs.String())
	}
}

// The queues, as a user sees them: the leaf's capacity and what runs in
// it, with its users.
func TestQueueListAndStatus(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 1})
	shell := strings.TrimSpace(c.mustLoom("dshell", "-d", "--num-containers", "1", "--memory-mb", "64", "--", "sleep", "600"))
	c.waitApp(shell, func(a appJSON) bool { return a.State == "RUNNING" }, "the shell RUNNING")
	out := c.mustLoom("queue", "list")
	if !strings.Contains(out, "root.default") || !strings.Contains(out, "100.0%") {
		t.Errorf("queue list:\n%s", out)
	}
	status := c.mustLoom("queue", "status", "default")
	if !strings.Contains(status, "Queue: root.default") || !strings.Contains(status, "Applications: 1 (0 pending)") || !strings.Contains(status, "Users:\n    ") || !strings.Contains(status, "1 applications") {
		t.Errorf("queue status:\n%s", status)
	}
	// As YARN's scheduler REST API names them, with numbers as numbers.
	var js []struct {
		QueuePath           string  `json:"queuePath"`
		AbsoluteMaxCapacity float64 `json:"absoluteMaxCapacity"`
		NumApplications     int     `json:"numApplications"`
		ResourcesUsed       struct {
			Memory int64 `json:"memory"`
		} `json:"resourcesUsed"`
		Users struct {
			User []struct {
				Username string `json:"username"`
			} `json:"user"`
		} `json:"users"`
	}
	if err := json.Unmarshal([]byte(c.mustLoom("queue", "list", "-o", "json")), &js); err != nil {
		t.Fatal(err)
	}
	if len(js) != 1 || js[0].QueuePath != "root.default" || js[0].AbsoluteMaxCapacity != 100 || js[0].NumApplications != 1 ||
		js[0].ResourcesUsed.Memory < 64 || len(js[0].Users.User) != 1 || js[0].Users.User[0].Username == "" {
		t.Errorf("queue list -o json: %+v", js)
	}
	if _, errs, code := c.loom("queue", "status", "nosuch"); code == 0 || !strings.Contains(errs, `queue "nosuch" does not exist`) {
		t.Errorf("the status of a queue that is not: exit %d, %s", code, errs)
	}
	// loom app top: the cluster's figures, then the shell by what it
	// holds, twice.
	top := c.mustLoom("app", "top", "-n", "2", "--delay", "100ms")
	if strings.Count(top, "loom top - ") != 2 || !strings.Contains(top, "1 applications running") || !strings.Contains(top, "Queues (used of capacity): root.default ") {
		t.Errorf("app top:\n%s", top)
	}
	var row string
	for _, l := range strings.Split(top, "\n") {
		if strings.HasPrefix(l, shell) {
			row = l
		}
	}
	if f := strings.Fields(row); len(f) < 9 || f[3] != "root.default" || f[5] != "RUNNING" || f[6] != "2" {
		t.Errorf("app top's row of the shell %q in:\n%s", row, top)
	}
	c.mustLoom("app", "kill", shell)
}
