package rm

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/rm/scheduler"
	"github.com/loom-project/loom/rm/state"
	"github.com/loom-project/loom/tlsutil"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

// benchCluster is an RM with on-disk raft (or the leader of that many
// replicas, in one process), one fake NM that hosts the AM, and
// simulated nodes registered through raft.
func benchCluster(b *testing.B, nodes, replicas int) (*Server, string) {
	b.Helper()
	b.Cleanup(TuneRuntime()) // as `loom rm` does
	settings := func(cfg *Config) {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Error})
		cfg.HTTPAddr = ""
		cfg.RaftTimeout = 50 * time.Millisecond
		cfg.NodeExpiry = time.Hour
		cfg.AMExpiry = time.Hour
		cfg.MaxAllocation = state.Resource{MemoryMB: 1 << 20, VCores: 1 << 10}
	}
	var s *Server
	if replicas > 1 {
		rs := newReplicaSet(b, replicas)
		for i := range rs.servers {
			rs.start(i, func(cfg *Config) {
				settings(cfg)
				// Three replicas in one process on a loaded machine: the
				// default timeout, so heartbeats survive the apply load.
				cfg.RaftTimeout = DefaultConfig().RaftTimeout
			})
		}
		s = rs.servers[rs.leader()]
	} else {
		cfg := DefaultConfig()
		settings(cfg)
		cfg.Addr = "127.0.0.1:0"
		cfg.DataDir = b.TempDir()
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		cfg.RaftAddr = l.Addr().String()
		l.Close()
		pki := tlstest.New(b)
		cfg.TLS, cfg.CA = pki.Bundle(tlstest.Server("rm")), pki.CA
		var err error
		if s, err = New(cfg); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Shutdown)
	}
	c := clientAs(b, s, tlstest.User("bench"))
	// Sorted first (digits before letters), so the AM lands on it.
	nm := startFakeNM(b, s, 64*1024)

	// Simulated NodeManagers: registered through raft, as real ones are.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := 0; i < nodes-1; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n := &state.Node{ID: fmt.Sprintf("sim-%05d:8041", i), State: yarnpb.NodeState_NODE_RUNNING, Total: state.Resource{MemoryMB: 64 * 1024, VCores: 64}}
			if _, _, err := s.raftApply(CmdRegisterNode, registerNodeCmd{Node: n, Now: s.nowMS()}); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()

	ctx := context.Background()
	app, err := c.NewApplication(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Submit(ctx, &yarnpb.ApplicationSubmissionContext{ApplicationId: app.ApplicationId,
		AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}}}); err != nil {
		b.Fatal(err)
	}
	attempt := yarnpb.AttemptID(app.ApplicationId, 1)
	deadline := time.Now().Add(30 * time.Second)
	for len(nm.startedIDs()) == 0 {
		if time.Now().After(deadline) {
			b.Fatal("the AM container was not launched")
		}
		time.Sleep(time.Millisecond)
	}
	am := clientAs(b, s, tlsutil.Identity{Kind: tlsutil.KindApp, Name: app.ApplicationId, User: "bench"})
	if _, err := am.NewAMRMClient(attempt, mustAMToken(b, s, attempt), rmclient.Handler{}).Register(ctx, "h", 1, ""); err != nil {
		b.Fatal(err)
	}
	return s, attempt
}

// placeAll asks for n containers for an attempt and waits until the
// scheduler has committed every placement through raft.
func placeAll(b *testing.B, s *Server, attempt string, n int) time.Duration {
	b.Helper()
	start := time.Now()
	ask := &scheduler.Ask{Key: scheduler.AskKey{Priority: 1, Capability: state.Resource{MemoryMB: 1024, VCores: 1}}, Count: int32(n), Relax: true}
	s.soft.updateAsks(attempt, []*scheduler.Ask{ask}, nil, nil)
	s.kickScheduler()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		// Block until the attempt's containers change: no polling load.
		ws := memdb.NewWatchSet()
		snap := s.State().Snapshot()
		at := snap.Attempt(ws, attempt)
		if placed := int(at.NextContainerSeq) - 2; placed >= n {
			return time.Since(start)
		}
		if err := ws.WatchCtx(ctx); err != nil {
			b.Fatalf("placed %d of %d containers", int(at.NextContainerSeq)-2, n)
		}
	}
}

// BenchmarkSchedulerAllocations places 10,000 containers on 1,000
// simulated nodes; every placement is committed through the on-disk raft
// log before it counts.
func BenchmarkSchedulerAllocations(b *testing.B) {
	b.Run("replicas=1", func(b *testing.B) { benchAllocations(b, 1) })
	b.Run("replicas=3", func(b *testing.B) { benchAllocations(b, 3) })
}

func benchAllocations(b *testing.B, replicas int) {
	const nodes, containers = 1000, 10000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, attempt := benchCluster(b, nodes, replicas)
		b.StartTimer()
		took := placeAll(b, s, attempt, containers)
		b.ReportMetric(float64(containers)/took.Seconds(), "allocations/s")
		b.ReportMetric(float64(took.Milliseconds()), "ms/10k-containers")
	}
}

// BenchmarkRMMemory measures the heap of an RM holding 5,000 nodes and
// 10,000 containers.
func BenchmarkRMMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		s, attempt := benchCluster(b, 5000, 1)
		placeAll(b, s, attempt, 10000)
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		b.ReportMetric(float64(m.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(m.Sys)/(1<<20), "sys-MiB")
	}
}

// BenchmarkNodeHeartbeat measures a NodeManager heartbeat answered by
// the RM over TLS on loopback, as a call and as a message on the
// heartbeat stream: the client's and the server's CPU together, both in
// this process. The node reports its AM container and 7 others, all
// RUNNING in the state, as a busy node's heartbeat does.
func BenchmarkNodeHeartbeat(b *testing.B) {
	s, attempt := benchCluster(b, 1, 1)
	placeAll(b, s, attempt, 7) // the node's 8 vcores full
	node := s.State().Snapshot().Nodes()[0]
	nm := clientAs(b, s, tlstest.Node("fake-"+node.ID))
	req := &yarnpb.NodeHeartbeatRequest{NodeId: node.ID, Healthy: true}
	for _, c := range s.State().Snapshot().ContainersByNode(node.ID) {
		req.Containers = append(req.Containers, &yarnpb.ContainerStatus{ContainerId: c.ID, State: yarnpb.ContainerState_CONTAINER_RUNNING})
	}
	ctx := context.Background()
	waitFor := func() {
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := nm.NodeHeartbeat(ctx, req); err != nil {
				b.Fatal(err)
			}
			running := 0
			for _, c := range s.State().Snapshot().ContainersByNode(node.ID) {
				if c.State == yarnpb.ContainerState_CONTAINER_RUNNING {
					running++
				}
			}
			if running == len(req.Containers) {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d containers RUNNING", running, len(req.Containers))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor() // from then on the heartbeats change nothing, as most do
	b.Run("call", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := nm.NodeHeartbeat(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stream", func(b *testing.B) {
		hb := nm.Heartbeats()
		defer hb.Close()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := hb.Send(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
