// Command clusterbench measures a local cluster of real processes:
// `cluster up` until every node is RUNNING, and distributed shells from
// submission until their containers run and until they finish. It prints
// medians; docs/BENCHMARKS.md records them.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/loom-project/loom/am/dshell"
	"github.com/loom-project/loom/localcluster"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/scripts/benchutil"
)

func main() {
	bin := flag.String("loom", "bin/loom", "the loom binary")
	runs := flag.Int("runs", 10, "runs per figure (the median is printed)")
	nodes := flag.Int("nodes", 3, "NodeManagers")
	port := flag.Int("port", 19032, "RM port (raft uses port + 2)")
	replicas := flag.Int("rm-replicas", 1, "ResourceManager replicas (1, 3 or 5; replica i on the ports + 100*i)")
	flag.Parse()
	abs, err := filepath.Abs(*bin)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()

	var ups []time.Duration
	for i := 0; i < *runs; i++ {
		c := start(ctx, abs, *nodes, *port, *replicas)
		ups = append(ups, c.Took)
		c.Stop()
	}
	report("cluster up to all nodes RUNNING", *nodes, ups)

	c := start(ctx, abs, *nodes, *port, *replicas)
	defer c.Stop()
	rm, err := rmclient.New(c.RMAddrs(), c.Client)
	if err != nil {
		fail(err)
	}
	defer rm.Close()
	for _, n := range []int{1, 20} {
		var running, finished []time.Duration
		for i := 0; i < *runs; i++ {
			running = append(running, untilRunning(ctx, rm, abs, n))
			finished = append(finished, untilFinished(ctx, rm, abs, n, "true"))
		}
		report(fmt.Sprintf("dshell %d containers: submit until all RUNNING", n), *nodes, running)
		report(fmt.Sprintf("dshell %d containers: submit until FINISHED", n), *nodes, finished)
	}
	var rates []time.Duration
	for i := 0; i < 3; i++ {
		rates = append(rates, untilFinished(ctx, rm, abs, 200, "/bin/true"))
	}
	d := median(rates)
	fmt.Printf("%-58s %8.0f containers/s  (200 containers of /bin/true, median of 3: %s)\n", "dshell 200 containers end to end", 200/d.Seconds(), d.Round(time.Millisecond))
}

func start(ctx context.Context, bin string, nodes, port, replicas int) *localcluster.Cluster {
	dir, err := os.MkdirTemp("", "loom-bench-")
	if err != nil {
		fail(err)
	}
	cfg := localcluster.DefaultConfig()
	cfg.Binary = bin
	cfg.Dir = dir
	cfg.Nodes = nodes
	cfg.RMReplicas = replicas
	cfg.NodeMemoryMB = 16384
	cfg.NodeVCores = 128
	cfg.RMAddr = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", port+56)
	cfg.LogLevel = "warn"
	c, err := localcluster.Start(ctx, cfg)
	if err != nil {
		fail(err)
	}
	return c
}

func submit(ctx context.Context, rm *rmclient.Client, bin string, n int, cmd ...string) string {
	id, err := dshell.Submit(ctx, rm, dshell.Options{NumContainers: n, MemoryMB: 64, VCores: 1, Command: cmd, LoomBinary: bin})
	if err != nil {
		fail(err)
	}
	return id
}

// untilRunning is benchutil.UntilRunning, failing the run on an error.
func untilRunning(ctx context.Context, rm *rmclient.Client, bin string, n int) time.Duration {
	d, err := benchutil.UntilRunning(ctx, rm, bin, n, 64)
	if err != nil {
		fail(err)
	}
	return d
}

func untilFinished(ctx context.Context, rm *rmclient.Client, bin string, n int, cmd string) time.Duration {
	start := time.Now()
	id := submit(ctx, rm, bin, n, cmd)
	r, err := rm.WaitFinished(ctx, id, nil)
	if err != nil {
		fail(err)
	}
	if r.FinalStatus != yarnpb.FinalStatus_SUCCEEDED {
		fail(fmt.Errorf("%s: %s %s", id, r.FinalStatus, r.Diagnostics))
	}
	return time.Since(start)
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func report(what string, nodes int, ds []time.Duration) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	fmt.Printf("%-58s %8s median  (min %s, max %s, %d runs, %d NMs)\n", what, median(ds).Round(time.Millisecond),
		s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(ds), nodes)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "clusterbench:", err)
	os.Exit(1)
}
