package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/loom-project/loom/flinkrt/state/storage/s3test"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A cluster whose daemons each have a network namespace of their own,
// with their own address on a bridge that has none on this host: 3 RM
// replicas and 3 NodeManagers as if on six hosts, and clients in a
// seventh. Nothing can lean on 127.0.0.1 between daemons, and the test
// process itself reaches none of them: every client runs in the clients'
// namespace.
type netnsCluster struct {
	*cluster
	t      *testing.T
	prefix string // of the namespaces' and the bridge's names
	net    string // the first three octets of the subnet
	bridge string
	// daemons by name (rm1..rm3, nm1..nm3): their namespaces, addresses,
	// arguments and processes.
	daemons map[string]*nsDaemon
	// s3 is the S3 server, reached from the clients' namespace.
	s3 *s3test.Server
}

type nsDaemon struct {
	name, ns, ip string
	// bin is the daemon's program: loom, unless it is set.
	bin  string
	args []string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
}

// netnsAvailable says why namespaces cannot be made here, or "".
func netnsAvailable() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "no ip command (iproute2)"
	}
	name := fmt.Sprintf("loomchk%d", rand.IntN(1e6))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Sprintf("ip netns add: %v: %s", err, out)
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
	return ""
}

func (n *netnsCluster) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// addHost makes namespace name with address ip on the bridge.
func (n *netnsCluster) addHost(name, ip string) string {
	ns := n.prefix + name
	n.ip("netns", "add", ns)
	n.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	veth := "v" + n.prefix + name
	n.ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	n.ip("link", "set", veth, "master", n.bridge, "up")
	n.ip("-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
	n.ip("-n", ns, "link", "set", "eth0", "up")
	n.ip("-n", ns, "link", "set", "lo", "up")
	return ns
}

func startNetnsCluster(t *testing.T) *netnsCluster {
	t.Helper()
	if why := netnsAvailable(); why != "" {
		t.Skipf("skipping: cannot make network namespaces here (%s); the test runs each daemon in one of its own", why)
	}
	id := rand.IntN(200) + 20
	n := &netnsCluster{t: t, prefix: fmt.Sprintf("l%d", id), net: fmt.Sprintf("10.%d.%d", 100+rand.IntN(100), id), daemons: map[string]*nsDaemon{}}
	n.bridge = n.prefix + "br"
	n.ip("link", "add", n.bridge, "type", "bridge")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", n.bridge).Run() })
	n.ip("link", "set", n.bridge, "up")

	dir := t.TempDir()
	n.cluster = &cluster{t: t, dir: dir}
	rmFlags, nodeFlags := handPKIFor(t, dir, 3, 3)
	n.daemons = map[string]*nsDaemon{}
	var join []string
	for i := 1; i <= 3; i++ {
		join = append(join, fmt.Sprintf("%s.%d:8032", n.net, 10+i))
	}
	n.rmAddr, n.rmAddrs = join[0], join
	n.writeClientConfig(t, join)
	for i := 1; i <= 3; i++ {
		ip := fmt.Sprintf("%s.%d", n.net, 10+i)
		name := fmt.Sprintf("rm%d", i)
		n.daemons[name] = &nsDaemon{name: name, ns: n.addHost(name, ip), ip: ip, args: append(append([]string{"rm"}, rmFlags(i)...),
			"--data-dir", filepath.Join(dir, name), "--addr", ip+":8032", "--http-addr", ip+":8088", "--raft-addr", ip+":8034",
			"--bootstrap-expect", "3", "--join", strings.Join(join, ","),
			"--nm-heartbeat", "250ms", "--node-expiry", "4s", "--am-expiry", "10s", "--raft-timeout", "100ms")}
	}
	for i := 1; i <= 3; i++ {
		ip := fmt.Sprintf("%s.%d", n.net, 20+i)
		name := fmt.Sprintf("nm%d", i)
		n.daemons[name] = &nsDaemon{name: name, ns: n.addHost(name, ip), ip: ip, args: append(append([]string{"nm"}, nodeFlags(i)...),
			"--rm", strings.Join(join, ","), "--dir", filepath.Join(dir, name), "--addr", ip+":8041", "--http-addr", ip+":8042",
			"--memory-mb", "4096", "--vcores", "4", "--kill-grace", "2s")}
	}
	// The S3 server the jobs keep their checkpoints in, on a host of
	// its own.
	weed, err := s3test.Binary()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	s3IP := n.net + ".30"
	s3Args, err := s3test.Args(filepath.Join(dir, "s3"), s3IP, s3test.DefaultPorts)
	if err != nil {
		t.Fatal(err)
	}
	n.daemons["s3"] = &nsDaemon{name: "s3", ns: n.addHost("s3", s3IP), ip: s3IP, bin: weed, args: s3Args}
	t.Cleanup(func() { s3test.RemoveSockets(s3test.DefaultPorts) })
	n.netns = n.addHost("cli", n.net+".100")
	for _, name := range []string{"s3", "rm1", "rm2", "rm3", "nm1", "nm2", "nm3"} {
		n.start(name)
	}
	t.Cleanup(n.stopAll)
	n.s3 = s3test.Attach(fmt.Sprintf("http://%s:%d", s3IP, s3test.DefaultPorts.S3), dialIn(n.netns))
	n.clientEnv = n.s3.Env()
	waitFor(t, 60*time.Second, "3 nodes RUNNING", func() (bool, string) {
		out, errs, code := n.loom("node", "list", "-o", "json")
		var nodes []nodeJSON
		if code != 0 || json.Unmarshal([]byte(out), &nodes) != nil {
			return false, out + errs
		}
		running := 0
		for _, nd := range nodes {
			if nd.State == "RUNNING" {
				running++
			}
		}
		return running == 3, out
	})
	return n
}

// start starts (or starts again) a daemon in its namespace.
func (n *netnsCluster) start(name string) {
	n.t.Helper()
	d := n.daemons[name]
	bin := d.bin
	if bin == "" {
		bin = loomBin
	}
	d.cmd = exec.Command("ip", append([]string{"netns", "exec", d.ns, bin}, d.args...)...)
	d.log = &bytes.Buffer{}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	d.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(d.cmd, d.done)
}

// kill kills a daemon's process group with sig and waits for it to end.
func (n *netnsCluster) kill(name string, sig syscall.Signal) {
	d := n.daemons[name]
	_ = syscall.Kill(-d.cmd.Process.Pid, sig)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

func (n *netnsCluster) stopAll() {
	for _, name := range []string{"nm1", "nm2", "nm3", "rm1", "rm2", "rm3", "s3"} {
		if d := n.daemons[name]; d.cmd != nil {
			n.kill(name, syscall.SIGTERM)
		}
	}
	waitFor(n.t, 10*time.Second, "no process of the cluster left", func() (bool, string) {
		pids := pgrep(n.dir)
		return len(pids) == 0, fmt.Sprintf("processes still running: %v", pids)
	})
}

// dialIn dials from inside the network namespace ns, for the test's own
// connections to a daemon there: on a thread that enters the namespace and
// ends with the dial, so that no other goroutine ever runs in it.
func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			conn net.Conn
			err  error
		}
		done := make(chan result, 1)
		go func() {
			// Never unlocked: the thread ends with the goroutine.
			runtime.LockOSThread()
			f, err := os.Open("/run/netns/" + ns)
			if err != nil {
				done <- result{nil, err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				done <- result{nil, fmt.Errorf("entering namespace %s: %w", ns, err)}
				return
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			done <- result{c, err}
		}()
		r := <-done
		return r.conn, r.err
	}
}

// daemonAt is the name of the RM replica with gRPC address addr.
func (n *netnsCluster) daemonAt(addr string) string {
	for name, d := range n.daemons {
		if strings.HasPrefix(name, "rm") && d.ip+":8032" == addr {
			return name
		}
	}
	n.t.Fatalf("no replica at %s", addr)
	return ""
}

// handPKIFor makes the CA and the certificates of servers rm1..rmN and
// nodes nm1..nmM in dir/tls, and an admin's; it returns the TLS flags of
// server i and of node i.
func handPKIFor(t *testing.T, dir string, servers, nodes int) (rmFlags, nodeFlags func(i int) []string) {
	t.Helper()
	var rms, nms []string
	for i := 1; i <= servers; i++ {
		rms = append(rms, fmt.Sprintf("rm%d", i))
	}
	for i := 1; i <= nodes; i++ {
		nms = append(nms, fmt.Sprintf("nm%d", i))
	}
	files := makePKI(t, dir, rms, nms)
	caKey := filepath.Join(dir, "tls", "ca-key.pem")
	return func(i int) []string { return append(files(fmt.Sprintf("server-rm%d", i)), "--tls-ca-key", caKey) },
		func(i int) []string { return files(fmt.Sprintf("node-nm%d", i)) }
}

// writeClientConfig points the admin's client config at the replicas.
func (n *netnsCluster) writeClientConfig(t *testing.T, rms []string) {
	tlsDir := filepath.Join(n.dir, "tls")
	if out, errs, code := runLoomEnv(nil, "tls", "config", "--rm", strings.Join(rms, ","), "--ca", filepath.Join(tlsDir, "ca.pem"),
		"--cert", filepath.Join(tlsDir, "user-admin.pem"), "--key", filepath.Join(tlsDir, "user-admin-key.pem"), "--path", n.clientConfig()); code != 0 {
		t.Fatalf("loom tls config: %s%s", out, errs)
	}
}

// Three RM replicas and three NodeManagers on hosts of their own, and an
// S3 server on another: a per-job wordcount runs across them with its
// checkpoints in a bucket; the leader killed -9 mid-job is
// replaced, the job finishes with every word counted once, and a new
// shell is allocated; a follower that lost its data dir rejoins and gets
// the state; then the leader is cut off from the others: they elect
// another, it steps down, the job started meanwhile finishes, and after
// the cut heals every replica holds the same containers, none handed out
// twice.
func TestNetnsReplicasAcrossHosts(t *testing.T) {
	n := startNetnsCluster(t)
	c := n.cluster

	if err := n.s3.WaitReady(60 * time.Second); err != nil {
		t.Fatalf("the S3 server: %v\n%s", err, lastLines(n.daemons["s3"].log.String(), 20))
	}
	bucket := n.s3.Bucket(t, "loom-netns")

	input, output := filepath.Join(c.dir, "words.txt"), filepath.Join(c.dir, "out")
	want := writeWords(t, input)
	r := c.runAttached("-p", "2", "--slots-per-tm", "1", "--checkpoint-interval", "100ms", "--checkpoint-dir", bucket+"/checkpoints",
		"--restart-strategy", "fixed-delay", "-D", "restart-strategy.fixed-delay.attempts=3", "-D", "restart-strategy.fixed-delay.delay=100ms",
		wordcountBin, "--input", input, "--output", output, "--line-delay", "3ms")
	c.waitAppJob(r.id, func(j jobJSON) bool { return j.Checkpoints.Counts.Completed >= 2 }, "two checkpoints completed")
	for _, ct := range c.app(r.id).Containers {
		if strings.HasPrefix(ct.NodeID, "127.") {
			t.Fatalf("container %s on node %s: a loopback address", ct.ID, ct.NodeID)
		}
	}

	old := c.raftLeader("")
	n.kill(n.daemonAt(old), syscall.SIGKILL)
	next := c.raftLeader(old)
	if out := c.mustLoom("dshell", "--num-containers", "3", "--memory-mb", "64", "--", "/bin/true"); !strings.Contains(out, "SUCCEEDED") {
		t.Fatalf("a shell after the failover:\n%s", out)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("loom run exited %d after the leader was killed:\n%s\n%s", code, r.out.String(), r.errb.String())
	}
	checkExactlyOnce(t, output, want)
	// Its logs are read from the NodeManagers' hosts.
	if logs := c.mustLoom("app", "logs", r.id); !strings.Contains(logs, "LogType:stderr") {
		t.Fatalf("app logs across hosts:\n%.2000s", logs)
	}

	// The killed leader lost its data dir: started again with the same
	// flags, it asks to be added and gets the state.
	lost := n.daemonAt(old)
	if err := os.RemoveAll(filepath.Join(c.dir, lost)); err != nil {
		t.Fatal(err)
	}
	n.start(lost)
	waitFor(t, 60*time.Second, "the replica without its data dir has the state", func() (bool, string) {
		out, errs, code := c.loom("app", "status", r.id, "-o", "json", "--rm", old)
		return code == 0 && strings.Contains(out, `"FINISHED"`), out + errs
	})

	// Cut the leader off.
	cut := n.daemonAt(next)
	n.ip("-n", n.daemons[cut].ns, "link", "set", "eth0", "down")
	third := c.raftLeader(next)
	shell := strings.TrimSpace(c.mustLoom("dshell", "-d", "--num-containers", "20", "--memory-mb", "64", "--", "sleep", "0.1"))
	// Inside its own namespace the cut-off replica knows it leads no more.
	waitFor(t, 30*time.Second, "the cut-off replica stepped down", func() (bool, string) {
		out, errs, code := runLoomIn(n.daemons[cut].ns, c.env(), "admin", "state", "--rm", next, "-o", "json")
		var st struct {
			State string `json:"state"`
		}
		_ = json.Unmarshal([]byte(out), &st)
		return code == 0 && st.State != "leader", out + errs
	})
	c.waitApp(shell, func(a appJSON) bool { return a.State == "FINISHED" }, "the shell started during the cut finished")
	n.ip("-n", n.daemons[cut].ns, "link", "set", "eth0", "up")
	t.Logf("leaders: %s, killed; %s, cut off; %s", old, next, third)

	// Every replica holds the same containers of the shell, each once.
	var views []string
	for _, addr := range c.rmAddrs {
		var a appJSON
		waitFor(t, 30*time.Second, "replica "+addr+" has the shell's end", func() (bool, string) {
			out, errs, code := c.loom("app", "status", shell, "-o", "json", "--rm", addr)
			if code != 0 || json.Unmarshal([]byte(out), &a) != nil {
				return false, out + errs
			}
			return a.State == "FINISHED", a.State
		})
		seen := map[string]bool{}
		var ids []string
		for _, ct := range a.Containers {
			if seen[ct.ID] {
				t.Errorf("replica %s lists container %s twice", addr, ct.ID)
			}
			seen[ct.ID] = true
			ids = append(ids, ct.ID+"@"+ct.NodeID)
		}
		if len(ids) != 21 {
			t.Errorf("replica %s: %d containers, want 20 and the AM", addr, len(ids))
		}
		views = append(views, strings.Join(ids, ","))
	}
	if views[0] != views[1] || views[1] != views[2] {
		t.Fatalf("the replicas disagree on the shell's containers:\n%s", strings.Join(views, "\n"))
	}

	// A job staged on a leader that fails before its AM starts: the nodes
	// are decommissioned (and, empty, leave) while it is submitted; then
	// the leader is killed and the nodes come back. The AM's files name the dead replica; the
	// nodes fetch them from the new leader, which has every staged file.
	stagedOn := c.raftLeader("")
	var nodes []string
	for _, name := range []string{"nm1", "nm2", "nm3"} {
		nodes = append(nodes, n.daemons[name].ip+":8041")
	}
	c.mustLoom(append([]string{"admin", "decommission", "--graceful"}, nodes...)...)
	waitFor(t, 30*time.Second, "the nodes decommissioned", func() (bool, string) {
		left := 0
		for _, nd := range c.nodes(true) {
			if nd.State == "DECOMMISSIONED" || nd.State == "SHUTDOWN" {
				left++
			}
		}
		return left == 3, ""
	})
	for _, name := range []string{"nm1", "nm2", "nm3"} {
		n.kill(name, syscall.SIGTERM) // gone already, or going
	}
	small := filepath.Join(c.dir, "small.txt")
	if err := os.WriteFile(small, []byte("to be or not to be\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var runOut bytes.Buffer
	run := c.command(context.Background(), "run", "-t", "per-job", "-p", "1", wordcountBin, "--input", small, "--output", filepath.Join(c.dir, "out2"))
	run.Stdout, run.Stderr = &runOut, &runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- run.Wait() }()
	t.Cleanup(func() { _ = run.Process.Kill() })
	waitFor(t, 30*time.Second, "the job submitted", func() (bool, string) {
		return strings.Contains(runOut.String(), "submitted application"), runOut.String()
	})
	n.kill(n.daemonAt(stagedOn), syscall.SIGKILL)
	c.raftLeader(stagedOn)
	c.mustLoom(append([]string{"admin", "recommission"}, nodes...)...)
	for _, name := range []string{"nm1", "nm2", "nm3"} {
		n.start(name)
	}
	select {
	case err := <-runDone:
		if err != nil || !strings.Contains(runOut.String(), "FINISHED (SUCCEEDED)") {
			t.Fatalf("a job staged on a leader that failed before its AM started: %v\n%s", err, runOut.String())
		}
	case <-time.After(90 * time.Second):
		status, _, _ := c.loom("app", "list", "--all")
		nodesNow, _, _ := c.loom("node", "list", "--all")
		var logs strings.Builder
		for _, name := range []string{"nm1", "nm2", "nm3"} {
			fmt.Fprintf(&logs, "%s:\n%s\n", name, lastLines(n.daemons[name].log.String(), 15))
		}
		t.Fatalf("the job staged on the failed leader did not end:\n%s\n%s\n%s\n%s", runOut.String(), status, nodesNow, logs.String())
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
