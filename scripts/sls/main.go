// Command sls is loom's scheduler load simulator, after YARN's SLS and
// Nomad's C1M: thousands of simulated NodeManagers and ApplicationMasters,
// goroutines speaking the real gRPC protocols (RegisterNodeManager,
// NodeHeartbeat, RegisterApplicationMaster, Allocate, Finish) over
// loopback TLS to a real `loom rm` process, drive a trace of applications
// arriving across queues. It reports NodeManager heartbeats handled and
// their latency, containers placed end to end (Allocate -> placement ->
// raft commit -> handed to the AM), the RM's CPU and memory, and each
// queue's share of the cluster over time against its capacity, as a
// table, a CSV of samples and a PNG plot.
//
//	go run ./scripts/sls --nodes 10000 --apps 1000 --queues 8
//	go run ./scripts/sls --trace recorded.csv   # replay a trace
//
// A simulated NodeManager runs no process: a container "runs" for the
// trace's duration, and its NodeManager reports it RUNNING, then
// COMPLETED, in its heartbeats. The RM launches AM containers through the
// simulated NodeManagers' ContainerManager service, as on a real cluster;
// a simulated AM hands its containers to their NodeManagers in process.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"
)

type config struct {
	loom         string
	nodes        int
	nodeMemoryMB int64
	nodeVCores   int
	heartbeat    time.Duration
	queues       int
	queueFile    string
	apps         int
	arrival      time.Duration
	minC, maxC   int
	containerMB  int64
	minD, maxD   time.Duration
	trace        string
	writeTrace   string
	duration     time.Duration
	out          string
	seed         uint64
	rmArgs       string
	preemption   bool
	nodesPerConn int
	// heartbeatCalls sends each heartbeat as a NodeHeartbeat call
	// instead of on the node's NodeHeartbeats stream, as NMs did before.
	heartbeatCalls bool
	profile        time.Duration
	execTrace      time.Duration
	goroutines     time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.loom, "loom", "", "the loom binary to run the ResourceManager with (default: build this checkout's)")
	flag.IntVar(&c.nodes, "nodes", 10000, "simulated NodeManagers")
	flag.Int64Var(&c.nodeMemoryMB, "node-memory-mb", 8192, "memory each node offers")
	flag.IntVar(&c.nodeVCores, "node-vcores", 8, "vcores each node offers")
	flag.DurationVar(&c.heartbeat, "heartbeat", time.Second, "NodeManager heartbeat interval (the RM's --nm-heartbeat)")
	flag.IntVar(&c.queues, "queues", 8, "leaf queues of the synthetic queue file (capacities 30, 20, 15, 10, 10, 5, 5, 5% for 8)")
	flag.StringVar(&c.queueFile, "queue-file", "", "a queue file instead of the synthetic one")
	flag.IntVar(&c.apps, "apps", 1000, "applications of the synthetic trace, spread evenly over the queues")
	flag.DurationVar(&c.arrival, "arrival", 10*time.Second, "the synthetic applications arrive over this long")
	flag.IntVar(&c.minC, "min-containers", 100, "containers an application asks for, at least")
	flag.IntVar(&c.maxC, "max-containers", 600, "containers an application asks for, at most")
	flag.Int64Var(&c.containerMB, "container-mb", 1024, "memory of each container (1 vcore)")
	flag.DurationVar(&c.minD, "min-run", 20*time.Second, "how long a container runs, at least")
	flag.DurationVar(&c.maxD, "max-run", 60*time.Second, "how long a container runs, at most")
	flag.StringVar(&c.trace, "trace", "", "replay this trace (CSV: submit_ms,queue,user,containers,memory_mb,vcores,duration_ms) instead of a synthetic one")
	flag.StringVar(&c.writeTrace, "write-trace", "", "write the trace that runs to this file, to replay it")
	flag.DurationVar(&c.duration, "duration", 90*time.Second, "how long to run after the first submission")
	flag.StringVar(&c.out, "out", "sls-out", "directory for the report: report.txt, samples.csv, shares.png")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the synthetic trace")
	flag.StringVar(&c.rmArgs, "rm-args", "", "more flags for `loom rm`, space-separated")
	flag.BoolVar(&c.preemption, "preemption", true, "let the RM preempt (its default)")
	flag.DurationVar(&c.profile, "profile", 0, "save the RM's CPU profile over this long, from the first submission, to rm-cpu.pprof in --out, and the simulator's own to sim-cpu.pprof")
	flag.DurationVar(&c.execTrace, "exec-trace", 0, "save 5 s of the RM's execution trace (go tool trace) this long after the first submission, to rm-trace.out in --out")
	flag.DurationVar(&c.goroutines, "goroutines", 0, "save the RM's goroutines this long after the first submission, to rm-goroutines.txt in --out, and its allocations to rm-allocs.pprof")
	flag.IntVar(&c.nodesPerConn, "nodes-per-conn", 1, "simulated NodeManagers that share one connection to the RM (1: a connection each, as real ones)")
	flag.BoolVar(&c.heartbeatCalls, "heartbeat-calls", false, "send each heartbeat as a NodeHeartbeat call instead of on the node's NodeHeartbeats stream (the NodeManager's way)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "sls:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	if c.nodes < 1 || c.nodes > 60000 {
		return fmt.Errorf("--nodes %d: want 1 to 60000", c.nodes)
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "loom-sls-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := raiseFileLimit(); err != nil {
		return err
	}
	trace, err := loadTrace(c)
	if err != nil {
		return err
	}
	if c.writeTrace != "" {
		if err := writeTrace(c.writeTrace, trace); err != nil {
			return err
		}
	}
	queueFile, capacities, err := queueFileFor(c, work, trace)
	if err != nil {
		return err
	}
	pki, err := newPKI(filepath.Join(work, "tls"))
	if err != nil {
		return err
	}
	rm, err := startRM(ctx, c, work, queueFile, pki)
	if err != nil {
		return err
	}
	defer rm.stop()
	fmt.Printf("loom rm pid %d on %s; log %s\n", rm.pid(), rm.addr, rm.log)

	// The simulated nodes and AMs run until the run ends.
	simCtx, stopSim := context.WithCancel(ctx)
	sim, err := newSim(simCtx, c, rm, pki)
	if err != nil {
		stopSim()
		return err
	}
	defer sim.close()
	defer stopSim()
	ctx = simCtx
	began := time.Now()
	if err := sim.registerNodes(ctx); err != nil {
		return err
	}
	fmt.Printf("%d NodeManagers registered in %s\n", c.nodes, time.Since(began).Round(time.Millisecond))
	sim.startHeartbeats(ctx)

	rep := newReport(c, capacities, trace)
	sampler := newSampler(sim, rm, rep)
	samplerDone := sampler.start(ctx)
	start := time.Now()
	sim.replay(ctx, trace, start)
	if c.goroutines > 0 {
		time.AfterFunc(c.goroutines, func() {
			if err := rm.debug(ctx, pki, "goroutine?debug=1", filepath.Join(c.out, "rm-goroutines.txt")); err != nil {
				sim.fail(err)
			}
			if err := rm.debug(ctx, pki, "allocs", filepath.Join(c.out, "rm-allocs.pprof")); err != nil {
				sim.fail(err)
			}
		})
	}
	if c.execTrace > 0 {
		time.AfterFunc(c.execTrace, func() {
			if err := rm.debug(ctx, pki, "trace?seconds=5", filepath.Join(c.out, "rm-trace.out")); err != nil {
				sim.fail(err)
			}
		})
	}
	if c.profile > 0 {
		go func() {
			if err := rm.profile(ctx, pki, c.profile, filepath.Join(c.out, "rm-cpu.pprof")); err != nil {
				sim.fail(err)
			}
		}()
		go func() {
			if err := profileSelf(ctx, c.profile, filepath.Join(c.out, "sim-cpu.pprof")); err != nil {
				sim.fail(err)
			}
		}()
	}
	select {
	case <-ctx.Done():
	case <-time.After(c.duration):
	}
	sampler.stop()
	<-samplerDone
	if text, err := rm.metrics(ctx, pki); err == nil {
		rep.rmMetrics = text
	} else {
		sim.fail(err)
	}
	rep.finish(sim, rm, start)
	return rep.write(c.out)
}

// profileSelf saves the simulator's own CPU profile over d to path: what
// the simulated side costs the machine the RM shares.
func profileSelf(ctx context.Context, d time.Duration, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	pprof.StopCPUProfile()
	return f.Close()
}
