package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
)

// sim holds the simulated NodeManagers and ApplicationMasters.
type sim struct {
	c     config
	rm    *rmProcess
	pki   *pki
	ctx   context.Context
	nodes []*simNode
	byIP  map[string]*simNode
	srv   *grpc.Server
	ln    net.Listener
	port  int
	wg    sync.WaitGroup

	// What the report counts.
	heartbeats latencies
	// steady are the heartbeats after each node's first warmupBeats:
	// the round trips once streams are open and the start's burst (every
	// node's first beat within one interval) is over.
	steady latencies
	// saturated are the heartbeats from when the sampler first saw 95%
	// of the cluster in use: the cluster the targets speak of, full and
	// placing what completions free.
	saturated    latencies
	isSaturated  atomic.Bool
	allocated    atomic.Int64 // containers handed to AMs
	asked        atomic.Int64 // containers asked for, asked again included
	registered   atomic.Int64 // AMs registered
	firstAsk     atomic.Int64 // unix ns of the first ask
	submitted    atomic.Int64
	finished     atomic.Int64
	submitErrors atomic.Int64
	amErrors     atomic.Int64
	lastErr      atomic.Value
	// usedMB and usedVC are what the containers the nodes run hold.
	usedMB, usedVC atomic.Int64
	// clients are every RM client the nodes hold, to close.
	clients []*rmclient.Client
	// pending are the trace's applications by id until their AMs take
	// them, to learn what to ask for.
	pending sync.Map // app id -> arrival
}

// simNode is a NodeManager: what it runs, and what it has to report.
type simNode struct {
	s      *sim
	id, ip string
	rm     *rmclient.Client
	mu     sync.Mutex
	// running are its containers by id, each with when it ends;
	// done are completions the RM has not acknowledged yet.
	running map[string]*simContainer
	done    []*yarnpb.ContainerStatus
	apps    map[string]int
	lastID  int32
}

type simContainer struct {
	app   string
	mb    int64
	vc    int64
	end   time.Time // zero: until stopped (an AM)
	onEnd func()
}

func newSim(ctx context.Context, c config, rm *rmProcess, p *pki) (*sim, error) {
	s := &sim{c: c, rm: rm, pki: p, ctx: ctx, byIP: map[string]*simNode{}}
	s.heartbeats.init()
	s.steady.init()
	s.saturated.init()
	// One ContainerManager server for every node: each node is its own
	// loopback address (127.a.b.c), and the address a connection was
	// made to says which node it is for.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		return nil, err
	}
	s.ln = loopbackOnly{ln}
	s.port = ln.Addr().(*net.TCPAddr).Port
	s.srv = grpc.NewServer(p.node.ServerOption())
	yarnpb.RegisterContainerManagerServiceServer(s.srv, &containerManager{s: s})
	go func() { _ = s.srv.Serve(s.ln) }()
	// A connection to the RM per node, as real NodeManagers have, or
	// --nodes-per-conn nodes a connection.
	var client *rmclient.Client
	for i := range c.nodes {
		if i%max(c.nodesPerConn, 1) == 0 {
			if client, err = rmclient.New([]string{rm.addr}, p.node); err != nil {
				return nil, err
			}
			s.clients = append(s.clients, client)
		}
		ip := fmt.Sprintf("127.%d.%d.%d", 1+i/65536, (i/256)%256, i%256)
		n := &simNode{s: s, id: fmt.Sprintf("%s:%d", ip, s.port), ip: ip, rm: client, running: map[string]*simContainer{}, apps: map[string]int{}}
		s.nodes = append(s.nodes, n)
		s.byIP[ip] = n
	}
	return s, nil
}

func (s *sim) close() {
	s.srv.Stop()
	s.wg.Wait()
	for _, c := range s.clients {
		c.Close()
	}
}

// loopbackOnly accepts connections made to loopback addresses only: the
// server listens on every address to answer for all of 127.0.0.0/8.
type loopbackOnly struct{ net.Listener }

func (l loopbackOnly) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if a, ok := c.LocalAddr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
			return c, nil
		}
		c.Close()
	}
}

func (s *sim) fail(err error) { s.lastErr.Store(err.Error()) }

// registerNodes registers every node, many at a time.
func (s *sim) registerNodes(ctx context.Context) error {
	sem := make(chan struct{}, 128)
	var first atomic.Value
	var wg sync.WaitGroup
	for _, n := range s.nodes {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := n.rm.RegisterNode(ctx, &yarnpb.RegisterNodeManagerRequest{NodeId: n.id, HttpAddress: n.ip + ":1",
				Total: &yarnpb.Resource{MemoryMb: s.c.nodeMemoryMB, Vcores: int32(s.c.nodeVCores)}})
			if err != nil {
				first.CompareAndSwap(nil, fmt.Errorf("registering %s: %w", n.id, err))
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return nil
}

// startHeartbeats runs every node's heartbeat loop, their first beats
// spread over an interval.
func (s *sim) startHeartbeats(ctx context.Context) {
	for i, n := range s.nodes {
		offset := time.Duration(int64(s.c.heartbeat) * int64(i) / int64(len(s.nodes)))
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			n.loop(ctx, offset)
		}()
	}
}

func (n *simNode) loop(ctx context.Context, offset time.Duration) {
	t := time.NewTimer(offset)
	defer t.Stop()
	interval := n.s.c.heartbeat
	beats := 0
	send := n.rm.NodeHeartbeat
	if !n.s.c.heartbeatCalls {
		hb := n.rm.Heartbeats()
		defer hb.Close()
		send = hb.Send
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		req := n.report(time.Now())
		began := time.Now()
		resp, err := send(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			n.s.fail(fmt.Errorf("heartbeat of %s: %w", n.id, err))
			t.Reset(interval)
			continue
		}
		took := time.Since(began)
		n.s.heartbeats.add(took)
		if beats++; beats > warmupBeats {
			n.s.steady.add(took)
		}
		if n.s.isSaturated.Load() {
			n.s.saturated.add(took)
		}
		n.apply(resp)
		if resp.NextHeartbeatMs > 0 {
			interval = time.Duration(resp.NextHeartbeatMs) * time.Millisecond
		}
		// The next beat an interval after this one began.
		t.Reset(max(interval-time.Since(began), 0))
	}
}

// report ends the containers whose time is up and builds the heartbeat.
func (n *simNode) report(now time.Time) *yarnpb.NodeHeartbeatRequest {
	var ended []func()
	n.mu.Lock()
	req := &yarnpb.NodeHeartbeatRequest{NodeId: n.id, LastResponseId: n.lastID, Healthy: true}
	for id, c := range n.running {
		if !c.end.IsZero() && !now.Before(c.end) {
			n.finishLocked(id, c, 0, "")
			if c.onEnd != nil {
				ended = append(ended, c.onEnd)
			}
			continue
		}
		req.Containers = append(req.Containers, &yarnpb.ContainerStatus{ContainerId: id, State: yarnpb.ContainerState_CONTAINER_RUNNING})
	}
	req.Containers = append(req.Containers, n.done...)
	for app := range n.apps {
		req.RunningApps = append(req.RunningApps, app)
	}
	n.mu.Unlock()
	for _, fn := range ended {
		fn()
	}
	return req
}

func (n *simNode) finishLocked(id string, c *simContainer, exit int32, diag string) {
	delete(n.running, id)
	n.s.usedMB.Add(-c.mb)
	n.s.usedVC.Add(-c.vc)
	n.done = append(n.done, &yarnpb.ContainerStatus{ContainerId: id, State: yarnpb.ContainerState_CONTAINER_COMPLETED, ExitStatus: exit, Diagnostics: diag})
	if n.apps[c.app]--; n.apps[c.app] <= 0 {
		delete(n.apps, c.app)
	}
}

func (n *simNode) apply(resp *yarnpb.NodeHeartbeatResponse) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lastID = resp.ResponseId
	if len(resp.ContainersAcked) > 0 {
		acked := map[string]bool{}
		for _, id := range resp.ContainersAcked {
			acked[id] = true
		}
		kept := n.done[:0]
		for _, st := range n.done {
			if !acked[st.ContainerId] {
				kept = append(kept, st)
			}
		}
		n.done = kept
	}
	for _, id := range resp.ContainersToCleanup {
		if c := n.running[id]; c != nil {
			n.finishLocked(id, c, int32(yarnpb.ContainerExitStatus_EXIT_KILLED_BY_RESOURCEMANAGER), "stopped by the ResourceManager")
		}
	}
	if resp.Action == yarnpb.NodeAction_RESYNC {
		// A real NodeManager registers again; the simulation's RM
		// never restarts, so this is a lost node: say so.
		n.s.fail(fmt.Errorf("node %s was told to resync: %s", n.id, resp.Diagnostics))
	}
}

// start runs a container of mb and vc on the node until end (zero: until
// stopped).
func (n *simNode) start(id, app string, mb, vc int64, end time.Time, onEnd func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.running[id]; ok {
		return
	}
	n.running[id] = &simContainer{app: app, mb: mb, vc: vc, end: end, onEnd: onEnd}
	n.apps[app]++
	n.s.usedMB.Add(mb)
	n.s.usedVC.Add(vc)
}

// stop ends a container at once.
func (n *simNode) stop(id string, exit int32, diag string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.running[id]; c != nil {
		n.finishLocked(id, c, exit, diag)
	}
}

func (n *simNode) status(id string) (*yarnpb.ContainerStatus, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.running[id]; ok {
		return &yarnpb.ContainerStatus{ContainerId: id, State: yarnpb.ContainerState_CONTAINER_RUNNING}, true
	}
	return nil, false
}

// containerManager is the simulated nodes' ContainerManager service: the
// RM starts AM containers through it.
type containerManager struct {
	yarnpb.UnimplementedContainerManagerServiceServer
	s *sim
}

func (m *containerManager) node(ctx context.Context) (*simNode, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.LocalAddr == nil {
		return nil, errors.New("no local address")
	}
	a, ok := p.LocalAddr.(*net.TCPAddr)
	if !ok {
		return nil, errors.New("not TCP")
	}
	n := m.s.byIP[a.IP.String()]
	if n == nil {
		return nil, fmt.Errorf("no simulated node at %s", a.IP)
	}
	return n, nil
}

func (m *containerManager) StartContainers(ctx context.Context, req *yarnpb.StartContainersRequest) (*yarnpb.StartContainersResponse, error) {
	n, err := m.node(ctx)
	if err != nil {
		return nil, err
	}
	resp := &yarnpb.StartContainersResponse{Failed: map[string]string{}}
	for _, c := range req.Containers {
		lc := c.LaunchContext
		attempt := lc.GetEnv()["LOOM_APP_ATTEMPT_ID"]
		if attempt == "" {
			resp.Failed[c.ContainerId] = "the simulation starts AM containers only"
			continue
		}
		n.start(c.ContainerId, c.ApplicationId, 1024, 1, time.Time{}, nil)
		resp.Succeeded = append(resp.Succeeded, c.ContainerId)
		am := &simAM{s: m.s, node: n, container: c.ContainerId, appID: c.ApplicationId, attempt: attempt, creds: lc.Credentials}
		m.s.wg.Add(1)
		go func() {
			defer m.s.wg.Done()
			am.run(m.s.ctx)
		}()
	}
	return resp, nil
}

func (m *containerManager) StopContainers(ctx context.Context, req *yarnpb.StopContainersRequest) (*yarnpb.StopContainersResponse, error) {
	n, err := m.node(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range req.ContainerIds {
		n.stop(id, int32(yarnpb.ContainerExitStatus_EXIT_KILLED_BY_RESOURCEMANAGER), "stopped by the ResourceManager")
	}
	return &yarnpb.StopContainersResponse{}, nil
}

func (m *containerManager) GetContainerStatuses(ctx context.Context, req *yarnpb.GetContainerStatusesRequest) (*yarnpb.GetContainerStatusesResponse, error) {
	n, err := m.node(ctx)
	if err != nil {
		return nil, err
	}
	resp := &yarnpb.GetContainerStatusesResponse{Failed: map[string]string{}}
	for _, id := range req.ContainerIds {
		if st, ok := n.status(id); ok {
			resp.Statuses = append(resp.Statuses, st)
		} else {
			resp.Failed[id] = "not on this node"
		}
	}
	return resp, nil
}

// replay submits the trace's applications at their times from start.
func (s *sim) replay(ctx context.Context, trace []arrival, start time.Time) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		clients := map[string]*rmclient.Client{}
		defer func() {
			for _, c := range clients {
				c.Close()
			}
		}()
		sem := make(chan struct{}, 64)
		var wg sync.WaitGroup
		defer wg.Wait()
		for _, a := range trace {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(a.at))):
			}
			cl := clients[a.user]
			if cl == nil {
				b, err := s.pki.user(a.user)
				if err == nil {
					cl, err = rmclient.New([]string{s.rm.addr}, b)
				}
				if err != nil {
					s.fail(err)
					s.submitErrors.Add(1)
					continue
				}
				clients[a.user] = cl
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := s.submit(ctx, cl, a); err != nil {
					s.fail(err)
					s.submitErrors.Add(1)
					return
				}
				s.submitted.Add(1)
			}()
		}
	}()
}

func (s *sim) submit(ctx context.Context, cl *rmclient.Client, a arrival) error {
	app, err := cl.NewApplication(ctx)
	if err != nil {
		return err
	}
	s.pending.Store(app.ApplicationId, a)
	return cl.Submit(ctx, &yarnpb.ApplicationSubmissionContext{
		ApplicationId: app.ApplicationId, Name: "sls", Queue: a.queue, Type: "sls", MaxAttempts: 1,
		AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"sls-am"}},
		AmResource:  &yarnpb.Resource{MemoryMb: 1024, Vcores: 1},
	})
}

// simAM is an ApplicationMaster: it asks for its trace's containers
// with the real AMRM client, runs each for its duration on its node, and
// finishes when all have run.
type simAM struct {
	s                         *sim
	node                      *simNode
	container, appID, attempt string
	creds                     map[string][]byte
	mu                        sync.Mutex
	left                      int
}

func (am *simAM) run(ctx context.Context) {
	err := am.serve(ctx)
	if err != nil && ctx.Err() == nil {
		am.s.amErrors.Add(1)
		am.s.fail(fmt.Errorf("AM of %s: %w", am.appID, err))
	}
	am.node.stop(am.container, 0, "")
}

func (am *simAM) serve(ctx context.Context) error {
	v, ok := am.s.pending.LoadAndDelete(am.appID)
	if !ok {
		return errors.New("not an application of the trace")
	}
	a := v.(arrival)
	b, err := tlsutil.FromPEM(am.creds[tlsutil.CredentialCA], am.creds[tlsutil.CredentialCert], am.creds[tlsutil.CredentialKey])
	if err != nil {
		return err
	}
	cl, err := rmclient.New([]string{am.s.rm.addr}, b)
	if err != nil {
		return err
	}
	defer cl.Close()
	done := make(chan struct{})
	am.left = a.containers
	// given are the containers it gave back when warned of preemption:
	// their completions ask again.
	given := map[string]bool{}
	var amrm *rmclient.AMRMClient
	amrm = cl.NewAMRMClient(am.attempt, am.creds[tlsutil.CredentialAMToken], rmclient.Handler{
		ContainersAllocated: func(cs []*yarnpb.Container) {
			am.s.allocated.Add(int64(len(cs)))
			now := time.Now()
			for _, c := range cs {
				n := am.s.byIP[hostOf(c.NodeId)]
				if n == nil {
					amrm.ReleaseContainer(c.Id)
					continue
				}
				n.start(c.Id, am.appID, a.memoryMB, int64(a.vcores), now.Add(a.run), nil)
			}
		},
		ContainersCompleted: func(sts []*yarnpb.ContainerStatus) {
			am.mu.Lock()
			defer am.mu.Unlock()
			for _, st := range sts {
				if given[st.ContainerId] || st.ExitStatus == int32(yarnpb.ContainerExitStatus_EXIT_PREEMPTED) || st.ExitStatus == int32(yarnpb.ContainerExitStatus_EXIT_ABORTED) {
					delete(given, st.ContainerId)
					// Taken back or lost: ask again.
					am.s.asked.Add(1)
					amrm.AddContainerRequest(rmclient.ContainerRequest{Capability: &yarnpb.Resource{MemoryMb: a.memoryMB, Vcores: a.vcores}, Priority: 1})
					continue
				}
				if am.left--; am.left == 0 {
					close(done)
				}
			}
		},
		ContainersPreempted: func(ids []string) {
			// Give them back at once, as the Flink AM does.
			am.mu.Lock()
			defer am.mu.Unlock()
			for _, id := range ids {
				given[id] = true
				amrm.ReleaseContainer(id)
			}
		},
	})
	if _, err := amrm.Register(ctx, am.node.ip, 1, ""); err != nil {
		return err
	}
	am.s.registered.Add(1)
	amrm.Start(ctx)
	defer amrm.Stop()
	am.s.firstAsk.CompareAndSwap(0, time.Now().UnixNano())
	am.s.asked.Add(int64(a.containers))
	for range a.containers {
		amrm.AddContainerRequest(rmclient.ContainerRequest{Capability: &yarnpb.Resource{MemoryMb: a.memoryMB, Vcores: a.vcores}, Priority: 1})
	}
	if a.containers == 0 {
		close(done)
	}
	select {
	case <-ctx.Done():
		return nil
	case <-done:
	}
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := amrm.Finish(fctx, yarnpb.FinalStatus_SUCCEEDED, "", ""); err != nil {
		return err
	}
	am.s.finished.Add(1)
	return nil
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// warmupBeats are the heartbeats of a node that the steady percentiles
// leave out.
const warmupBeats = 5

// latencies keeps every heartbeat's round trip, for percentiles.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
	n   atomic.Int64
}

func (l *latencies) init() { l.all = make([]time.Duration, 0, 1<<20) }

func (l *latencies) add(d time.Duration) {
	l.n.Add(1)
	l.mu.Lock()
	if len(l.all) < 50_000_000 {
		l.all = append(l.all, d)
	}
	l.mu.Unlock()
}

// percentiles of the round trips recorded so far.
func (l *latencies) percentiles(ps ...float64) []time.Duration {
	l.mu.Lock()
	sorted := append([]time.Duration(nil), l.all...)
	l.mu.Unlock()
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	out := make([]time.Duration, len(ps))
	if len(sorted) == 0 {
		return out
	}
	for i, p := range ps {
		out[i] = sorted[min(int(p*float64(len(sorted))), len(sorted)-1)]
	}
	return out
}
