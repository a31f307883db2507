package rm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
	"github.com/loom-project/loom/tlsutil/tlstest"
	"github.com/loom-project/loom/token"
)

func testServer(t *testing.T, mutate func(*Config)) (*Server, *rmclient.Client) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}})
	cfg.Addr = "127.0.0.1:0"
	cfg.HTTPAddr = ""
	cfg.InMemory = true
	cfg.RaftTimeout = 50 * time.Millisecond
	cfg.DataDir = t.TempDir()
	pki := tlstest.New(t)
	cfg.TLS = pki.Bundle(tlstest.Server("rm"))
	cfg.CA = pki.CA
	if mutate != nil {
		mutate(cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s, clientAs(t, s, tlstest.User("alice", AdminGroup))
}

// clientAs is a client of s that presents a certificate for id, signed
// by s's CA.
func clientAs(t testing.TB, s *Server, id tlsutil.Identity) *rmclient.Client {
	t.Helper()
	c, err := rmclient.New([]string{s.Addr()}, bundleFor(t, s, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func bundleFor(t testing.TB, s *Server, id tlsutil.Identity) *tlsutil.Bundle {
	t.Helper()
	iss, err := s.cfg.CA.Sign(tlsutil.CertRequest{Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tlsutil.FromPEM(s.cfg.CA.PEM, iss.CertPEM, iss.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// fakeNM accepts every container start and records it: a stand-in for a
// NodeManager behind the same gRPC interface.
type fakeNM struct {
	yarnpb.UnimplementedContainerManagerServiceServer
	mu      sync.Mutex
	started []*yarnpb.StartContainerRequest
	addr    string
	// rm is the node's client of the RM, with its node certificate.
	rm *rmclient.Client
	// running, when set, makes the node answer every start as a node
	// that runs the container already, and report it RUNNING.
	running bool
	// statusCalls counts GetContainerStatuses calls.
	statusCalls int
}

func (f *fakeNM) GetContainerStatuses(_ context.Context, req *yarnpb.GetContainerStatusesRequest) (*yarnpb.GetContainerStatusesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statusCalls++
	resp := &yarnpb.GetContainerStatusesResponse{Failed: map[string]string{}}
	for _, id := range req.ContainerIds {
		if f.running {
			resp.Statuses = append(resp.Statuses, &yarnpb.ContainerStatus{ContainerId: id, State: yarnpb.ContainerState_CONTAINER_RUNNING})
		} else {
			resp.Failed[id] = "not on this node"
		}
	}
	return resp, nil
}

func (f *fakeNM) StartContainers(_ context.Context, req *yarnpb.StartContainersRequest) (*yarnpb.StartContainersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &yarnpb.StartContainersResponse{Failed: map[string]string{}}
	for _, c := range req.Containers {
		f.started = append(f.started, c)
		if f.running {
			resp.Failed[c.ContainerId] = "container " + c.ContainerId + " was already started on this node"
			continue
		}
		resp.Succeeded = append(resp.Succeeded, c.ContainerId)
	}
	return resp, nil
}

func (f *fakeNM) StopContainers(context.Context, *yarnpb.StopContainersRequest) (*yarnpb.StopContainersResponse, error) {
	return &yarnpb.StopContainersResponse{}, nil
}

func (f *fakeNM) startedIDs() []*yarnpb.StartContainerRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*yarnpb.StartContainerRequest(nil), f.started...)
}

func newFakeNMServer(f *fakeNM, id *tlsutil.Bundle) *grpc.Server {
	g := grpc.NewServer(id.ServerOption())
	yarnpb.RegisterContainerManagerServiceServer(g, f)
	return g
}

func startFakeNM(t testing.TB, s *Server, memMB int64) *fakeNM {
	t.Helper()
	return startFakeNMWith(t, s, &yarnpb.Resource{MemoryMb: memMB, Vcores: 8})
}

func startFakeNMWith(t testing.TB, s *Server, total *yarnpb.Resource) *fakeNM {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNM{addr: ln.Addr().String()}
	id := bundleFor(t, s, tlstest.Node("fake-"+f.addr))
	g := newFakeNMServer(f, id)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	f.rm = clientAs(t, s, id.Identity)
	if _, err := f.rm.RegisterNode(context.Background(), &yarnpb.RegisterNodeManagerRequest{NodeId: f.addr, Total: total}); err != nil {
		t.Fatal(err)
	}
	return f
}

// amContext is the context of a call by the AM of attempt.
func amContext(attempt string) context.Context {
	appID, _ := yarnpb.AppIDOfAttempt(attempt)
	return tlsutil.WithIdentity(context.Background(), tlsutil.Identity{Kind: tlsutil.KindApp, Name: appID, User: "alice"})
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// submitRunning submits an application and registers its AM, returning
// the attempt id.
func submitRunning(t *testing.T, s *Server, c *rmclient.Client, nm *fakeNM) string {
	t.Helper()
	return submitRunningIn(t, s, c, nm, "")
}

// submitRunningIn is submitRunning to queue.
func submitRunningIn(t *testing.T, s *Server, c *rmclient.Client, nm *fakeNM, queue string) string {
	t.Helper()
	ctx := context.Background()
	app, err := c.NewApplication(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Submit(ctx, &yarnpb.ApplicationSubmissionContext{
		ApplicationId: app.ApplicationId, AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}}, Queue: queue,
	}); err != nil {
		t.Fatal(err)
	}
	var attempt string
	waitUntil(t, "the AM container launched", func() bool {
		for _, s := range nm.startedIDs() {
			if s.ApplicationId == app.ApplicationId {
				attempt = s.LaunchContext.Env["LOOM_APP_ATTEMPT_ID"]
				return true
			}
		}
		return false
	})
	appID, _ := yarnpb.AppIDOfAttempt(attempt)
	amrm := clientAs(t, s, tlsutil.Identity{Kind: tlsutil.KindApp, Name: appID, User: "alice"}).NewAMRMClient(attempt, mustAMToken(t, s, attempt), rmclient.Handler{})
	if _, err := amrm.Register(ctx, "h", 1, "http://h:1"); err != nil {
		t.Fatal(err)
	}
	return attempt
}

// mustAMToken is the AMToken the RM put in attempt's launch credentials.
func mustAMToken(t testing.TB, s *Server, attempt string) []byte {
	t.Helper()
	tok, err := s.amToken(attempt)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func allocate(t *testing.T, s *Server, req *yarnpb.AllocateRequest) *yarnpb.AllocateResponse {
	t.Helper()
	if req.AmToken == nil {
		req.AmToken = mustAMToken(t, s, req.ApplicationAttemptId)
	}
	resp, err := (&amEndpoint{s: s}).Allocate(amContext(req.ApplicationAttemptId), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestAllocateHoldsUntilContainersArriveAndResendsLostResponses(t *testing.T) {
	s, c := testServer(t, nil)
	nm := startFakeNM(t, s, 4096)
	attempt := submitRunning(t, s, c, nm)
	asks := []*yarnpb.ResourceRequest{{Priority: 1, Capability: &yarnpb.Resource{MemoryMb: 256, Vcores: 1}, Count: 3}}

	got := 0
	var last *yarnpb.AllocateResponse
	respID := int32(0)
	for got < 3 {
		last = allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: respID, Asks: asks, WaitMs: 5000})
		if last.ResponseId != respID+1 {
			t.Fatalf("response id %d after request %d", last.ResponseId, respID)
		}
		respID = last.ResponseId
		got += len(last.Allocated)
		asks[0].Count = int32(3 - got)
	}
	// A request that repeats the previous response id gets the previous
	// response again: the AM lost it.
	again := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: respID - 1, Asks: asks})
	if again.ResponseId != last.ResponseId || len(again.Allocated) != len(last.Allocated) {
		t.Fatalf("resent response %+v, want %+v", again, last)
	}
	// One out of step is told to resync.
	if r := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: respID + 5}); r.Command != yarnpb.AMCommand_AM_RESYNC {
		t.Fatalf("out-of-step request got %+v, want RESYNC", r)
	}
	// Asks met: nothing more is placed.
	allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: respID, Asks: asks})
	appID, _ := yarnpb.AppIDOfAttempt(attempt)
	r, err := c.Report(context.Background(), appID, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Containers) != 4 {
		t.Fatalf("app has %d containers, want the AM and 3", len(r.Containers))
	}
}

// An answer the AM never got because its leader went is sent again by
// the next leader, which has none of the answers its predecessor sent:
// the AM's next call says the last answer it got, and containers handed
// out in a later one are handed out again, and not placed again.
func TestAnAnswerLostWithItsLeaderIsSentAgain(t *testing.T) {
	s, c := testServer(t, nil)
	nm := startFakeNM(t, s, 4096)
	attempt := submitRunning(t, s, c, nm)
	ask := func(n int32) []*yarnpb.ResourceRequest {
		return []*yarnpb.ResourceRequest{{Priority: 1, Capability: &yarnpb.Resource{MemoryMb: 256, Vcores: 1}, Count: n}}
	}
	var final *yarnpb.AllocateResponse
	respID, got := int32(0), 0
	for got < 2 {
		r := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: respID, Asks: ask(int32(2 - got)), WaitMs: 5000})
		if len(r.Allocated) > 0 {
			final = r
		}
		respID = r.ResponseId
		got += len(r.Allocated)
	}
	// The AM never got the final answer; the leader that sent it goes,
	// and the next knows nothing of its answers.
	s.soft.setLastResponse(attempt, nil)
	lost := int32(len(final.Allocated))
	again := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: final.ResponseId - 1, Asks: ask(lost)})
	if again.ResponseId != final.ResponseId || !sameContainers(again.Allocated, final.Allocated) {
		t.Fatalf("the answer after the lost one: response %d with %v; want response %d with %v",
			again.ResponseId, containerIDs(again.Allocated), final.ResponseId, containerIDs(final.Allocated))
	}
	// Got this time: nothing is handed out again, nor placed again.
	next := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: again.ResponseId, Asks: ask(0), WaitMs: 300})
	if len(next.Allocated) != 0 {
		t.Fatalf("the answer after the resent one hands out %v again", containerIDs(next.Allocated))
	}
	if n := len(s.State().Snapshot().ContainersByAttempt(nil, attempt)); n != 3 {
		t.Fatalf("the attempt has %d containers; want the AM and the 2 it asked for", n)
	}
}

// An answer that hands over containers placed before the AM's call
// takes them off its asks once: the call's totals already counted them
// as not yet handed, and counting them again left the attempt short of
// what it asked for until later calls made it up.
func TestContainersHandedInTheAnswerToTheirAskCountOnce(t *testing.T) {
	s, c := testServer(t, nil)
	nm := startFakeNM(t, s, 4096) // room for the AM and 3 of 1 GiB
	attempt := submitRunning(t, s, c, nm)
	ask := []*yarnpb.ResourceRequest{{Priority: 1, Capability: &yarnpb.Resource{MemoryMb: 1024, Vcores: 1}, Count: 10}}
	first := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: 0, Asks: ask})
	waitUntil(t, "the 3 containers that fit placed", func() bool {
		n := 0
		for _, c := range s.State().Snapshot().ContainersByAttempt(nil, attempt) {
			if !c.IsAM {
				n++
			}
		}
		return n == 3
	})
	handed := len(first.Allocated)
	// The AM still wants the 10 less what it was handed; this answer
	// hands it the rest of the 3, and 7 remain to be placed.
	ask[0].Count = int32(10 - handed)
	second := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: first.ResponseId, Asks: ask})
	if handed+len(second.Allocated) != 3 {
		t.Fatalf("the two answers handed over %d and %d containers; want 3 in all", handed, len(second.Allocated))
	}
	var left int32
	for _, a := range s.soft.asksFor(attempt).Asks {
		left += a.Count
	}
	if left != 7 {
		t.Fatalf("after 3 of 10 were handed over, the attempt asks for %d more; want 7", left)
	}
}

func containerIDs(cs []*yarnpb.Container) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.Id
	}
	slices.Sort(ids)
	return ids
}

func sameContainers(a, b []*yarnpb.Container) bool {
	return slices.Equal(containerIDs(a), containerIDs(b))
}

// An answer hands over at most maxHandedOut containers, and the next
// call the rest: the write that records them stays small.
func TestAllocateHandsOutABoundedBatch(t *testing.T) {
	s, c := testServer(t, nil)
	nm := startFakeNMWith(t, s, &yarnpb.Resource{MemoryMb: 64 << 10, Vcores: 512})
	attempt := submitRunning(t, s, c, nm)
	const want = maxHandedOut + 44
	asks := []*yarnpb.ResourceRequest{{Priority: 1, Capability: &yarnpb.Resource{MemoryMb: 128, Vcores: 1}, Count: want}}
	at := s.State().Snapshot().Attempt(nil, attempt)
	waitUntil(t, "every container placed", func() bool {
		allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: -1, Asks: asks}) // asks only: out of step, answered RESYNC
		n := 0
		for _, c := range s.State().Snapshot().ContainersByAttempt(nil, at.ID) {
			if c.State == yarnpb.ContainerState_CONTAINER_ALLOCATED && !c.IsAM {
				n++
			}
		}
		return n == want
	})
	first := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, Asks: asks})
	if len(first.Allocated) != maxHandedOut {
		t.Fatalf("first answer handed %d containers, want %d", len(first.Allocated), maxHandedOut)
	}
	asks[0].Count = want - maxHandedOut
	second := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: first.ResponseId, Asks: asks})
	if len(second.Allocated) != want-maxHandedOut {
		t.Fatalf("second answer handed %d containers, want %d", len(second.Allocated), want-maxHandedOut)
	}
}

func TestCompletionsReachTheAMOnce(t *testing.T) {
	s, c := testServer(t, nil)
	nm := startFakeNM(t, s, 4096)
	attempt := submitRunning(t, s, c, nm)
	resp := allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, WaitMs: 5000,
		Asks: []*yarnpb.ResourceRequest{{Priority: 1, Capability: &yarnpb.Resource{MemoryMb: 256, Vcores: 1}, Count: 1}}})
	if len(resp.Allocated) != 1 {
		t.Fatalf("allocated %d", len(resp.Allocated))
	}
	id := resp.Allocated[0].Id
	if _, err := nm.rm.NodeHeartbeat(context.Background(), &yarnpb.NodeHeartbeatRequest{NodeId: nm.addr, Healthy: true,
		Containers: []*yarnpb.ContainerStatus{{ContainerId: id, State: yarnpb.ContainerState_CONTAINER_COMPLETED, ExitStatus: 3, Diagnostics: "boom"}}}); err != nil {
		t.Fatal(err)
	}
	resp = allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: resp.ResponseId, WaitMs: 5000})
	if len(resp.Completed) != 1 || resp.Completed[0].ExitStatus != 3 || resp.Completed[0].Diagnostics != "boom" {
		t.Fatalf("completed %+v", resp.Completed)
	}
	resp = allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: resp.ResponseId})
	if len(resp.Completed) != 0 {
		t.Fatalf("completion handed out twice: %+v", resp.Completed)
	}
}

func TestBadRequestsAreRefusedWithClearErrors(t *testing.T) {
	s, c := testServer(t, nil)
	nm := startFakeNM(t, s, 4096)
	attempt := submitRunning(t, s, c, nm)
	ctx := context.Background()
	amCtx := amContext(attempt)
	amTok := mustAMToken(t, s, attempt)
	userCtx := tlsutil.WithIdentity(ctx, tlstest.User("alice"))
	nodeCtx := tlsutil.WithIdentity(ctx, tlstest.Node("n"))
	ce := &clientEndpoint{s: s}
	app, _ := c.NewApplication(ctx)
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"ask above the maximum", func() error {
			_, err := (&amEndpoint{s: s}).Allocate(amCtx, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, AmToken: amTok,
				Asks: []*yarnpb.ResourceRequest{{Capability: &yarnpb.Resource{MemoryMb: 999999, Vcores: 1}, Count: 1}}})
			return err
		}, "exceeds the maximum allocation of 8192 MB"},
		{"zero memory", func() error {
			_, err := (&amEndpoint{s: s}).Allocate(amCtx, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, AmToken: amTok,
				Asks: []*yarnpb.ResourceRequest{{Capability: &yarnpb.Resource{Vcores: 1}, Count: 1}}})
			return err
		}, "memory must be positive"},
		{"negative count", func() error {
			_, err := (&amEndpoint{s: s}).Allocate(amCtx, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, AmToken: amTok,
				Asks: []*yarnpb.ResourceRequest{{Capability: &yarnpb.Resource{MemoryMb: 1, Vcores: 1}, Count: -1}}})
			return err
		}, "must not be negative"},
		{"an AM environment too big", func() error {
			env := map[string]string{}
			for i := range yarnpb.MaxEnvVars + 1 {
				env[fmt.Sprint("V", i)] = "x"
			}
			_, err := ce.SubmitApplication(userCtx, &yarnpb.SubmitApplicationRequest{Context: &yarnpb.ApplicationSubmissionContext{
				ApplicationId: app.ApplicationId, AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"x"}, Env: env}}})
			return err
		}, "the environment has 1025 variables"},
		{"too many tags", func() error {
			_, err := ce.SubmitApplication(userCtx, &yarnpb.SubmitApplicationRequest{Context: &yarnpb.ApplicationSubmissionContext{
				ApplicationId: app.ApplicationId, Tags: make([]string, 65), AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"x"}}}})
			return err
		}, "65 tags"},
		{"a local resource named ..", func() error {
			_, err := ce.SubmitApplication(userCtx, &yarnpb.SubmitApplicationRequest{Context: &yarnpb.ApplicationSubmissionContext{
				ApplicationId: app.ApplicationId, AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"x"},
					LocalResources: []*yarnpb.LocalResource{{Name: "..", Url: "https://h/staging/x", Sha256: strings.Repeat("0", 64)}}}}})
			return err
		}, "not a plain file name"},
		{"malformed attempt id", func() error {
			_, err := (&amEndpoint{s: s}).Allocate(amCtx, &yarnpb.AllocateRequest{ApplicationAttemptId: "x"})
			return err
		}, "is not an application attempt id"},
		{"unknown queue", func() error {
			_, err := ce.SubmitApplication(userCtx, &yarnpb.SubmitApplicationRequest{Context: &yarnpb.ApplicationSubmissionContext{
				ApplicationId: app.ApplicationId, Queue: "nope", AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"x"}}}})
			return err
		}, `queue "nope" does not exist`},
		{"AM without a command", func() error {
			_, err := ce.SubmitApplication(userCtx, &yarnpb.SubmitApplicationRequest{Context: &yarnpb.ApplicationSubmissionContext{ApplicationId: app.ApplicationId}})
			return err
		}, "no command"},
		{"no context", func() error {
			_, err := ce.SubmitApplication(userCtx, &yarnpb.SubmitApplicationRequest{})
			return err
		}, "no application context"},
		{"negative AM memory", func() error {
			_, err := ce.SubmitApplication(userCtx, &yarnpb.SubmitApplicationRequest{Context: &yarnpb.ApplicationSubmissionContext{
				ApplicationId: app.ApplicationId, AmResource: &yarnpb.Resource{MemoryMb: -5, Vcores: 1}, AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"x"}}}})
			return err
		}, "memory must be positive"},
		{"node without resources", func() error {
			_, err := (&trackerEndpoint{s: s}).RegisterNodeManager(nodeCtx, &yarnpb.RegisterNodeManagerRequest{NodeId: "h:1"})
			return err
		}, "must offer positive memory"},
		{"node id without a port", func() error {
			_, err := (&trackerEndpoint{s: s}).RegisterNodeManager(nodeCtx, &yarnpb.RegisterNodeManagerRequest{NodeId: "h", Total: &yarnpb.Resource{MemoryMb: 1, Vcores: 1}})
			return err
		}, "is not host:port"},
		{"unknown application", func() error {
			_, err := c.Report(ctx, "application_1_0999", false)
			return err
		}, "not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := errdefs.FromGRPC(tc.call())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("error class of %v: want InvalidArgument or NotFound", err)
			}
		})
	}
	if _, err := c.Nodes(ctx, false); err != nil {
		t.Fatalf("the RM is unwell after bad requests: %v", err)
	}
}

func TestSilentNodeIsLostAndItsAMRetried(t *testing.T) {
	clock := newFakeClock()
	s, c := testServer(t, func(cfg *Config) { cfg.Clock, cfg.NodeExpiry, cfg.AMExpiry = clock, 10*time.Second, time.Hour })
	nm := startFakeNM(t, s, 4096)
	attempt := submitRunning(t, s, c, nm)
	appID, _ := yarnpb.AppIDOfAttempt(attempt)
	clock.advanceBy(time.Second, 5*time.Second)
	if n := s.State().Snapshot().Node(nm.addr); n.State != yarnpb.NodeState_NODE_RUNNING {
		t.Fatalf("the node is %s 5 s into a 10 s expiry", n.State)
	}
	clock.advanceUntil(t, time.Second, time.Minute, "the silent node LOST", func() bool {
		n := s.State().Snapshot().Node(nm.addr)
		return n.State == yarnpb.NodeState_NODE_LOST
	})
	app := s.State().Snapshot().App(nil, appID)
	if app.NumAttempts != 2 || !strings.Contains(app.Diagnostics, "lost") {
		t.Fatalf("app after its node was lost: %+v", app)
	}
	// The node comes back: its heartbeat is told to register again.
	resp, err := nm.rm.NodeHeartbeat(context.Background(), &yarnpb.NodeHeartbeatRequest{NodeId: nm.addr, Healthy: true})
	if err != nil || resp.Action != yarnpb.NodeAction_RESYNC {
		t.Fatalf("heartbeat of a lost node: %+v, %v", resp, err)
	}
}

func TestStateSurvivesRestartOnDisk(t *testing.T) {
	dir := t.TempDir()
	var raftAddr string
	{
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		raftAddr = l.Addr().String()
		l.Close()
	}
	var addr string
	mk := func() (*Server, *rmclient.Client) {
		return testServer(t, func(cfg *Config) {
			cfg.InMemory = false
			cfg.DataDir = dir
			cfg.RaftAddr = raftAddr
			if addr != "" {
				cfg.Addr = addr
			}
		})
	}
	s1, c1 := mk()
	addr = s1.Addr()
	startFakeNM(t, s1, 2048)
	app, err := c1.NewApplication(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.Submit(context.Background(), &yarnpb.ApplicationSubmissionContext{ApplicationId: app.ApplicationId, Name: "survivor",
		AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}}}); err != nil {
		t.Fatal(err)
	}
	epoch := s1.epoch.Load()
	s1.Shutdown()
	c1.Close()

	s2, c2 := mk()
	r, err := c2.Report(context.Background(), app.ApplicationId, false)
	if err != nil || r.Name != "survivor" {
		t.Fatalf("after restart: %+v, %v", r, err)
	}
	if nodes, _ := c2.Nodes(context.Background(), true); len(nodes) != 1 {
		t.Fatalf("after restart the RM knows %d nodes, want 1", len(nodes))
	}
	waitUntil(t, "leadership after restart", s2.IsLeader)
	if s2.epoch.Load() <= epoch {
		t.Fatalf("epoch %d after restart, was %d", s2.epoch.Load(), epoch)
	}
}

// An AM's calls take its attempt's AMToken: none, another attempt's, or
// one of a key the RM does not hold is refused; a token of an older key
// is rolled over in the Allocate answer, and once its key retires it is
// refused.
func TestAMTokensBindOneAttempt(t *testing.T) {
	s, c := testServer(t, nil)
	nm := startFakeNM(t, s, 4096)
	attempt := submitRunning(t, s, c, nm)
	ctx := context.Background()
	amCtx := amContext(attempt)
	other, _ := c.NewApplication(ctx)
	var respID int32
	call := func(tok []byte) (*yarnpb.AllocateResponse, error) {
		resp, err := (&amEndpoint{s: s}).Allocate(amCtx, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt, ResponseId: respID, AmToken: tok})
		if err == nil {
			respID = resp.ResponseId
		}
		return resp, errdefs.FromGRPC(err)
	}
	forged, _ := token.AM(token.NewKey(1, time.Now()), attempt)
	for name, tc := range map[string]struct {
		tok  []byte
		want error
		msg  string
	}{
		"none":               {nil, errdefs.ErrUnauthenticated, "no AMToken"},
		"another attempt's":  {mustAMToken(t, s, yarnpb.AttemptID(other.ApplicationId, 1)), errdefs.ErrPermissionDenied, "is attempt " + yarnpb.AttemptID(other.ApplicationId, 1) + "'s"},
		"of an unknown key":  {forged, errdefs.ErrUnauthenticated, "signature does not verify"},
		"not a token at all": {[]byte("hello"), errdefs.ErrUnauthenticated, "malformed"},
	} {
		if _, err := call(tc.tok); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v saying %q", name, err, tc.want, tc.msg)
		}
	}

	first := mustAMToken(t, s, attempt)
	resp, err := call(first)
	if err != nil || resp.AmToken != nil {
		t.Fatalf("with the newest key's token: %v, rolled %x", err, resp.GetAmToken())
	}
	rotate := func() {
		t.Helper()
		keys := s.masterKeys()
		if _, _, err := s.raftApply(CmdRotateKey, rotateKeyCmd{Key: token.NewKey(keys[0].Id+1, time.Now())}); err != nil {
			t.Fatal(err)
		}
	}
	rotate()
	resp, err = call(first)
	if err != nil || resp.AmToken == nil {
		t.Fatalf("after a rotation the old token: %v, rolled %x; want it taken and rolled over", err, resp.GetAmToken())
	}
	if _, err := call(resp.AmToken); err != nil {
		t.Fatalf("the rolled-over token: %v", err)
	}
	for range keysKept - 1 {
		rotate()
	}
	if _, err := call(first); !errors.Is(err, errdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), "retired") {
		t.Fatalf("a token of a retired key: %v, want refused", err)
	}
	if n := len(s.masterKeys()); n != keysKept {
		t.Fatalf("%d master keys kept, want %d", n, keysKept)
	}
}

// An AM's diagnostics go into the raft state and every report: a huge
// one is cut to the bound, saying so.
func TestLongDiagnosticsAreCut(t *testing.T) {
	s, c := testServer(t, nil)
	nm := startFakeNM(t, s, 4096)
	attempt := submitRunning(t, s, c, nm)
	appID, _ := yarnpb.AppIDOfAttempt(attempt)
	_, err := (&amEndpoint{s: s}).FinishApplicationMaster(amContext(attempt), &yarnpb.FinishApplicationMasterRequest{
		ApplicationAttemptId: attempt, FinalStatus: yarnpb.FinalStatus_FAILED, Diagnostics: strings.Repeat("x", 1<<20), AmToken: mustAMToken(t, s, attempt)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Report(context.Background(), appID, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Diagnostics) > maxDiagnostics || !strings.HasSuffix(a.Diagnostics, "(cut)") {
		t.Fatalf("diagnostics of %d bytes ending %q", len(a.Diagnostics), a.Diagnostics[max(0, len(a.Diagnostics)-20):])
	}
}

// An application's own credentials (a job's object-store keys) reach its
// AM container beside the ones the RM gives it; a submission cannot
// carry one of the RM's names, nor more than leaves room for them.
func TestAMContainerGetsTheApplicationsCredentials(t *testing.T) {
	s, c := testServer(t, nil)
	nm := startFakeNM(t, s, 4096)
	ctx := context.Background()
	submit := func(creds map[string][]byte) (string, error) {
		app, err := c.NewApplication(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return app.ApplicationId, c.Submit(ctx, &yarnpb.ApplicationSubmissionContext{
			ApplicationId: app.ApplicationId, AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}, Credentials: creds},
		})
	}
	for _, name := range []string{tlsutil.CredentialCA, tlsutil.CredentialKey, tlsutil.CredentialAMToken} {
		if _, err := submit(map[string][]byte{name: []byte("mine")}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), name) {
			t.Errorf("a submission carrying credential %s: %v, want InvalidArgument naming it", name, err)
		}
	}
	many := map[string][]byte{}
	for i := range yarnpb.MaxCredentials - 3 {
		many[fmt.Sprintf("c%d", i)] = nil
	}
	if _, err := submit(many); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a submission of %d credentials: %v, want InvalidArgument", len(many), err)
	}

	appID, err := submit(map[string][]byte{"s3.json": []byte(`{"access_key_id":"k"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var launch *yarnpb.ContainerLaunchContext
	waitUntil(t, "the AM container launched", func() bool {
		for _, s := range nm.startedIDs() {
			if s.ApplicationId == appID {
				launch = s.LaunchContext
				return true
			}
		}
		return false
	})
	if got := string(launch.Credentials["s3.json"]); got != `{"access_key_id":"k"}` {
		t.Errorf("the AM container's s3.json is %q", got)
	}
	for _, name := range []string{tlsutil.CredentialCA, tlsutil.CredentialCert, tlsutil.CredentialKey, tlsutil.CredentialAMToken} {
		if len(launch.Credentials[name]) == 0 {
			t.Errorf("the AM container lacks the RM's %s", name)
		}
	}
	if err := launch.Validate(); err != nil {
		t.Errorf("the AM launch context the NM gets: %v", err)
	}
}
