package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClusterUpShowsNodes(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	nodes := c.nodes(false)
	if len(nodes) != 3 {
		t.Fatalf("node list shows %d nodes, want 3: %+v", len(nodes), nodes)
	}
	for _, n := range nodes {
		if n.State != "RUNNING" || n.TotalResource.Memory != 4096 || n.TotalResource.VCores != 4 || n.HTTPAddress == "" {
			t.Errorf("node %+v: want RUNNING with 4096 MB, 4 vcores and an http address", n)
		}
	}
	out := c.mustLoom("node", "status", nodes[0].ID)
	if !strings.Contains(out, "Node-State : RUNNING") {
		t.Errorf("node status:\n%s", out)
	}
}

func TestDshellAcrossSixContainers(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	out := c.mustLoom("dshell", "--num-containers", "6", "--memory-mb", "64", "--",
		"sh", "-c", `echo "marker-out $LOOM_CONTAINER_ID"; echo "marker-err $LOOM_CONTAINER_ID" >&2`)
	if !strings.Contains(out, "final status SUCCEEDED") {
		t.Fatalf("dshell output:\n%s", out)
	}
	id := strings.Fields(strings.SplitAfter(out, "Submitted application ")[1])[0]
	app := c.app(id)
	if app.State != "FINISHED" || app.FinalStatus != "SUCCEEDED" || app.Queue != "root.default" || app.User == "" {
		t.Fatalf("app %+v: want FINISHED/SUCCEEDED in root.default with a user", app)
	}
	var tasks []containerJSON
	nodes := map[string]bool{}
	for _, ct := range app.Containers {
		if !ct.IsAM {
			tasks = append(tasks, ct)
			nodes[ct.NodeID] = true
		}
	}
	if len(tasks) != 6 || len(nodes) != 3 {
		t.Fatalf("want 6 task containers across 3 nodes, got %d across %d: %+v", len(tasks), len(nodes), app.Containers)
	}
	logs := c.mustLoom("app", "logs", id)
	for _, ct := range tasks {
		for _, want := range []string{"marker-out " + ct.ID, "marker-err " + ct.ID} {
			if !strings.Contains(logs, want) {
				t.Errorf("app logs lack %q", want)
			}
		}
	}
	waitFor(t, 15*time.Second, "the app's working directories removed", func() (bool, string) {
		dirs, _ := filepath.Glob(filepath.Join(c.dir, "nm-*", "apps", id))
		return len(dirs) == 0, fmt.Sprint(dirs)
	})
	one := c.mustLoom("app", "logs", id, "--container", tasks[2].ID)
	if !strings.Contains(one, "marker-out "+tasks[2].ID) || strings.Contains(one, "marker-out "+tasks[1].ID) {
		t.Errorf("app logs --container %s:\n%s", tasks[2].ID, one)
	}
}

func TestDshellFailingCommand(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	out, _, code := c.loom("dshell", "--num-containers", "2", "--", "sh", "-c", "exit 7")
	if code == 0 {
		t.Fatalf("dshell of a failing command exited 0:\n%s", out)
	}
	id := strings.Fields(strings.SplitAfter(out, "Submitted application ")[1])[0]
	app := c.app(id)
	if app.State != "FAILED" || app.FinalStatus != "FAILED" || !strings.Contains(app.Diagnostics, "exit code 7") {
		t.Fatalf("app %+v: want FAILED with the exit code in its diagnostics", app)
	}
}

func TestNodeLostReportsItsContainers(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	mark := marker()
	id := strings.TrimSpace(c.mustLoom("dshell", "-d", "--num-containers", "3", "--memory-mb", "64", "--", "sleep", mark))
	t.Cleanup(func() {
		c.loom("app", "kill", id)
		for _, pid := range pgrep(mark) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	var victim containerJSON
	waitFor(t, 30*time.Second, "3 containers running", func() (bool, string) {
		app := c.app(id)
		running := 0
		amNode := ""
		for _, ct := range app.Containers {
			if ct.IsAM {
				amNode = ct.NodeID
			}
		}
		for _, ct := range app.Containers {
			if !ct.IsAM && ct.State == "RUNNING" {
				running++
				if victim.ID == "" || ct.NodeID != amNode {
					victim = ct
				}
			}
		}
		return running == 3, fmt.Sprintf("%+v", app.Containers)
	})
	// A node that goes silent (stopped, so that cluster up's supervisor
	// does not start it again) is lost.
	nm := c.nmPid(victim.NodeID)
	if err := syscall.Kill(nm, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(nm, syscall.SIGCONT) })
	waitFor(t, 15*time.Second, "node "+victim.NodeID+" LOST", func() (bool, string) {
		for _, n := range c.nodes(true) {
			if n.ID == victim.NodeID {
				return n.State == "LOST", n.State
			}
		}
		return false, "node missing"
	})
	app := c.app(id)
	for _, ct := range app.Containers {
		if ct.ID == victim.ID {
			if ct.State != "COMPLETED" || ct.ExitStatus != -100 || !strings.Contains(ct.Diagnostics, "lost") {
				t.Fatalf("container on the lost node: %+v, want COMPLETED, exit -100, a diagnostic naming the lost node", ct)
			}
			return
		}
	}
	t.Fatalf("container %s missing from %+v", victim.ID, app.Containers)
}

func TestAppKillLeavesNoProcess(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 3})
	mark := marker()
	id := strings.TrimSpace(c.mustLoom("dshell", "-d", "--num-containers", "4", "--memory-mb", "64", "--", "sh", "-c", "sleep "+mark+"; true"))
	waitFor(t, 30*time.Second, "4 containers running", func() (bool, string) {
		pids := pgrep("^sleep " + mark)
		return len(pids) == 4, fmt.Sprintf("%d running", len(pids))
	})
	out := c.mustLoom("app", "kill", id)
	if !strings.Contains(out, "Killed application "+id) {
		t.Errorf("app kill said:\n%s", out)
	}
	waitFor(t, 10*time.Second, "no process of the app left", func() (bool, string) {
		pids := pgrep(mark)
		return len(pids) == 0, fmt.Sprintf("still running: %v", pids)
	})
	if app := c.app(id); app.State != "KILLED" || app.FinalStatus != "KILLED" {
		t.Fatalf("app %+v: want KILLED", app)
	}
	out = c.mustLoom("app", "kill", id)
	if !strings.Contains(out, "already finished") {
		t.Errorf("killing a killed app said:\n%s", out)
	}
}

func TestContainerOverItsMemoryIsKilled(t *testing.T) {
	for _, mode := range []struct {
		name      string
		noCgroups bool
	}{{"cgroups-or-fallback", false}, {"rss-polling", true}} {
		t.Run(mode.name, func(t *testing.T) {
			c := startCluster(t, clusterOpts{nodes: 1, noCgroups: mode.noCgroups})
			out, _, code := c.loom("dshell", "--num-containers", "1", "--memory-mb", "48", "--", memhogBin, "-mb", "300")
			if code == 0 {
				t.Fatalf("a container over its memory exited 0:\n%s", out)
			}
			if !strings.Contains(out, "is running beyond physical memory limits") || !strings.Contains(out, "-104") {
				t.Fatalf("want YARN's physical memory diagnostic with exit status -104:\n%s", out)
			}
		})
	}
}

func TestBadInputLeavesDaemonsUnharmed(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"app", "status", "application_1_9999"}, "not found"},
		{[]string{"app", "kill", "application_1_9999"}, "not found"},
		{[]string{"app", "status", "not-an-app"}, "is not an application id"},
		{[]string{"dshell", "--memory-mb", "999999", "--", "true"}, "exceeds the cluster's maximum allocation of 8192 MB"},
		{[]string{"dshell", "--num-containers", "0", "--", "true"}, "--num-containers must be at least 1"},
		{[]string{"dshell", "--num-containers", "1"}, "no command given"},
		{[]string{"dshell", "--queue", "nope", "--", "true"}, `queue "nope" does not exist`},
		{[]string{"node", "list", "--rm", "localhost"}, "invalid ResourceManager address"},
		{[]string{"node", "list", "--rm", "127.0.0.1:99999"}, "invalid ResourceManager address"},
		{[]string{"node", "status", "127.0.0.1:1"}, "not found"},
		{[]string{"node", "list", "-o", "yaml"}, "unknown output format"},
	}
	for _, tc := range cases {
		out, errs, code := c.loom(tc.args...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("loom %s: exit %d, stderr %q; want a non-zero exit and %q\nstdout: %s", strings.Join(tc.args, " "), code, errs, tc.want, out)
		}
		if strings.Contains(errs, "goroutine ") || strings.Contains(errs, "panic") {
			t.Errorf("loom %s printed a stack:\n%s", strings.Join(tc.args, " "), errs)
		}
	}
	if n := len(c.nodes(false)); n != 2 {
		t.Fatalf("after bad input %d nodes are running, want 2", n)
	}
	if out := c.mustLoom("dshell", "--num-containers", "2", "--", "true"); !strings.Contains(out, "SUCCEEDED") {
		t.Fatalf("a dshell after bad input:\n%s", out)
	}
}

// TestRMRestartKeepsState runs the daemons one by one, kills the RM with
// SIGKILL and starts it again on the same data directory.
func TestRMRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	rmPort, httpPort := freePorts(t, 1)
	rmAddr := fmt.Sprintf("127.0.0.1:%d", rmPort)
	rmArgs := []string{"rm", "--data-dir", filepath.Join(dir, "rm"), "--addr", rmAddr,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort), "--raft-addr", fmt.Sprintf("127.0.0.1:%d", rmPort+2),
		"--nm-heartbeat", "200ms", "--node-expiry", "5s", "--raft-timeout", "100ms"}
	rmTLS, nodeTLS := handPKI(t, dir, rmAddr, 2)
	rmArgs = append(rmArgs, rmTLS...)
	var procs []*exec.Cmd
	start := func(name string, args ...string) *exec.Cmd {
		f, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command(loomBin, args...)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		return cmd
	}
	t.Cleanup(func() {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			done := make(chan struct{})
			go func() { _ = p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = p.Process.Kill()
			}
		}
	})
	rm := start("rm", rmArgs...)
	for i := 1; i <= 2; i++ {
		start(fmt.Sprintf("nm-%d", i), append([]string{"nm", "--rm", rmAddr, "--dir", filepath.Join(dir, fmt.Sprintf("nm-%d", i)),
			"--addr", "127.0.0.1:0", "--http-addr", "", "--memory-mb", "2048", "--vcores", "2"}, nodeTLS(i)...)...)
	}
	c := &cluster{t: t, dir: dir, rmAddr: rmAddr}
	waitFor(t, 30*time.Second, "2 nodes RUNNING", func() (bool, string) {
		out, errs, code := c.loom("node", "list", "-o", "json")
		return code == 0 && strings.Count(out, `"RUNNING"`) == 2, out + errs
	})
	out := c.mustLoom("dshell", "--num-containers", "2", "--", "true")
	id := strings.Fields(strings.SplitAfter(out, "Submitted application ")[1])[0]
	before := c.nodes(true)

	_ = rm.Process.Kill()
	_ = rm.Wait()
	start("rm-2", rmArgs...)

	waitFor(t, 30*time.Second, "the restarted RM to know the application", func() (bool, string) {
		out, errs, code := c.loom("app", "status", id, "-o", "json")
		return code == 0 && strings.Contains(out, `"FINISHED"`) && strings.Contains(out, `"SUCCEEDED"`), out + errs
	})
	waitFor(t, 30*time.Second, "the same 2 nodes RUNNING", func() (bool, string) {
		after := c.nodes(true)
		if len(after) != len(before) {
			return false, fmt.Sprintf("%+v", after)
		}
		for i := range after {
			if after[i].ID != before[i].ID || after[i].State != "RUNNING" {
				return false, fmt.Sprintf("%+v", after)
			}
		}
		return true, ""
	})
	if out := c.mustLoom("dshell", "--num-containers", "2", "--", "true"); !strings.Contains(out, "SUCCEEDED") {
		t.Fatalf("dshell after the restart:\n%s", out)
	}
}

// `loom app logs -f` follows a running container's log: it prints what the
// container wrote before, then what it writes after, and ends when the
// container does.
func TestAppLogsFollowsARunningContainer(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 1})
	gate := filepath.Join(t.TempDir(), "go")
	m := marker()
	appID := strings.TrimSpace(c.mustLoom("dshell", "-d", "--memory-mb", "64", "--", "sh", "-c",
		fmt.Sprintf(`echo before-%s; while [ ! -e %s ]; do sleep 0.05; done; echo after-%s`, m, gate, m)))
	var task string
	waitFor(t, 60*time.Second, "the task container RUNNING", func() (bool, string) {
		a := c.app(appID)
		for _, ct := range a.Containers {
			if !ct.IsAM && ct.State == "RUNNING" {
				task = ct.ID
			}
		}
		return task != "", fmt.Sprintf("%+v", a.Containers)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := c.command(ctx, "app", "logs", appID, "-f", "--container", task, "--log-files", "stdout")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "before-"+m {
			// The container goes on only now, while it is followed.
			if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("loom app logs -f: %v after %q", err, lines)
	}
	if want := []string{"before-" + m, "after-" + m}; strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("followed %q, want %q", lines, want)
	}
}
