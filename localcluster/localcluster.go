// Package localcluster runs loom's embedded default: one ResourceManager
// and N NodeManagers on this machine, each its own OS process started from
// the loom binary, with liveness settings short enough for a laptop.
package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
)

// Config describes a local cluster.
type Config struct {
	Binary   string // the loom executable; default: this one
	Dir      string
	Nodes    int
	RMAddr   string
	HTTPAddr string
	RaftAddr string // default: the RM port + 2
	// RMReplicas is how many ResourceManager replicas form the cluster's
	// raft (1, 3 or 5). Replica i (from 0) listens on RMAddr's, HTTPAddr's
	// and RaftAddr's ports + 100*i.
	RMReplicas   int
	NodeMemoryMB int64
	NodeVCores   int32
	NMHeartbeat  time.Duration
	NodeExpiry   time.Duration
	AMExpiry     time.Duration
	KillGrace    time.Duration
	// MaxCompletedApps and CompletedAppTTL are the RM's retention; zero
	// leaves its defaults.
	MaxCompletedApps int
	CompletedAppTTL  time.Duration
	GCInterval       time.Duration
	LogLevel         string
	// NoCgroups makes the NodeManagers poll process RSS instead of using
	// cgroups.
	NoCgroups bool
	// Ready is how long Start waits for every node to be RUNNING.
	Ready time.Duration
	// User is the admin the cluster's client certificate is for; default:
	// this process's user.
	User string
	// QueueFile is the ResourceManagers' queue file (--queues); none
	// runs root.default alone.
	QueueFile string
	// PreemptionGrace, when set, is the RMs' --preemption-grace.
	PreemptionGrace time.Duration
	// Racks, when more than one, spreads the nodes over racks /rack-1 to
	// /rack-N, node i on rack (i-1) mod N + 1.
	Racks int
	// LabeledNodes gives the last nodes a label: LabeledNodes of them
	// carry NodeLabel.
	NodeLabel    string
	LabeledNodes int
}

// DefaultConfig returns the embedded default's settings: a lost node
// shows within seconds.
func DefaultConfig() *Config {
	return &Config{
		Nodes:        3,
		RMAddr:       "127.0.0.1:8032",
		HTTPAddr:     "127.0.0.1:8088",
		RMReplicas:   1,
		NodeMemoryMB: 4096,
		NodeVCores:   4,
		NMHeartbeat:  250 * time.Millisecond,
		NodeExpiry:   4 * time.Second,
		AMExpiry:     10 * time.Second,
		KillGrace:    2 * time.Second,
		LogLevel:     "info",
		Ready:        30 * time.Second,
	}
}

// Process is one daemon of the cluster. Supervised, it is started again
// when it exits, with the same arguments (the RM with its data dir and
// ports, a NodeManager with its dir and address).
type Process struct {
	Name string
	Log  string
	bin  string
	args []string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current run exits
	err      error
	restarts int
}

// Pid returns the process id of the current run.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Done is closed when the current run has exited.
func (p *Process) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Err is the current run's exit error, once Done.
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Restarts is how many times the supervisor started the process again.
func (p *Process) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// start runs the process, appending to its log.
func (p *Process) start() error {
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group (a terminal's Ctrl-C reaches only this
	// process, which stops the daemons in order); SIGTERM if this process
	// dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.err = cmd, done, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Cluster is a running local cluster.
type Cluster struct {
	cfg *Config
	// ClientConfig is the client config of the cluster's admin user
	// (LOOM_CONFIG), and Client that user's identity.
	ClientConfig string
	Client       *tlsutil.Bundle
	// RM is the first ResourceManager replica, RMs all of them.
	RM    *Process
	RMs   []*Process
	NMs   []*Process
	Nodes []*yarnpb.NodeReport
	// Took is how long the cluster took to have every node RUNNING.
	Took time.Duration
	once sync.Once
	// stopping is set once Stop began: the supervisor starts nothing
	// again.
	stopping atomic.Bool
	// startMu orders a restart against Stop: no daemon starts once Stop
	// has begun signalling.
	startMu sync.Mutex
	stopCh  chan struct{}
	wg      sync.WaitGroup
	// replicas is where the RM replicas listen.
	replicas []replica
}

// RaftAddrFor derives the raft address from the RM's: port + 2, as 8032
// and 8034.
func RaftAddrFor(rmAddr string) (string, error) {
	host, port, err := net.SplitHostPort(rmAddr)
	if err != nil {
		return "", fmt.Errorf("--rm-addr %q: expected host:port", rmAddr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65533 {
		return "", fmt.Errorf("--rm-addr %q: needs a fixed port number", rmAddr)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+2)), nil
}

// shiftPort is addr with its port moved by d.
func shiftPort(addr string, d int) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q: expected host:port", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p+d > 65535 {
		return "", fmt.Errorf("%q: needs a fixed port number below %d", addr, 65536-d)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+d)), nil
}

// replica is where one RM replica listens and keeps its data.
type replica struct {
	name, addr, http, raft string
}

// replicas lays the RM replicas out: one named rm, or rm-1 to rm-N on
// ports 100 apart.
func (cfg *Config) replicas() ([]replica, error) {
	n := max(cfg.RMReplicas, 1)
	if n > 1 && n != 3 && n != 5 {
		return nil, fmt.Errorf("--rm-replicas %d: want 1, 3 or 5 (raft needs a majority; an even count adds a replica that can fail without adding one that may)", n)
	}
	var out []replica
	for i := 0; i < n; i++ {
		r := replica{name: "rm"}
		if n > 1 {
			r.name = fmt.Sprintf("rm-%d", i+1)
		}
		var err error
		if r.addr, err = shiftPort(cfg.RMAddr, 100*i); err != nil {
			return nil, fmt.Errorf("--rm-addr %w", err)
		}
		if cfg.HTTPAddr != "" {
			if r.http, err = shiftPort(cfg.HTTPAddr, 100*i); err != nil {
				return nil, fmt.Errorf("--http-addr %w", err)
			}
		}
		if r.raft, err = shiftPort(cfg.RaftAddr, 100*i); err != nil {
			return nil, fmt.Errorf("the raft address %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// RMAddrs lists the gRPC addresses of the cluster's RM replicas.
func (c *Cluster) RMAddrs() []string {
	var out []string
	for _, r := range c.replicas {
		out = append(out, r.addr)
	}
	return out
}

// HTTPAddrs lists their HTTP addresses.
func (c *Cluster) HTTPAddrs() []string {
	var out []string
	for _, r := range c.replicas {
		out = append(out, r.http)
	}
	return out
}

// Start starts the cluster and waits until every node is RUNNING.
func Start(ctx context.Context, cfg *Config) (*Cluster, error) {
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("--nodes must be at least 1, got %d", cfg.Nodes)
	}
	if cfg.Dir == "" {
		return nil, errors.New("the cluster needs a directory (--dir)")
	}
	if err := rmclient.CheckAddr(cfg.RMAddr); err != nil {
		return nil, fmt.Errorf("--rm-addr %q: %w", cfg.RMAddr, err)
	}
	if cfg.RaftAddr == "" {
		ra, err := RaftAddrFor(cfg.RMAddr)
		if err != nil {
			return nil, err
		}
		cfg.RaftAddr = ra
	}
	if cfg.Binary == "" {
		bin, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Binary = bin
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	c := &Cluster{cfg: cfg, stopCh: make(chan struct{})}
	var err error
	if c.replicas, err = cfg.replicas(); err != nil {
		return nil, err
	}
	for _, r := range c.replicas {
		for _, a := range []struct{ flag, addr string }{{"--rm-addr", r.addr}, {"--http-addr", r.http}, {"the raft address (--rm-addr's port + 2)", r.raft}} {
			if err := portFree(a.addr); err != nil {
				what := a.flag
				if len(c.replicas) > 1 {
					what = r.name + "'s " + strings.TrimPrefix(a.flag, "--")
				}
				return nil, fmt.Errorf("%s %s is in use (%v): is another cluster running? Stop it, or give this one other ports", what, a.addr, err)
			}
		}
	}
	pki, err := c.certificates()
	if err != nil {
		return nil, err
	}
	var retention []string
	if cfg.MaxCompletedApps > 0 {
		retention = append(retention, "--max-completed-apps", fmt.Sprint(cfg.MaxCompletedApps))
	}
	if cfg.CompletedAppTTL > 0 {
		retention = append(retention, "--completed-app-ttl", cfg.CompletedAppTTL.String())
	}
	if cfg.GCInterval > 0 {
		retention = append(retention, "--gc-interval", cfg.GCInterval.String())
	}
	if cfg.QueueFile != "" {
		abs, err := filepath.Abs(cfg.QueueFile)
		if err != nil {
			return nil, err
		}
		retention = append(retention, "--queues", abs)
	}
	if cfg.PreemptionGrace > 0 {
		retention = append(retention, "--preemption-grace", cfg.PreemptionGrace.String())
	}
	rmList := strings.Join(c.RMAddrs(), ",")
	for _, r := range c.replicas {
		files, err := pki.files.Ensure(pki.ca, r.name, tlsutil.Identity{Kind: tlsutil.KindServer, Name: r.name})
		if err != nil {
			c.Stop()
			return nil, err
		}
		args := append(append(tlsArgs(files), retention...),
			"--tls-ca-key", pki.caKey,
			"--data-dir", filepath.Join(cfg.Dir, r.name),
			"--addr", r.addr,
			"--http-addr", r.http,
			"--raft-addr", r.raft,
			"--nm-heartbeat", cfg.NMHeartbeat.String(),
			"--node-expiry", cfg.NodeExpiry.String(),
			"--am-expiry", cfg.AMExpiry.String(),
			"--raft-timeout", "100ms",
			"--log-level", cfg.LogLevel,
		)
		if len(c.replicas) > 1 {
			args = append(args, "--bootstrap-expect", strconv.Itoa(len(c.replicas)), "--join", rmList)
		}
		p, err := c.spawn(r.name, args...)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.RMs = append(c.RMs, p)
	}
	c.RM = c.RMs[0]
	for i := 1; i <= cfg.Nodes; i++ {
		nodeFiles, err := pki.files.Ensure(pki.ca, fmt.Sprintf("nm-%d", i), tlsutil.Identity{Kind: tlsutil.KindNode, Name: fmt.Sprintf("nm-%d", i)})
		if err != nil {
			c.Stop()
			return nil, err
		}
		addr, err := nodeAddr(filepath.Join(cfg.Dir, fmt.Sprintf("nm-%d.addr", i)))
		if err != nil {
			c.Stop()
			return nil, err
		}
		args := append(tlsArgs(nodeFiles), "--rm", rmList,
			"--dir", filepath.Join(cfg.Dir, fmt.Sprintf("nm-%d", i)),
			"--addr", addr,
			"--http-addr", "127.0.0.1:0",
			"--memory-mb", strconv.FormatInt(cfg.NodeMemoryMB, 10),
			"--vcores", strconv.Itoa(int(cfg.NodeVCores)),
			"--kill-grace", cfg.KillGrace.String(),
			"--log-level", cfg.LogLevel,
		)
		if cfg.NoCgroups {
			args = append(args, "--no-cgroups")
		}
		if cfg.Racks > 1 {
			args = append(args, "--rack", fmt.Sprintf("/rack-%d", (i-1)%cfg.Racks+1))
		}
		if cfg.NodeLabel != "" && i > cfg.Nodes-cfg.LabeledNodes {
			args = append(args, "--labels", cfg.NodeLabel)
		}
		nm, err := c.spawn(fmt.Sprintf("nm-%d", i), args...)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.NMs = append(c.NMs, nm)
	}
	if err := c.waitReady(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	c.Took = time.Since(start)
	return c, nil
}

// portFree reports whether addr can be listened on.
func portFree(addr string) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// nodeAddr is the address of a NodeManager of the cluster: the one it
// had before, kept in file, so that a restarted NodeManager, or a cluster
// started again on the same dir, is the same node; else a free port,
// recorded.
func nodeAddr(file string) (string, error) {
	if b, err := os.ReadFile(file); err == nil {
		if addr := strings.TrimSpace(string(b)); rmclient.CheckAddr(addr) == nil {
			return addr, nil
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(file, []byte(addr+"\n"), 0o644); err != nil {
		return "", err
	}
	return addr, nil
}

// freeAddr is a loopback address free now, on a port below the kernel's
// range of ephemeral ports where one is known: the port is free only
// until the NodeManager listens on it, and no outgoing connection of
// another process is given a port from there meanwhile.
func freeAddr() (string, error) {
	if lo := ephemeralLow(); lo > 12000 {
		for range 50 {
			addr := fmt.Sprintf("127.0.0.1:%d", 10000+rand.IntN(lo-10000))
			if portFree(addr) == nil {
				return addr, nil
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ephemeralLow is the first port of Linux's ephemeral range, 0 unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, _ := strconv.Atoi(f[0])
	return lo
}

type clusterPKI struct {
	files tlsutil.ClusterFiles
	ca    *tlsutil.CA
	caKey string
}

// certificates makes the cluster's CA and the certificates of its RM
// and its admin user under Dir/tls (keeping those already there), and
// the admin's client config.
func (c *Cluster) certificates() (*clusterPKI, error) {
	abs, err := filepath.Abs(c.cfg.Dir)
	if err != nil {
		return nil, err
	}
	files := tlsutil.ClusterFiles{Dir: filepath.Join(abs, "tls")}
	ca, err := files.EnsureCA("loom local cluster")
	if err != nil {
		return nil, err
	}
	user := c.cfg.User
	if user == "" {
		user = rmclient.CurrentUser()
	}
	uf, err := files.Ensure(ca, "user-"+user, tlsutil.Identity{Kind: tlsutil.KindUser, Name: user, Groups: []string{"admins"}})
	if err != nil {
		return nil, err
	}
	if c.Client, err = tlsutil.Load(uf); err != nil {
		return nil, err
	}
	c.ClientConfig = filepath.Join(abs, "loom.conf")
	conf := &rmclient.Config{
		RM:  c.RMAddrs(),
		TLS: rmclient.ConfigTLS{CA: uf.CA, Cert: uf.Cert, Key: uf.Key},
		By:  rmclient.ConfigByClusterUp,
	}
	if err := rmclient.WriteConfig(c.ClientConfig, conf); err != nil {
		return nil, err
	}
	return &clusterPKI{files: files, ca: ca, caKey: files.CAKey()}, nil
}

func tlsArgs(f tlsutil.Files) []string {
	return []string{"--tls-ca", f.CA, "--tls-cert", f.Cert, "--tls-key", f.Key}
}

func (c *Cluster) spawn(name string, args ...string) (*Process, error) {
	sub := "nm"
	if strings.HasPrefix(name, "rm") {
		sub = "rm"
	}
	p := &Process{Name: name, Log: filepath.Join(c.cfg.Dir, name+".log"), bin: c.cfg.Binary, args: append([]string{sub}, args...)}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	rm, err := rmclient.New(c.RMAddrs(), c.Client)
	if err != nil {
		return err
	}
	defer rm.Close()
	rm.RetryFor = 100 * time.Millisecond
	deadline := time.Now().Add(c.cfg.Ready)
	for {
		for _, p := range append(slices.Clone(c.RMs), c.NMs...) {
			select {
			case <-p.Done():
				return fmt.Errorf("%s exited (%v): %s", p.Name, p.Err(), lastError(p.Log))
			default:
			}
		}
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		nodes, err := rm.Nodes(qctx, false)
		cancel()
		if err == nil {
			running := 0
			for _, n := range nodes {
				if n.State == yarnpb.NodeState_NODE_RUNNING {
					running++
				}
			}
			if running >= c.cfg.Nodes {
				c.Nodes = nodes
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster was not ready after %s; see the logs in %s", c.cfg.Ready, c.cfg.Dir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Stop stops the NodeManagers (which stop their containers), then the
// ResourceManager. Anything still running after a grace period is killed.
func (c *Cluster) Stop() {
	c.once.Do(func() {
		c.startMu.Lock()
		c.stopping.Store(true)
		close(c.stopCh)
		c.startMu.Unlock()
		grace := c.cfg.KillGrace + 10*time.Second
		stopAll(c.NMs, grace)
		stopAll(c.RMs, 10*time.Second)
		c.wg.Wait()
	})
}

func stopAll(ps []*Process, grace time.Duration) {
	for _, p := range ps {
		p.mu.Lock()
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		p.mu.Unlock()
	}
	timeout := time.After(grace)
	for _, p := range ps {
		select {
		case <-p.Done():
		case <-timeout:
			_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
			<-p.Done()
		}
	}
}

// Supervise starts again every daemon that exits while the cluster runs,
// with backoff (200 ms, doubling to 10 s, back to 200 ms once a run lasts
// a minute), saying so on w, until the cluster stops: a dead RM comes
// back with its data dir and its applications, a dead NodeManager with
// its dir and its node's address.
func (c *Cluster) Supervise(w io.Writer) {
	for _, p := range append(slices.Clone(c.RMs), c.NMs...) {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.supervise(p, w)
		}()
	}
}

func (c *Cluster) supervise(p *Process, w io.Writer) {
	backoff := 200 * time.Millisecond
	for {
		started := time.Now()
		<-p.Done()
		if c.stopping.Load() {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = 200 * time.Millisecond
		}
		fmt.Fprintf(w, "%s exited (%v); starting it again in %s (see %s)\n", p.Name, p.Err(), backoff, p.Log)
		select {
		case <-c.stopCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
		c.startMu.Lock()
		if c.stopping.Load() {
			c.startMu.Unlock()
			return
		}
		err := p.start()
		c.startMu.Unlock()
		if err != nil {
			fmt.Fprintf(w, "%s could not be started again: %v\n", p.Name, err)
			continue
		}
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
	}
}

// lastError is the last line of a daemon's log that names an error, or
// where to look.
func lastError(log string) string {
	b, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0 && i >= len(lines)-20; i-- {
		if l := lines[i]; strings.Contains(l, "error") || strings.HasPrefix(l, "loom:") {
			return strings.TrimSpace(l)
		}
	}
	return "see " + log
}

// AppProcesses returns the pids of the processes on this machine that
// belong to an application and whose command line contains s (every one
// of them when s is empty): its containers' processes and their children
// carry the application's id in their environment (Linux /proc).
func AppProcesses(appID, s string) []int {
	entries, _ := os.ReadDir("/proc")
	want := []byte("LOOM_APPLICATION_ID=" + appID + "\x00")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		if s != "" {
			cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if !strings.Contains(strings.ReplaceAll(string(cmd), "\x00", " "), s) {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}
