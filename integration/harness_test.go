// Package integration drives loom's real binaries: a cluster of real
// processes on real ports, killed with real signals.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	loomBin      string
	memhogBin    string
	wordcountBin string
	topspeedBin  string
	shiftyBin    string
	grepBin      string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "loom-it-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	loomBin = filepath.Join(dir, "loom")
	memhogBin = filepath.Join(dir, "memhog")
	wordcountBin = filepath.Join(dir, "wordcount")
	topspeedBin = filepath.Join(dir, "topspeedwindow")
	shiftyBin = filepath.Join(dir, "shiftyjob")
	grepBin = filepath.Join(dir, "grep")
	for _, b := range [][2]string{
		{loomBin, ".."}, {memhogBin, "./testdata/memhog"}, {shiftyBin, "./testdata/shiftyjob"},
		{wordcountBin, "../flinkrt/examples/wordcount"}, {topspeedBin, "../flinkrt/examples/topspeedwindow"},
		{grepBin, "../flinkrt/examples/grep"},
	} {
		out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b[1], err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePorts returns a port p such that p and p+2 are free (the RM's gRPC
// and raft ports), and another free port.
func freePorts(t *testing.T, replicas int) (int, int) {
	t.Helper()
	replicas = max(replicas, 1)
	for i := 0; i < 100; i++ {
		p := fixedPort(56 + 100*(replicas-1))
		free := true
		for r := 0; r < replicas; r++ {
			q := p + 100*r
			free = free && portFree(q) && portFree(q+2) && portFree(q+56)
		}
		if free {
			return p, p + 56
		}
	}
	t.Fatal("no free ports")
	return 0, 0
}

// fixedPort picks a port p, with p+span also a port, below the host's
// ephemeral range: the ports the kernel hands out for connections and for
// listeners on port 0 (every TaskManager, worker and data server) never
// take it between the check that it is free and its daemon's bind.
func fixedPort(span int) int {
	hi := 32768 // Linux's default ip_local_port_range starts there
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > 12000+span {
				hi = lo
			}
		}
	}
	return 10000 + rand.IntN(hi-span-10000)
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// cluster is a `loom cluster up` process.
type cluster struct {
	t      *testing.T
	dir    string
	rmAddr string
	// rmAddrs lists every RM replica, rmAddr first.
	rmAddrs  []string
	httpAddr string
	cmd      *exec.Cmd
	out      *bytes.Buffer
	done     chan struct{}
	// netns, when set, is the network namespace clients of the cluster
	// run in (netns_test.go).
	netns string
	// clientEnv is more of the clients' environment (an S3 server's
	// settings).
	clientEnv []string
}

type clusterOpts struct {
	nodes     int
	noCgroups bool
	memoryMB  int
	// extra are more `cluster up` flags.
	extra []string
	// rmReplicas runs that many RM replicas (cluster up --rm-replicas).
	rmReplicas int
}

func startCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	if o.nodes == 0 {
		o.nodes = 3
	}
	if o.memoryMB == 0 {
		o.memoryMB = 4096
	}
	dir := t.TempDir()
	rmPort, httpPort := freePorts(t, o.rmReplicas)
	c := &cluster{t: t, dir: dir, rmAddr: fmt.Sprintf("127.0.0.1:%d", rmPort), httpAddr: fmt.Sprintf("127.0.0.1:%d", httpPort), out: &bytes.Buffer{}, done: make(chan struct{})}
	for r := 0; r < max(o.rmReplicas, 1); r++ {
		c.rmAddrs = append(c.rmAddrs, fmt.Sprintf("127.0.0.1:%d", rmPort+100*r))
	}
	args := []string{"cluster", "up", "--nodes", strconv.Itoa(o.nodes), "--dir", dir, "--rm-addr", c.rmAddr,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort), "--node-memory-mb", strconv.Itoa(o.memoryMB), "--no-user-config"}
	if o.rmReplicas > 1 {
		args = append(args, "--rm-replicas", strconv.Itoa(o.rmReplicas))
	}
	if o.noCgroups {
		args = append(args, "--nm-no-cgroups")
	}
	args = append(args, o.extra...)
	c.cmd = exec.Command(loomBin, args...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stdout, c.cmd.Stderr = pw, pw
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		closed := false
		for sc.Scan() {
			c.out.WriteString(sc.Text() + "\n")
			if !closed && strings.Contains(sc.Text(), "cluster ready") {
				close(ready)
				closed = true
			}
		}
	}()
	go func() {
		_ = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(c.stop)
	select {
	case <-ready:
	case <-c.done:
		t.Fatalf("cluster up exited:\n%s", c.out)
	case <-time.After(60 * time.Second):
		t.Fatalf("cluster not ready after 60s:\n%s", c.out)
	}
	return c
}

// stop stops the cluster with SIGTERM, as Ctrl-C would, and checks that
// none of its processes is left.
func (c *cluster) stop() {
	t := c.t
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(40 * time.Second):
		_ = c.cmd.Process.Kill()
		t.Errorf("cluster up did not stop within 40s:\n%s", c.out)
	}
	waitFor(t, 10*time.Second, "no process of the cluster left", func() (bool, string) {
		pids := pgrep(c.dir)
		return len(pids) == 0, fmt.Sprintf("processes still running: %v", pids)
	})
}

// loom runs the CLI against the cluster and returns stdout, stderr and
// the exit status.
func (c *cluster) loom(args ...string) (string, string, int) {
	return runLoomIn(c.netns, c.env(), args...)
}

// command is the CLI run as a client of the cluster: in its clients'
// network namespace when it has one.
func (c *cluster) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := loomCommand(ctx, c.netns, args...)
	cmd.Env = append(os.Environ(), c.env()...)
	return cmd
}

// loomCommand runs loom, in the network namespace netns unless it is "".
func loomCommand(ctx context.Context, netns string, args ...string) *exec.Cmd {
	if netns != "" {
		return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns, loomBin}, args...)...)
	}
	return exec.CommandContext(ctx, loomBin, args...)
}

// env is the environment of a client of the cluster: its address and
// the admin's client config that `cluster up` wrote.
func (c *cluster) env() []string {
	addrs := c.rmAddrs
	if len(addrs) == 0 {
		addrs = []string{c.rmAddr}
	}
	return append([]string{"LOOM_RM=" + strings.Join(addrs, ","), "LOOM_CONFIG=" + c.clientConfig()}, c.clientEnv...)
}

// handPKI makes, with the `loom tls` commands as an operator would, the
// CA and certificates of a cluster started by hand in dir/tls: server
// "rm", nodes "nm-1".."nm-N", and the admin's client config at
// dir/loom.conf. It returns the flags of the RM and of node i.
func handPKI(t *testing.T, dir, rmAddr string, nodes int) (rmFlags []string, nodeFlags func(i int) []string) {
	t.Helper()
	var names []string
	for i := 1; i <= nodes; i++ {
		names = append(names, fmt.Sprintf("nm-%d", i))
	}
	files := makePKI(t, dir, []string{"rm"}, names)
	tlsDir := filepath.Join(dir, "tls")
	if out, errs, code := runLoomEnv(nil, "tls", "config", "--rm", rmAddr, "--ca", filepath.Join(tlsDir, "ca.pem"), "--cert", filepath.Join(tlsDir, "user-admin.pem"),
		"--key", filepath.Join(tlsDir, "user-admin-key.pem"), "--path", filepath.Join(dir, "loom.conf")); code != 0 {
		t.Fatalf("loom tls config: exit %d\n%s%s", code, out, errs)
	}
	return append(files("server-rm"), "--tls-ca-key", filepath.Join(tlsDir, "ca-key.pem")), func(i int) []string { return files(fmt.Sprintf("node-nm-%d", i)) }
}

// makePKI makes, with the `loom tls` commands as an operator would, a CA
// in dir/tls and the certificates of the servers and nodes named, and of
// an admin user; it returns the TLS flags of a certificate by its base
// name (server-NAME, node-NAME).
func makePKI(t *testing.T, dir string, servers, nodes []string) func(base string) []string {
	t.Helper()
	tlsDir := filepath.Join(dir, "tls")
	must := func(args ...string) {
		t.Helper()
		if out, errs, code := runLoomEnv(nil, args...); code != 0 {
			t.Fatalf("loom %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
	}
	ca, caKey := filepath.Join(tlsDir, "ca.pem"), filepath.Join(tlsDir, "ca-key.pem")
	must("tls", "ca", "create", "--dir", tlsDir)
	signed := func(args ...string) {
		must(append([]string{"tls", "cert", "create", "--dir", tlsDir, "--ca", ca, "--ca-key", caKey}, args...)...)
	}
	for _, name := range servers {
		signed("--server", "--name", name)
	}
	for _, name := range nodes {
		signed("--node", name)
	}
	signed("--client", "--user", "admin", "--groups", "admins")
	return func(base string) []string {
		return []string{"--tls-ca", ca, "--tls-cert", filepath.Join(tlsDir, base+".pem"), "--tls-key", filepath.Join(tlsDir, base+"-key.pem")}
	}
}

// clientConfig is the path of the cluster admin's client config.
func (c *cluster) clientConfig() string { return filepath.Join(c.dir, "loom.conf") }

// runLoomEnv runs the CLI with env added to the test's environment.
func runLoomEnv(env []string, args ...string) (string, string, int) {
	return runLoomIn("", env, args...)
}

// runLoomIn is runLoomEnv in the network namespace netns.
func runLoomIn(netns string, env []string, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := loomCommand(ctx, netns, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), code
}

// mustLoom runs the CLI and fails the test unless it exits 0.
func (c *cluster) mustLoom(args ...string) string {
	c.t.Helper()
	out, errs, code := c.loom(args...)
	if code != 0 {
		c.t.Fatalf("loom %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

type resourceJSON struct {
	Memory int64 `json:"memory"`
	VCores int32 `json:"vCores"`
}

type nodeJSON struct {
	ID            string       `json:"id"`
	State         string       `json:"state"`
	HTTPAddress   string       `json:"httpAddress"`
	TotalResource resourceJSON `json:"totalResource"`
	UsedResource  resourceJSON `json:"usedResource"`
	NumContainers int          `json:"numContainers"`
	Rack          string       `json:"rack"`
	Labels        []string     `json:"nodeLabels"`
}

type containerJSON struct {
	ID          string `json:"id"`
	NodeID      string `json:"nodeId"`
	State       string `json:"state"`
	ExitStatus  int    `json:"exitStatus"`
	Diagnostics string `json:"diagnosticsInfo"`
	IsAM        bool   `json:"isAM"`
}

type appJSON struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	User        string          `json:"user"`
	Queue       string          `json:"queue"`
	State       string          `json:"state"`
	FinalStatus string          `json:"finalStatus"`
	Diagnostics string          `json:"diagnostics"`
	TrackingURL string          `json:"trackingUrl"`
	Containers  []containerJSON `json:"containers"`
}

func (c *cluster) nodes(all bool) []nodeJSON {
	c.t.Helper()
	args := []string{"node", "list", "-o", "json"}
	if all {
		args = append(args, "--all")
	}
	var out []nodeJSON
	if err := json.Unmarshal([]byte(c.mustLoom(args...)), &out); err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *cluster) app(id string) appJSON {
	c.t.Helper()
	var out appJSON
	if err := json.Unmarshal([]byte(c.mustLoom("app", "status", id, "-o", "json")), &out); err != nil {
		c.t.Fatal(err)
	}
	return out
}

// nmPid returns the pid of the NodeManager serving nodeID, from the
// NodeManagers' logs.
func (c *cluster) nmPid(nodeID string) int {
	c.t.Helper()
	logs, _ := filepath.Glob(filepath.Join(c.dir, "nm-*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if !strings.Contains(string(b), "node_id="+nodeID) {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(l), ".log")
		pids := pgrep("--dir " + filepath.Join(c.dir, name) + " ")
		if len(pids) == 1 {
			return pids[0]
		}
	}
	c.t.Fatalf("no NodeManager process for node %s", nodeID)
	return 0
}

// pgrep returns the pids of processes whose command line contains s.
func pgrep(s string) []int {
	out, _ := exec.Command("pgrep", "-f", "--", s).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 10 * time.Millisecond
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, detail)
		}
		time.Sleep(delay)
		delay = min(delay*2, 250*time.Millisecond)
	}
}

// marker returns a unique sleep duration argument to find a test's
// processes by their command line.
func marker() string {
	return fmt.Sprintf("1000.%06d", rand.IntN(1000000))
}

// rmPid returns the pid of the cluster's ResourceManager.
func (c *cluster) rmPid() int {
	c.t.Helper()
	pids := pgrep("--data-dir " + filepath.Join(c.dir, "rm") + " ")
	if len(pids) != 1 {
		c.t.Fatalf("ResourceManager processes: %v, want one", pids)
	}
	return pids[0]
}
