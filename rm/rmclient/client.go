// Package rmclient talks to the cluster ResourceManager: submitting and
// inspecting applications, the AMRM protocol for ApplicationMasters, the
// resource tracker for NodeManagers and administration. It follows the
// raft leader across replicas and retries while none is reachable.
package rmclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rpc"
	"github.com/loom-project/loom/tlsutil"
)

// DefaultAddr is where a client looks for the RM when told nothing.
const DefaultAddr = "127.0.0.1:8032"

// ParseAddrs splits a comma-separated list of host:port addresses and
// checks each.
func ParseAddrs(list string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if err := CheckAddr(a); err != nil {
			return nil, fmt.Errorf("invalid ResourceManager address %q: %w", a, err)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no ResourceManager address given; pass --rm host:port or set LOOM_RM")
	}
	return out, nil
}

// CheckAddr checks that a is host:port with a valid port.
func CheckAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("expected host:port (%v)", err)
	}
	if host == "" {
		return fmt.Errorf("expected host:port, the host is missing")
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("expected host:port, %q is not a port number", port)
	}
	return nil
}

// Client is a connection to the RM replicas.
type Client struct {
	mu    sync.Mutex
	addrs []string
	cur   int
	conns map[string]*grpc.ClientConn
	tls   *tlsutil.Bundle
	http  *http.Client
	// RetryFor bounds how long a call retries while no leader answers.
	RetryFor time.Duration
	// CallTimeout bounds one try of a call (beyond a long poll's wait):
	// a replica that does not answer within it, one cut off the network
	// say, is left for the next.
	CallTimeout time.Duration
	// now is the clock RetryFor is measured on.
	now func() time.Time
}

// New returns a client of the RM replicas at addrs that presents the
// identity in tls and takes only ResourceManagers of its cluster.
func New(addrs []string, tls *tlsutil.Bundle) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no ResourceManager address given")
	}
	if tls == nil {
		return nil, errors.New("a ResourceManager client needs a TLS identity")
	}
	for _, a := range addrs {
		if err := CheckAddr(a); err != nil {
			return nil, fmt.Errorf("invalid ResourceManager address %q: %w", a, err)
		}
	}
	return &Client{
		addrs: append([]string(nil), addrs...), conns: map[string]*grpc.ClientConn{}, tls: tls,
		http:        HTTPClient(tls),
		RetryFor:    15 * time.Second,
		CallTimeout: 5 * time.Second,
		now:         time.Now,
	}, nil
}

// HTTPClient is an HTTPS client of the ResourceManagers' HTTP ports (the
// staging store) that presents the identity in tls. A replica that does
// not answer (down, or cut off the network) fails a request within
// seconds, so a caller with another replica to try gets to it.
func HTTPClient(tls *tlsutil.Bundle) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     tls.ClientConfig(tlsutil.ServerName),
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// Identity is the identity this client presents.
func (c *Client) Identity() tlsutil.Identity { return c.tls.Identity }

// User is the user this client acts for: its certificate's user, or the
// owner of the application whose containers it runs in.
func (c *Client) User() string {
	if c.tls.Identity.Kind == tlsutil.KindApp {
		return c.tls.Identity.User
	}
	return c.tls.Identity.Name
}

// TLS is the bundle this client presents.
func (c *Client) TLS() *tlsutil.Bundle { return c.tls }

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cc := range c.conns {
		_ = cc.Close()
	}
	c.conns = map[string]*grpc.ClientConn{}
	return nil
}

// Addrs returns the replica addresses known to the client.
func (c *Client) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.addrs...)
}

func (c *Client) conn() (*grpc.ClientConn, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	addr := c.addrs[c.cur%len(c.addrs)]
	if cc := c.conns[addr]; cc != nil {
		return cc, addr, nil
	}
	cc, err := grpc.NewClient(addr, DialOptions(c.tls)...)
	if err != nil {
		return nil, addr, err
	}
	c.conns[addr] = cc
	return cc, addr, nil
}

// follow moves to the leader named by a hint, or to the next replica.
func (c *Client) follow(hint string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hint != "" {
		for i, a := range c.addrs {
			if a == hint {
				c.cur = i
				return
			}
		}
		if CheckAddr(hint) == nil {
			c.addrs = append(c.addrs, hint)
			c.cur = len(c.addrs) - 1
			return
		}
	}
	c.cur = (c.cur + 1) % len(c.addrs)
}

// call runs fn against the current replica, following the leader and
// retrying while the cluster is unavailable, until RetryFor or ctx ends.
//
// RetryFor counts from the first failure, not from the call: a long poll
// that the cluster drops 29 s in is retried as one dropped at once.
func (c *Client) call(ctx context.Context, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	return c.callWait(ctx, 0, fn)
}

// callWait is call for a long poll the replica may hold for wait: each
// try has CallTimeout beyond it.
func (c *Client) callWait(ctx context.Context, wait time.Duration, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	var failingSince time.Time
	backoff := 10 * time.Millisecond
	for {
		cc, addr, err := c.conn()
		if err != nil {
			return err
		}
		try, cancel := context.WithTimeout(ctx, wait+c.CallTimeout)
		err = errdefs.FromGRPC(fn(try, cc))
		timedOut := try.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return nil
		}
		if timedOut {
			err = errdefs.Unavailable("%s did not answer within %s", addr, wait+c.CallTimeout)
		}
		retry := errors.Is(err, errdefs.ErrUnavailable) || errors.Is(err, errdefs.ErrNotLeader)
		if !retry || ctx.Err() != nil {
			return err
		}
		if failingSince.IsZero() {
			failingSince = c.now()
		}
		if c.now().Sub(failingSince) >= c.RetryFor {
			return fmt.Errorf("ResourceManager at %s: %w (is it running? pass --rm host:port or set LOOM_RM)", strings.Join(c.Addrs(), ","), err)
		}
		hint, _ := errdefs.LeaderHint(err)
		if hint == addr {
			hint = ""
		}
		c.follow(hint)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

func (c *Client) client(cc *grpc.ClientConn) yarnpb.ClientServiceClient {
	return yarnpb.NewClientServiceClient(cc)
}

// NewApplication reserves an application id.
func (c *Client) NewApplication(ctx context.Context) (*yarnpb.NewApplicationResponse, error) {
	var resp *yarnpb.NewApplicationResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = c.client(cc).NewApplication(ctx, &yarnpb.NewApplicationRequest{})
		return err
	})
	return resp, err
}

// Submit submits an application.
func (c *Client) Submit(ctx context.Context, sc *yarnpb.ApplicationSubmissionContext) error {
	tries := 0
	return c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		tries++
		_, err := c.client(cc).SubmitApplication(ctx, &yarnpb.SubmitApplicationRequest{Context: sc})
		if err != nil && tries > 1 && errors.Is(errdefs.FromGRPC(err), errdefs.ErrAlreadyExists) {
			return nil // an earlier try went through
		}
		return err
	})
}

// Report returns an application's report.
func (c *Client) Report(ctx context.Context, appID string, withContainers bool) (*yarnpb.ApplicationReport, error) {
	r, _, err := c.WatchReport(ctx, appID, withContainers, 0, 0)
	return r, err
}

// WatchReport returns an application's report once its index passes
// minIndex, or after wait.
func (c *Client) WatchReport(ctx context.Context, appID string, withContainers bool, minIndex uint64, wait time.Duration) (*yarnpb.ApplicationReport, uint64, error) {
	var resp *yarnpb.GetApplicationReportResponse
	err := c.callWait(ctx, wait, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = c.client(cc).GetApplicationReport(ctx, &yarnpb.GetApplicationReportRequest{
			ApplicationId: appID, IncludeContainers: withContainers, MinIndex: minIndex, WaitMs: wait.Milliseconds(),
		})
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return resp.Report, resp.Index, nil
}

// WaitFinished blocks until the application ends, calling onChange (if
// not nil) with every new report.
func (c *Client) WaitFinished(ctx context.Context, appID string, onChange func(*yarnpb.ApplicationReport)) (*yarnpb.ApplicationReport, error) {
	var index uint64
	for {
		r, idx, err := c.WatchReport(ctx, appID, false, index, 30*time.Second)
		if err != nil {
			return nil, err
		}
		if idx != index && onChange != nil {
			onChange(r)
		}
		index = idx
		switch r.State {
		case yarnpb.AppState_APP_FINISHED, yarnpb.AppState_APP_FAILED, yarnpb.AppState_APP_KILLED:
			return r, nil
		}
	}
}

// ListApps lists applications; all includes finished ones.
func (c *Client) ListApps(ctx context.Context, all bool) ([]*yarnpb.ApplicationReport, error) {
	var resp *yarnpb.ListApplicationsResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = c.client(cc).ListApplications(ctx, &yarnpb.ListApplicationsRequest{All: all})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Applications, nil
}

// Kill kills an application; it reports whether it had already ended.
func (c *Client) Kill(ctx context.Context, appID, diag string) (bool, error) {
	var resp *yarnpb.KillApplicationResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = c.client(cc).KillApplication(ctx, &yarnpb.KillApplicationRequest{ApplicationId: appID, Diagnostics: diag})
		return err
	})
	if err != nil {
		return false, err
	}
	return resp.AlreadyFinished, nil
}

// Metrics returns the cluster's metrics.
func (c *Client) Metrics(ctx context.Context) (*yarnpb.ClusterMetricsResponse, error) {
	var resp *yarnpb.ClusterMetricsResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = c.client(cc).ClusterMetrics(ctx, &yarnpb.ClusterMetricsRequest{})
		return err
	})
	return resp, err
}

// Nodes lists nodes; all includes those that left the cluster.
func (c *Client) Nodes(ctx context.Context, all bool) ([]*yarnpb.NodeReport, error) {
	var resp *yarnpb.ListNodesResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = c.client(cc).ListNodes(ctx, &yarnpb.ListNodesRequest{All: all})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Nodes, nil
}

// Node returns one node's report.
func (c *Client) Node(ctx context.Context, id string) (*yarnpb.NodeReport, error) {
	var resp *yarnpb.ListNodesResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = c.client(cc).ListNodes(ctx, &yarnpb.ListNodesRequest{NodeId: id})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Nodes[0], nil
}

// Queues returns queue information; queue "" means every queue.
func (c *Client) Queues(ctx context.Context, queue string) ([]*yarnpb.QueueInfo, error) {
	var resp *yarnpb.QueueInfoResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = c.client(cc).QueueInfo(ctx, &yarnpb.QueueInfoRequest{Queue: queue})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Queues, nil
}

// Decommission takes nodes out of the cluster; graceful lets their
// containers finish, up to timeout (0: no limit).
func (c *Client) Decommission(ctx context.Context, nodes []string, graceful bool, timeout time.Duration) ([]*yarnpb.NodeChange, error) {
	var resp *yarnpb.DecommissionResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = yarnpb.NewAdminServiceClient(cc).Decommission(ctx, &yarnpb.DecommissionRequest{NodeIds: nodes, Graceful: graceful, TimeoutS: int64(timeout.Seconds())})
		return err
	})
	return resp.GetNodes(), err
}

// Recommission brings decommissioning nodes back, and decommissioned
// ones to SHUTDOWN (they come back when their NodeManager registers).
func (c *Client) Recommission(ctx context.Context, nodes []string) ([]*yarnpb.NodeChange, error) {
	var resp *yarnpb.RecommissionResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = yarnpb.NewAdminServiceClient(cc).Recommission(ctx, &yarnpb.RecommissionRequest{NodeIds: nodes})
		return err
	})
	return resp.GetNodes(), err
}

// ServiceState returns the raft state of the replica answering.
func (c *Client) ServiceState(ctx context.Context) (*yarnpb.ServiceStateResponse, error) {
	var resp *yarnpb.ServiceStateResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = yarnpb.NewAdminServiceClient(cc).ServiceState(ctx, &yarnpb.ServiceStateRequest{})
		return err
	})
	return resp, err
}

// AddRaftPeer asks the leader to make the replica id (its gRPC address),
// whose raft listens at raftAddr, a voter.
func (c *Client) AddRaftPeer(ctx context.Context, id, raftAddr string) error {
	return c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := yarnpb.NewAdminServiceClient(cc).AddRaftPeer(ctx, &yarnpb.AddRaftPeerRequest{Id: id, RaftAddress: raftAddr})
		return err
	})
}

// RemoveRaftPeer takes the replica id out of the raft configuration.
func (c *Client) RemoveRaftPeer(ctx context.Context, id string) error {
	return c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := yarnpb.NewAdminServiceClient(cc).RemoveRaftPeer(ctx, &yarnpb.RemoveRaftPeerRequest{Id: id})
		return err
	})
}

// RegisterNode registers a NodeManager.
func (c *Client) RegisterNode(ctx context.Context, req *yarnpb.RegisterNodeManagerRequest) (*yarnpb.RegisterNodeManagerResponse, error) {
	var resp *yarnpb.RegisterNodeManagerResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = yarnpb.NewResourceTrackerServiceClient(cc).RegisterNodeManager(ctx, req)
		return err
	})
	return resp, err
}

// NodeHeartbeat sends a NodeManager heartbeat.
func (c *Client) NodeHeartbeat(ctx context.Context, req *yarnpb.NodeHeartbeatRequest) (*yarnpb.NodeHeartbeatResponse, error) {
	var resp *yarnpb.NodeHeartbeatResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = yarnpb.NewResourceTrackerServiceClient(cc).NodeHeartbeat(ctx, req)
		return err
	})
	return resp, err
}

// Heartbeats carries one NodeManager's heartbeats to the leader on a
// stream (ResourceTrackerService.NodeHeartbeats), where a call each would
// cost both ends twice the CPU. The stream opens on the first heartbeat,
// and again on the replica calls go to after any failure, so heartbeats
// follow the leader and retry as calls do. An answer that does not come
// within CallTimeout abandons the stream. One heartbeat is sent at a
// time. An RM without the stream (one not yet upgraded) is sent calls
// from then on.
type Heartbeats struct {
	c      *Client
	mu     sync.Mutex
	cc     *grpc.ClientConn // the stream's connection
	stream yarnpb.ResourceTrackerService_NodeHeartbeatsClient
	cancel context.CancelFunc
	calls  bool
}

// Heartbeats returns a NodeManager's heartbeat stream, not yet open.
func (c *Client) Heartbeats() *Heartbeats { return &Heartbeats{c: c} }

// Send sends a heartbeat and returns the RM's answer to it.
func (h *Heartbeats) Send(ctx context.Context, req *yarnpb.NodeHeartbeatRequest) (*yarnpb.NodeHeartbeatResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var resp *yarnpb.NodeHeartbeatResponse
	err := h.c.call(ctx, func(try context.Context, cc *grpc.ClientConn) (err error) {
		if h.calls {
			resp, err = yarnpb.NewResourceTrackerServiceClient(cc).NodeHeartbeat(try, req)
			return err
		}
		if h.stream == nil || h.cc != cc {
			h.closeLocked()
			sctx, cancel := context.WithCancel(context.Background())
			st, err := yarnpb.NewResourceTrackerServiceClient(cc).NodeHeartbeats(sctx)
			if err != nil {
				cancel()
				return err
			}
			h.cc, h.stream, h.cancel = cc, st, cancel
		}
		// The stream outlives each try; a try that ends first takes it.
		stop := context.AfterFunc(try, h.cancel)
		err = h.stream.Send(req)
		if errors.Is(err, io.EOF) {
			err = nil // the stream has ended: Recv returns why
		}
		if err == nil {
			resp, err = h.stream.Recv()
		}
		if !stop() || err != nil {
			h.closeLocked()
		}
		if status.Code(err) == codes.Unimplemented {
			h.calls = true
			resp, err = yarnpb.NewResourceTrackerServiceClient(cc).NodeHeartbeat(try, req)
			return err
		}
		if errors.Is(err, io.EOF) {
			err = errdefs.Unavailable("the ResourceManager ended the heartbeat stream")
		}
		return err
	})
	return resp, err
}

// Close ends the stream; a later Send opens another.
func (h *Heartbeats) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closeLocked()
}

func (h *Heartbeats) closeLocked() {
	if h.cancel != nil {
		h.cancel()
	}
	h.cc, h.stream, h.cancel = nil, nil, nil
}

// UnregisterNode tells the RM a NodeManager is shutting down.
func (c *Client) UnregisterNode(ctx context.Context, nodeID string) error {
	return c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := yarnpb.NewResourceTrackerServiceClient(cc).UnRegisterNodeManager(ctx, &yarnpb.UnRegisterNodeManagerRequest{NodeId: nodeID})
		return err
	})
}

// NewFromList returns a client of a comma-separated replica list.
func NewFromList(list string, tls *tlsutil.Bundle) (*Client, error) {
	addrs, err := ParseAddrs(list)
	if err != nil {
		return nil, err
	}
	return New(addrs, tls)
}

// DialOptions are the gRPC options of a connection to a ResourceManager
// (rpc.DialOptions over the RM's TLS rules).
func DialOptions(tls *tlsutil.Bundle) []grpc.DialOption {
	return rpc.DialOptions(tls.ClientConfig(tlsutil.ServerName))
}

// CurrentUser is the name applications are submitted under: this
// process's user.
func CurrentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

// Move moves a live application to another leaf queue.
func (c *Client) Move(ctx context.Context, appID, queue string) error {
	return c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := c.client(cc).MoveApplication(ctx, &yarnpb.MoveApplicationRequest{ApplicationId: appID, Queue: queue})
		return err
	})
}

// RefreshQueues has the leader reload its queue file.
func (c *Client) RefreshQueues(ctx context.Context) (*yarnpb.RefreshQueuesResponse, error) {
	var resp *yarnpb.RefreshQueuesResponse
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = yarnpb.NewAdminServiceClient(cc).RefreshQueues(ctx, &yarnpb.RefreshQueuesRequest{})
		return err
	})
	return resp, err
}
