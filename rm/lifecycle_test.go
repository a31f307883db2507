package rm

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/scheduler"
	"github.com/loom-project/loom/rm/state"
)

// amContainer is the AM container the fake NM was asked to start for app.
func amContainer(t *testing.T, nm *fakeNM, appID string) string {
	t.Helper()
	var id string
	waitUntil(t, "the AM container started", func() bool {
		for _, s := range nm.startedIDs() {
			if s.ApplicationId == appID {
				id = s.ContainerId
				return true
			}
		}
		return false
	})
	return id
}

// heartbeat reports containers RUNNING on the fake NM's node.
func heartbeat(t *testing.T, nm *fakeNM, running ...string) *yarnpb.NodeHeartbeatResponse {
	t.Helper()
	req := &yarnpb.NodeHeartbeatRequest{NodeId: nm.addr, Healthy: true}
	for _, id := range running {
		req.Containers = append(req.Containers, &yarnpb.ContainerStatus{ContainerId: id, State: yarnpb.ContainerState_CONTAINER_RUNNING})
	}
	resp, err := nm.rm.NodeHeartbeat(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// An AM whose container started but that never registers is expired
// after the registration timeout, and its application tries again.
func TestAnAMThatNeverRegistersExpires(t *testing.T) {
	clock := newFakeClock()
	s, c := testServer(t, func(cfg *Config) {
		cfg.Clock, cfg.AMRegisterTimeout, cfg.AMExpiry, cfg.NodeExpiry = clock, 2*time.Minute, 30*time.Second, time.Hour
	})
	nm := startFakeNM(t, s, 4096)
	ctx := context.Background()
	app, err := c.NewApplication(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Submit(ctx, &yarnpb.ApplicationSubmissionContext{ApplicationId: app.ApplicationId, AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}}}); err != nil {
		t.Fatal(err)
	}
	heartbeat(t, nm, amContainer(t, nm, app.ApplicationId))
	first := yarnpb.AttemptID(app.ApplicationId, 1)
	launched := func() bool {
		at := s.State().Snapshot().Attempt(nil, first)
		return at != nil && at.State == yarnpb.AttemptState_ATTEMPT_LAUNCHED
	}
	waitUntil(t, "the attempt LAUNCHED", launched)
	// Within the timeout nothing happens; past it the attempt fails.
	clock.advanceBy(10*time.Second, time.Minute)
	if !launched() {
		t.Fatal("the attempt was expired within its registration timeout")
	}
	clock.advanceUntil(t, 10*time.Second, 5*time.Minute, "the silent attempt failed", func() bool {
		at := s.State().Snapshot().Attempt(nil, first)
		return at != nil && at.State == yarnpb.AttemptState_ATTEMPT_FAILED
	})
	if at := s.State().Snapshot().Attempt(nil, first); !strings.Contains(at.Diagnostics, "did not register") {
		t.Fatalf("the attempt's diagnostics: %q", at.Diagnostics)
	}
	if a := s.State().Snapshot().App(nil, app.ApplicationId); a.NumAttempts != 2 {
		t.Fatalf("the application has %d attempts, want a second one", a.NumAttempts)
	}
}

// An AM that finished but does not exit is stopped once its grace is
// over: the NM is told to clean its container up, which frees what it
// holds.
func TestAFinishedAMThatDoesNotExitIsStopped(t *testing.T) {
	clock := newFakeClock()
	s, c := testServer(t, func(cfg *Config) { cfg.Clock, cfg.KillGrace = clock, 5*time.Second })
	nm := startFakeNM(t, s, 4096)
	attempt := submitRunning(t, s, c, nm)
	appID, _ := yarnpb.AppIDOfAttempt(attempt)
	am := amContainer(t, nm, appID)
	heartbeat(t, nm, am)
	if _, err := (&amEndpoint{s: s}).FinishApplicationMaster(amContext(attempt), &yarnpb.FinishApplicationMasterRequest{
		ApplicationAttemptId: attempt, FinalStatus: yarnpb.FinalStatus_SUCCEEDED, AmToken: mustAMToken(t, s, attempt)}); err != nil {
		t.Fatal(err)
	}
	if resp := heartbeat(t, nm, am); len(resp.ContainersToCleanup) != 0 {
		t.Fatalf("the AM was stopped within its grace: %v", resp.ContainersToCleanup)
	}
	clock.Advance(4 * time.Second)
	if resp := heartbeat(t, nm, am); len(resp.ContainersToCleanup) != 0 {
		t.Fatalf("the AM was stopped 4 s into a 5 s grace: %v", resp.ContainersToCleanup)
	}
	clock.Advance(2 * time.Second)
	if resp := heartbeat(t, nm, am); len(resp.ContainersToCleanup) != 1 || resp.ContainersToCleanup[0] != am {
		t.Fatalf("after its grace the lingering AM was not told to stop: %v", resp.ContainersToCleanup)
	}
}

// The leader's memory of an attempt goes with the attempt however it
// ends: a kill leaves no asks, responses or locks behind.
func TestSoftStateGoesWithItsAttempt(t *testing.T) {
	clock := newFakeClock()
	s, c := testServer(t, func(cfg *Config) { cfg.Clock, cfg.NodeExpiry = clock, time.Hour })
	nm := startFakeNM(t, s, 4096)
	attempt := submitRunning(t, s, c, nm)
	allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt,
		Asks: []*yarnpb.ResourceRequest{{Priority: 1, Capability: &yarnpb.Resource{MemoryMb: 256, Vcores: 1}, Count: 1}}})
	if n, _ := s.soft.sizes(); n == 0 {
		t.Fatal("no soft state for a running attempt")
	}
	appID, _ := yarnpb.AppIDOfAttempt(attempt)
	if _, err := c.Kill(context.Background(), appID, "done"); err != nil {
		t.Fatal(err)
	}
	clock.advanceUntil(t, time.Second, time.Minute, "the killed attempt's soft state gone", func() bool {
		n, _ := s.soft.sizes()
		return n == 0
	})
}

// A step of establishing leadership that fails is tried again: the
// replica becomes a leader that serves, not one that answers NotLeader
// naming itself.
func TestLeadershipIsEstablishedAfterAFailedStep(t *testing.T) {
	var fails atomic.Int32
	s, c := testServer(t, func(cfg *Config) {
		cfg.establishFault = func() error {
			if fails.Add(1) <= 3 {
				return errors.New("barrier timed out (injected)")
			}
			return nil
		}
	})
	if _, err := c.NewApplication(context.Background()); err != nil {
		t.Fatalf("after 3 failed attempts to establish leadership: %v", err)
	}
	if !s.IsLeader() || fails.Load() < 4 {
		t.Fatalf("leader %v after %d tries", s.IsLeader(), fails.Load())
	}
}

// Launching an AM container that its node already runs (a new leader
// launching again what the last one started) is a launch, not a failure.
func TestRelaunchingARunningAMKeepsTheAttempt(t *testing.T) {
	s, c := testServer(t, nil)
	nm := startFakeNM(t, s, 4096)
	nm.mu.Lock()
	nm.running = true
	nm.mu.Unlock()
	ctx := context.Background()
	app, err := c.NewApplication(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Submit(ctx, &yarnpb.ApplicationSubmissionContext{ApplicationId: app.ApplicationId, AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}}}); err != nil {
		t.Fatal(err)
	}
	amContainer(t, nm, app.ApplicationId)
	attempt := yarnpb.AttemptID(app.ApplicationId, 1)
	// Again, as a new leader would, and synchronously.
	r := s.State().Snapshot()
	s.launchAM(ctx, r, r.Attempt(nil, attempt))
	at := s.State().Snapshot().Attempt(nil, attempt)
	if at.Terminal() {
		t.Fatalf("the attempt after a second launch: %s: %s", at.State, at.Diagnostics)
	}
	nm.mu.Lock()
	calls := nm.statusCalls
	nm.mu.Unlock()
	if calls == 0 {
		t.Fatal("the RM did not check the container before taking the launch as done")
	}
}

// A ResourceManager that served nodes, applications and AMs leaves no
// goroutine behind when it shuts down.
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("serve", func(t *testing.T) {
		// The subtest's cleanups (the server, the fake node, clients)
		// run at its end.
		s, c := testServer(t, nil)
		nm := startFakeNM(t, s, 4096)
		attempt := submitRunning(t, s, c, nm)
		allocate(t, s, &yarnpb.AllocateRequest{ApplicationAttemptId: attempt,
			Asks: []*yarnpb.ResourceRequest{{Priority: 1, Capability: &yarnpb.Resource{MemoryMb: 256, Vcores: 1}, Count: 2}}})
		c.Close()
		nm.rm.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after shutdown, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A node that stops heartbeating is LOST once the node expiry has passed
// since its last heartbeat, and not before; a node that keeps
// heartbeating stays RUNNING through the same time.
func TestANodeThatStopsHeartbeatingIsLost(t *testing.T) {
	clock := newFakeClock()
	s, _ := testServer(t, func(cfg *Config) { cfg.Clock, cfg.NodeExpiry = clock, 30*time.Second })
	alive, silent := startFakeNM(t, s, 4096), startFakeNM(t, s, 4096)
	state := func(id string) yarnpb.NodeState { return s.State().Snapshot().Node(id).State }
	for moved := time.Duration(0); moved < 25*time.Second; moved += 5 * time.Second {
		heartbeat(t, alive)
		clock.Advance(5 * time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	if got := state(silent.addr); got != yarnpb.NodeState_NODE_RUNNING {
		t.Fatalf("25 s into a 30 s expiry the silent node is %s", got)
	}
	for moved := time.Duration(0); state(silent.addr) != yarnpb.NodeState_NODE_LOST; moved += time.Second {
		if moved > time.Minute {
			t.Fatalf("a minute past its expiry the silent node is %s", state(silent.addr))
		}
		heartbeat(t, alive)
		clock.Advance(time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	if got := state(alive.addr); got != yarnpb.NodeState_NODE_RUNNING {
		t.Fatalf("the node that kept heartbeating is %s", got)
	}
	if n := s.State().Snapshot().Node(silent.addr); !strings.Contains(n.HealthReport, "no heartbeat for") {
		t.Fatalf("the lost node's report: %q", n.HealthReport)
	}
}

// An AM's ask counts the containers it has not been handed yet as still
// wanted; the RM takes them off, so a placement made after its last
// answer (or by a leader that failed before answering) is not made again.
func TestAsksDoNotCountContainersNotYetHanded(t *testing.T) {
	res := state.Resource{MemoryMB: 64, VCores: 1}
	key := scheduler.AskKey{Priority: 1, Capability: res}
	other := scheduler.AskKey{Priority: 2, Capability: res}
	asks := []*scheduler.Ask{{Key: key, Count: 5}, {Key: other, Count: 1}}
	withoutUndelivered(asks, slices.Values([]*state.Container{
		{ID: "c1", Priority: 1, Resource: res, State: yarnpb.ContainerState_CONTAINER_ALLOCATED},
		{ID: "c2", Priority: 1, Resource: res, State: yarnpb.ContainerState_CONTAINER_ALLOCATED},
		{ID: "c3", Priority: 1, Resource: res, State: yarnpb.ContainerState_CONTAINER_ACQUIRED, HandedIn: 7}, // handed over: the AM knows it
		// Handed over in an answer the AM never got (it says its last
		// was 7): it is handed over again, and counts as not yet handed.
		{ID: "c6", Priority: 1, Resource: res, State: yarnpb.ContainerState_CONTAINER_ACQUIRED, HandedIn: 8},
		{ID: "am", Priority: 1, Resource: res, State: yarnpb.ContainerState_CONTAINER_ALLOCATED, IsAM: true},
		{ID: "c4", Priority: 2, Resource: res, State: yarnpb.ContainerState_CONTAINER_ALLOCATED},
		{ID: "c5", Priority: 2, Resource: res, State: yarnpb.ContainerState_CONTAINER_ALLOCATED},
	}), 7)
	if asks[0].Count != 2 || asks[1].Count != 0 {
		t.Fatalf("asks after the undelivered containers: %d and %d, want 2 and 0", asks[0].Count, asks[1].Count)
	}
}

// A heartbeat is answered without waiting for raft: the container
// changes it reports are committed by the status loop, and a completion
// is acknowledged on the heartbeat after it is recorded, so the node
// reports it until then.
func TestHeartbeatChangesCommitInTheBackground(t *testing.T) {
	s, c := testServer(t, nil)
	nm := startFakeNM(t, s, 4096)
	attempt := submitRunning(t, s, c, nm)
	appID, _ := yarnpb.AppIDOfAttempt(attempt)
	am := amContainer(t, nm, appID)
	heartbeat(t, nm, am)
	waitUntil(t, "the AM container RUNNING in the state", func() bool {
		return s.State().Snapshot().Container(am).State == yarnpb.ContainerState_CONTAINER_RUNNING
	})
	done := &yarnpb.NodeHeartbeatRequest{NodeId: nm.addr, Healthy: true, Containers: []*yarnpb.ContainerStatus{
		{ContainerId: am, State: yarnpb.ContainerState_CONTAINER_COMPLETED, ExitStatus: 0}}}
	acked := false
	waitUntil(t, "the completion recorded and acknowledged", func() bool {
		resp, err := nm.rm.NodeHeartbeat(context.Background(), done)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(resp.ContainersAcked, am) {
			acked = true
			// Acknowledged only once it is in the state.
			if !s.State().Snapshot().Container(am).Completed() {
				t.Fatal("a completion was acknowledged before it was recorded")
			}
		}
		return acked
	})
}

// The leader's loops stop before raft does: a command a loop commits as
// leadership is revoked at shutdown commits, and Shutdown returns. Raft
// drops what it has handed its FSM and not applied when it stops, so a
// loop still committing past raft's shutdown could wait forever.
func TestShutdownStopsTheLeadersLoopsBeforeRaft(t *testing.T) {
	s, _ := testServer(t, nil)
	waitUntil(t, "leadership established", s.IsLeader)
	committed := make(chan error, 1)
	s.leaderWG.Add(1)
	go func() {
		defer s.leaderWG.Done()
		deadline := time.Now().Add(30 * time.Second)
		for s.isLeader.Load() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		// Were raft to stop while this loop runs, it would within
		// this time; it must not.
		deadline = time.Now().Add(2 * time.Second)
		for s.raft.State() != raft.Shutdown && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		_, _, err := s.commit(CmdBumpEpoch, bumpEpochCmd{ClusterTS: time.Now().UnixMilli()})
		committed <- err
	}()
	stopped := make(chan struct{})
	go func() {
		s.Shutdown()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Shutdown did not return:\n%s", buf[:runtime.Stack(buf, true)])
	}
	if err := <-committed; err != nil {
		t.Fatalf("a command committed as leadership was revoked at shutdown: %v", err)
	}
}
