// Package nm is loom's NodeManager: it registers a node's resources with
// the ResourceManager, heartbeats, localizes files, runs containers as
// process groups with memory limits, serves their logs, and stops every
// one of them when it stops.
package nm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/rpc"
	"github.com/loom-project/loom/tlsutil"
)

// Config holds every setting of a NodeManager.
type Config struct {
	Logger hclog.Logger
	// Dir holds working directories, logs and the localization cache.
	Dir     string
	RMAddrs []string
	// Addr is the gRPC listen address; the node id is AdvertiseAddr
	// (defaults to the listener's address).
	Addr          string
	AdvertiseAddr string
	HTTPAddr      string
	MemoryMB      int64
	VCores        int32
	Labels        []string
	// Rack is the node's network location, as /dc1/rack7 (the RM's
	// default is /default-rack).
	Rack string
	// KillGrace is the time between SIGTERM and SIGKILL on a stop.
	KillGrace time.Duration
	// CacheMB bounds the localization cache (DefaultCacheMB when 0).
	CacheMB int64
	// LogRetention is how long an ended application's logs stay on the
	// node, and MaxAppLogs how many ended applications' logs it keeps at
	// most (logretention.go).
	LogRetention time.Duration
	MaxAppLogs   int
	// MonitorInterval is how often memory use is checked.
	MonitorInterval time.Duration
	// NoCgroups forces process-tree RSS monitoring.
	NoCgroups bool
	// TLS is the node's identity (a node certificate of the cluster CA).
	TLS *tlsutil.Bundle
	// Admins lists the users, and groups as "group:NAME", that may act
	// on any application's containers.
	Admins []string
}

// DefaultConfig returns every default in one place; resources default to
// the host's.
func DefaultConfig() *Config {
	return &Config{
		Logger:          hclog.NewNullLogger(),
		RMAddrs:         []string{rmclient.DefaultAddr},
		Addr:            "127.0.0.1:8041",
		HTTPAddr:        "127.0.0.1:8042",
		MemoryMB:        hostMemoryMB() * 8 / 10,
		VCores:          int32(runtime.NumCPU()),
		KillGrace:       2 * time.Second,
		LogRetention:    DefaultLogRetention,
		MaxAppLogs:      DefaultMaxAppLogs,
		MonitorInterval: 250 * time.Millisecond,
		Admins:          []string{"group:admins"},
	}
}

// NodeManager runs containers on one host.
type NodeManager struct {
	cfg    *Config
	logger hclog.Logger
	rm     *rmclient.Client
	exec   *executor
	tokens *containerTokens
	logs   endedLogs

	grpc   *grpc.Server
	ln     net.Listener
	http   *http.Server
	httpLn net.Listener
	nodeID string

	notify chan struct{}
	wg     sync.WaitGroup
}

// New prepares a NodeManager: its directories and listeners, and stops
// whatever an earlier NodeManager on the same directory left running.
func New(cfg *Config) (*NodeManager, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Dir == "" {
		return nil, errors.New("the NodeManager needs a directory (--dir)")
	}
	// Containers run in directories of their own and are handed paths
	// under this one, so it must not be relative.
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("the NodeManager's directory %s: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	if cfg.MemoryMB <= 0 || cfg.VCores <= 0 {
		return nil, fmt.Errorf("the node must offer positive memory and vcores, got %d MB and %d vcores", cfg.MemoryMB, cfg.VCores)
	}
	if cfg.LogRetention <= 0 {
		cfg.LogRetention = DefaultLogRetention
	}
	if cfg.MaxAppLogs <= 0 {
		cfg.MaxAppLogs = DefaultMaxAppLogs
	}
	for _, d := range []string{"apps", "logs", "cache", "run"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if cfg.TLS == nil {
		return nil, errors.New("the NodeManager needs its TLS certificate: pass --tls-ca, --tls-cert and --tls-key (`loom tls cert create --node NAME` makes them)")
	}
	if id := cfg.TLS.Identity; id.Kind != tlsutil.KindNode {
		return nil, fmt.Errorf("the NodeManager's certificate is for %s; it needs a node certificate (`loom tls cert create --node NAME`)", id)
	}
	rm, err := rmclient.New(cfg.RMAddrs, cfg.TLS)
	if err != nil {
		return nil, err
	}
	rm.RetryFor = 2 * time.Second
	// A heartbeat takes milliseconds; a replica that holds one for
	// seconds (cut off the network) is left for the next well within
	// the RM's node expiry.
	rm.CallTimeout = 2 * time.Second
	n := &NodeManager{cfg: cfg, logger: cfg.Logger.Named("nm"), rm: rm, tokens: newContainerTokens(), notify: make(chan struct{}, 1)}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w (choose another with --addr)", cfg.Addr, err)
	}
	n.ln = ln
	n.nodeID = cfg.AdvertiseAddr
	if n.nodeID == "" {
		n.nodeID = advertised(ln.Addr().String())
	}
	if cfg.HTTPAddr != "" {
		hl, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("listening on %s: %w (choose another with --http-addr)", cfg.HTTPAddr, err)
		}
		n.httpLn = tls.NewListener(hl, cfg.TLS.ServerConfig())
	}
	var cg *cgroups
	if !cfg.NoCgroups {
		cg = detectCgroups(cgroupName(n.nodeID, cfg.Dir))
	}
	n.exec = &executor{
		logger:     n.logger.Named("executor"),
		dir:        cfg.Dir,
		cg:         cg,
		loc:        newLocalizer(filepath.Join(cfg.Dir, "cache"), rmclient.HTTPClient(cfg.TLS), cfg.CacheMB<<20),
		grace:      cfg.KillGrace,
		containers: map[string]*container{},
		onChange:   n.poke,
		baseEnv: map[string]string{
			"LOOM_NM_ADDR":  n.nodeID,
			"LOOM_RM_ADDRS": strings.Join(cfg.RMAddrs, ","),
		},
	}
	n.exec.metrics = newNMMetrics(n)
	if swept := n.exec.sweepStale(); swept > 0 {
		n.logger.Warn("stopped containers left by an earlier NodeManager", "count", swept)
	}
	mode := "process-tree RSS polling"
	if cg != nil {
		mode = "cgroups v1"
	}
	n.logger.Info("memory enforcement", "mode", mode)
	return n, nil
}

// cgroupName names this NM's cgroup subtree after its directory, so that a
// restarted NM on the same directory finds what its predecessor left.
func cgroupName(nodeID, dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	r := strings.NewReplacer("/", "_", ":", "_", ".", "_")
	return strings.Trim(r.Replace(abs), "_")
}

func advertised(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// NodeID is the node's id: the host:port of its gRPC server.
func (n *NodeManager) NodeID() string { return n.nodeID }

// HTTPAddr is the address of the node's HTTP server, or "".
func (n *NodeManager) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

func (n *NodeManager) poke() {
	select {
	case n.notify <- struct{}{}:
	default:
	}
}

// ErrShutdownByRM is returned by Run when the RM told the node to stop.
var ErrShutdownByRM = errors.New("the ResourceManager told this node to shut down")

// Run serves until ctx ends or the RM says SHUTDOWN; then it stops every
// container, reports them, and leaves the cluster.
func (n *NodeManager) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	execCtx, stopExec := context.WithCancel(context.Background())
	defer stopExec()
	n.exec.ctx = execCtx

	n.grpc = grpc.NewServer(append(rpc.AuthOptions(n.authorize), n.cfg.TLS.ServerOption())...)
	yarnpb.RegisterContainerManagerServiceServer(n.grpc, &containerManager{nm: n})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		_ = n.grpc.Serve(n.ln)
	}()
	if n.httpLn != nil {
		n.http = &http.Server{Handler: n.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			_ = n.http.Serve(n.httpLn)
		}()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.exec.monitor(ctx, n.cfg.MonitorInterval)
	}()
	live := map[string]bool{}
	for _, c := range n.exec.all() {
		live[c.appID] = true
	}
	for _, app := range n.exec.appsWithDirs() {
		live[app] = true
	}
	n.logs.seed(n.cfg.Dir, time.Now(), live)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTicker(min(time.Minute, max(n.cfg.LogRetention/10, time.Second)))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				n.collectLogs(now)
			}
		}
	}()
	n.logger.Info("node manager started", "node_id", n.nodeID, "listen", n.ln.Addr().String(), "http", n.HTTPAddr(), "memory_mb", n.cfg.MemoryMB, "vcores", n.cfg.VCores, "dir", n.cfg.Dir)

	err := n.heartbeatLoop(ctx)

	// Stop: no new containers, stop the running ones, report, leave.
	stopCtx, stopCancel := context.WithTimeout(context.Background(), n.cfg.KillGrace+5*time.Second)
	stopExec()
	n.exec.stopAll(stopCtx)
	stopCancel()
	n.exec.wg.Wait()
	if !errors.Is(err, ErrShutdownByRM) {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = n.rm.NodeHeartbeat(rctx, n.heartbeatRequest(0))
		_ = n.rm.UnregisterNode(rctx, n.nodeID)
		rcancel()
	}
	n.grpc.Stop()
	if n.http != nil {
		_ = n.http.Close()
	}
	n.wg.Wait()
	if n.exec.cg != nil {
		n.exec.cg.sweep()
		n.exec.cg.close()
	}
	_ = n.rm.Close()
	n.logger.Info("node manager stopped", "node_id", n.nodeID)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (n *NodeManager) register(ctx context.Context) (time.Duration, error) {
	req := &yarnpb.RegisterNodeManagerRequest{
		NodeId:      n.nodeID,
		HttpAddress: n.HTTPAddr(),
		Total:       &yarnpb.Resource{MemoryMb: n.cfg.MemoryMB, Vcores: n.cfg.VCores},
		Labels:      n.cfg.Labels,
		Rack:        n.cfg.Rack,
	}
	for _, c := range n.exec.all() {
		req.Containers = append(req.Containers, c.status())
	}
	backoff := 20 * time.Millisecond
	for {
		resp, err := n.rm.RegisterNode(ctx, req)
		if err == nil {
			if resp.Action == yarnpb.NodeAction_SHUTDOWN {
				return 0, fmt.Errorf("%w: %s", ErrShutdownByRM, resp.Diagnostics)
			}
			n.tokens.setKeys(resp.ContainerKeys)
			n.logger.Info("registered with the resource manager", "node_id", n.nodeID)
			return time.Duration(resp.HeartbeatIntervalMs) * time.Millisecond, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		n.logger.Debug("registration failed; retrying", "error", err)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}

func (n *NodeManager) heartbeatRequest(lastID int32) *yarnpb.NodeHeartbeatRequest {
	req := &yarnpb.NodeHeartbeatRequest{NodeId: n.nodeID, LastResponseId: lastID, Healthy: true, RunningApps: n.exec.appsWithDirs()}
	var used int64
	for _, c := range n.exec.all() {
		st := c.status()
		req.Containers = append(req.Containers, st)
		if st.State == yarnpb.ContainerState_CONTAINER_RUNNING {
			used += c.notePeak() >> 20
		}
	}
	req.Utilization = &yarnpb.Resource{MemoryMb: used}
	return req
}

// heartbeatLoop reports to the RM every interval, and at once whenever a
// container changes state.
func (n *NodeManager) heartbeatLoop(ctx context.Context) error {
	interval, err := n.register(ctx)
	if err != nil {
		return err
	}
	if interval <= 0 {
		interval = time.Second
	}
	var lastID int32
	timer := time.NewTimer(0)
	defer timer.Stop()
	hb := n.rm.Heartbeats()
	defer hb.Close()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		case <-n.notify:
		}
		resp, err := hb.Send(ctx, n.heartbeatRequest(lastID))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			n.logger.Warn("heartbeat failed", "error", err)
			resetTimer(timer, min(interval, time.Second))
			continue
		}
		lastID = resp.ResponseId
		n.tokens.setKeys(resp.ContainerKeys)
		n.exec.loc.setStaging(resp.StagingUrl)
		n.tokens.sweep(time.Now())
		n.exec.forget(resp.ContainersAcked)
		for _, id := range resp.ContainersToCleanup {
			_ = n.exec.stop(id)
		}
		for _, app := range resp.AppsToCleanup {
			if n.exec.removeApp(app) {
				n.logs.add(app, time.Now())
			}
		}
		switch resp.Action {
		case yarnpb.NodeAction_SHUTDOWN, yarnpb.NodeAction_DECOMMISSION:
			n.logger.Warn("the resource manager asked this node to shut down", "diagnostics", resp.Diagnostics)
			return fmt.Errorf("%w: %s", ErrShutdownByRM, resp.Diagnostics)
		case yarnpb.NodeAction_RESYNC:
			n.logger.Info("resyncing with the resource manager", "diagnostics", resp.Diagnostics)
			if interval, err = n.register(ctx); err != nil {
				return err
			}
			lastID = 0
			resetTimer(timer, 0)
			continue
		}
		if resp.NextHeartbeatMs > 0 {
			interval = time.Duration(resp.NextHeartbeatMs) * time.Millisecond
		}
		resetTimer(timer, interval)
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

func (n *NodeManager) httpHandler() http.Handler {
	mux := http.NewServeMux()
	// Prometheus's scrape; like every route here it takes only
	// certificates of the cluster's CA.
	mux.Handle("GET /metrics", n.exec.metrics.handler())
	mux.HandleFunc("GET /ws/v1/node/info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"nodeInfo\":{\"id\":%q,\"totalMemoryMB\":%d,\"totalVCores\":%d}}\n", n.nodeID, n.cfg.MemoryMB, n.cfg.VCores)
	})
	mux.HandleFunc("GET /logs/{container}/{name}", func(w http.ResponseWriter, r *http.Request) {
		id, name := r.PathValue("container"), r.PathValue("name")
		appID, err := yarnpb.AppIDOfContainer(id)
		if err != nil || !yarnpb.PlainName(name) {
			http.Error(w, "bad container id or log name", http.StatusBadRequest)
			return
		}
		who, _ := tlsutil.FromRequest(r)
		if err := n.mayTouchContainer(tlsutil.WithIdentity(r.Context(), who), id); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		http.ServeFile(w, r, filepath.Join(n.cfg.Dir, "logs", appID, id, name))
	})
	return mux
}
