package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
)

// pki is the simulation's own CA and the certificates its parts present.
type pki struct {
	dir   string
	ca    *tlsutil.CA
	node  *tlsutil.Bundle
	mu    sync.Mutex // guards users: the sampler and the replay both ask
	users map[string]*tlsutil.Bundle
}

func newPKI(dir string) (*pki, error) {
	ca, err := tlsutil.NewCA("loom-sls", 48*time.Hour)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, ca: ca, users: map[string]*tlsutil.Bundle{}}
	server, err := ca.Sign(tlsutil.CertRequest{Identity: tlsutil.Identity{Kind: tlsutil.KindServer, Name: "rm"}, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		return nil, err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := tlsutil.WriteFiles(dir, true, map[string][]byte{"ca.pem": ca.PEM, "ca-key.pem": keyPEM, "rm.pem": server.CertPEM, "rm-key.pem": server.KeyPEM}); err != nil {
		return nil, err
	}
	if p.node, err = p.bundle(tlsutil.Identity{Kind: tlsutil.KindNode, Name: "sls-nm"}); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pki) bundle(id tlsutil.Identity) (*tlsutil.Bundle, error) {
	iss, err := p.ca.Sign(tlsutil.CertRequest{Identity: id, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		return nil, err
	}
	return tlsutil.FromPEM(p.ca.PEM, iss.CertPEM, iss.KeyPEM)
}

// user is the certificate of a simulated user, made once.
func (p *pki) user(name string) (*tlsutil.Bundle, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.users[name]; b != nil {
		return b, nil
	}
	id := tlsutil.Identity{Kind: tlsutil.KindUser, Name: name}
	if name == adminUser {
		id.Groups = []string{"admins"}
	}
	b, err := p.bundle(id)
	if err != nil {
		return nil, err
	}
	p.users[name] = b
	return b, nil
}

// adminUser is the simulation's admin of the cluster.
const adminUser = "sls-admin"

// rmProcess is the `loom rm` under test.
type rmProcess struct {
	cmd      *exec.Cmd
	addr     string
	httpAddr string
	log      string
	done     chan struct{}
}

func freePort() (int, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		// The RM's raft takes port + 2.
		if ln2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+2)); err == nil {
			ln2.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free pair of ports")
}

// loomBinary is --loom, or this checkout's loom built into work.
func loomBinary(c config, work string) (string, error) {
	if c.loom != "" {
		return c.loom, nil
	}
	bin := filepath.Join(work, "loom")
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building loom: %v\n%s", err, out)
	}
	return bin, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run sls in loom's checkout, or give --loom")
	}
	return filepath.Dir(mod), nil
}

func startRM(ctx context.Context, c config, work, queueFile string, p *pki) (*rmProcess, error) {
	bin, err := loomBinary(c, work)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	args := []string{"rm", "--data-dir", filepath.Join(work, "rm"), "--addr", addr, "--raft-addr", fmt.Sprintf("127.0.0.1:%d", port+2), "--http-addr", httpAddr, "--enable-debug",
		"--nm-heartbeat", c.heartbeat.String(), "--node-expiry", (30 * c.heartbeat).String(), "--queues", queueFile,
		"--tls-ca", filepath.Join(p.dir, "ca.pem"), "--tls-cert", filepath.Join(p.dir, "rm.pem"), "--tls-key", filepath.Join(p.dir, "rm-key.pem"),
		"--tls-ca-key", filepath.Join(p.dir, "ca-key.pem"), "--log-level", "warn"}
	if !c.preemption {
		args = append(args, "--no-preemption")
	}
	args = append(args, strings.Fields(c.rmArgs)...)
	logPath := filepath.Join(c.out, "rm.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	r := &rmProcess{cmd: cmd, addr: addr, httpAddr: httpAddr, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(r.done)
	}()
	// Ready when it answers as the leader.
	admin, err := p.user(adminUser)
	if err != nil {
		r.stop()
		return nil, err
	}
	cl, err := rmclient.New([]string{addr}, admin)
	if err != nil {
		r.stop()
		return nil, err
	}
	defer cl.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := cl.ServiceState(ctx)
		if err == nil && st.State == "leader" {
			return r, nil
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("loom rm exited; its log:\n%s", tailFile(logPath, 20))
		case <-ctx.Done():
			r.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("loom rm not the leader after 60s (%v); its log:\n%s", err, tailFile(logPath, 20))
		}
	}
}

func (r *rmProcess) pid() int { return r.cmd.Process.Pid }

func (r *rmProcess) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	}
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// procStats are a process's CPU time (seconds) and resident memory
// (bytes, now and at its peak), from /proc.
func procStats(pid int) (cpu float64, rss, peak int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The fields after the command name, which is in parentheses.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	cpu = float64(utime+stime) / 100 // USER_HZ
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return cpu, 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return cpu, rss, peak, sc.Err()
}

// raiseFileLimit lets this process hold a connection per simulated node.
func raiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	return nil
}

// queueFileFor is --queue-file, or a synthetic tree of c.queues leaves;
// it returns the file and each leaf's capacity (a fraction).
func queueFileFor(c config, work string, trace []arrival) (string, map[string]float64, error) {
	if c.queueFile != "" {
		return readQueueCapacities(c.queueFile)
	}
	names, caps := syntheticQueues(c.queues)
	for _, a := range trace {
		if _, ok := caps[a.queue]; !ok {
			return "", nil, fmt.Errorf("the trace names queue %s, which the synthetic queues (%s) lack: give --queue-file", a.queue, strings.Join(names, ", "))
		}
	}
	var b strings.Builder
	b.WriteString("queue \"root\" {\n")
	for _, n := range names {
		// Elastic up to the whole cluster, users unlimited within the
		// queue: shares come from the scheduler, not from caps.
		fmt.Fprintf(&b, "  queue %q {\n    capacity          = \"%g%%\"\n    maximum_capacity  = \"100%%\"\n    user_limit_factor = 100\n    max_am_share      = \"20%%\"\n  }\n", strings.TrimPrefix(n, "root."), caps[n]*100)
	}
	b.WriteString("}\n")
	path := filepath.Join(work, "queues.hcl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", nil, err
	}
	return path, caps, nil
}

// syntheticQueues are n leaf queues q1..qn: 30, 20, 15, 10, 10, 5, 5, 5%
// for 8, equal shares otherwise.
func syntheticQueues(n int) ([]string, map[string]float64) {
	eight := []float64{30, 20, 15, 10, 10, 5, 5, 5}
	var names []string
	caps := map[string]float64{}
	for i := range n {
		name := fmt.Sprintf("root.q%d", i+1)
		names = append(names, name)
		if n == 8 {
			caps[name] = eight[i] / 100
		} else {
			caps[name] = 1 / float64(n)
		}
	}
	return names, caps
}

// profile saves the RM's CPU profile over d to path.
func (r *rmProcess) profile(ctx context.Context, p *pki, d time.Duration, path string) error {
	return r.debug(ctx, p, fmt.Sprintf("profile?seconds=%d", int(d.Seconds())), path)
}

// debug saves one of the RM's /debug/pprof/ answers to path.
func (r *rmProcess) debug(ctx context.Context, p *pki, what, path string) error {
	body, err := r.get(ctx, p, "/debug/pprof/"+what)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// metrics returns the RM's Prometheus metrics, as text.
func (r *rmProcess) metrics(ctx context.Context, p *pki) (string, error) {
	body, err := r.get(ctx, p, "/metrics")
	if err != nil {
		return "", err
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, 16<<20))
	return string(b), err
}

// get reads path from the RM's HTTP address, as the cluster's admin.
func (r *rmProcess) get(ctx context.Context, p *pki, path string) (io.ReadCloser, error) {
	admin, err := p.user(adminUser)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://%s%s", r.httpAddr, path), nil)
	if err != nil {
		return nil, err
	}
	resp, err := rmclient.HTTPClient(admin).Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("reading the RM's %s: %s", path, resp.Status)
	}
	return resp.Body, nil
}
