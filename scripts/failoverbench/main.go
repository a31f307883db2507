// Command failoverbench measures how fast a cluster of three
// ResourceManager replicas (`cluster up --rm-replicas 3`) serves again
// after its leader is killed -9. A distributed shell of many short
// containers keeps its AM waiting for containers throughout. Each run
// kills the leader and times, from the kill: a new dshell submission
// accepted (NewApplication and SubmitApplication answered by the new
// leader), and the first container allocated to the waiting AM by the
// new leader. Then it waits for the killed replica to be started again
// by the supervisor and to rejoin, and runs again. It prints the median
// and maximum of each (docs/BENCHMARKS.md, "RM failover").
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/loom-project/loom/am/dshell"
	"github.com/loom-project/loom/localcluster"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

func main() {
	bin := flag.String("loom", "bin/loom", "the loom binary")
	runs := flag.Int("runs", 10, "leader kills")
	port := flag.Int("port", 21032, "first replica's RM port (replica i uses port + 100*i; raft + 2, HTTP + 56)")
	flag.Parse()
	abs, err := filepath.Abs(*bin)
	check(err)
	dir, err := os.MkdirTemp("", "loom-failover-")
	check(err)
	defer os.RemoveAll(dir)
	cfg := localcluster.DefaultConfig()
	cfg.Binary, cfg.Dir, cfg.LogLevel = abs, filepath.Join(dir, "cluster"), "warn"
	cfg.RMReplicas = 3
	cfg.RMAddr, cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", *port), fmt.Sprintf("127.0.0.1:%d", *port+56)
	c, err := localcluster.Start(context.Background(), cfg)
	check(err)
	defer c.Stop()
	c.Supervise(os.Stderr)
	rm, err := rmclient.New(c.RMAddrs(), c.Client)
	check(err)
	defer rm.Close()
	rm.RetryFor = time.Minute
	ctx := context.Background()

	waiter, err := dshell.Submit(ctx, rm, dshell.Options{Name: "waiter", NumContainers: 1_000_000, MemoryMB: 32, VCores: 1, Command: []string{"/bin/true"}, LoomBinary: abs})
	check(err)
	defer func() { _, _ = rm.Kill(context.Background(), waiter, "benchmark over") }()
	count := func() int {
		r, err := rm.Report(ctx, waiter, true)
		check(err)
		if r.State >= yarnpb.AppState_APP_FINISHED {
			fail(fmt.Errorf("the waiting dshell ended: %s", r.Diagnostics))
		}
		return len(r.Containers)
	}
	for deadline := time.Now().Add(time.Minute); count() < 20; {
		if time.Now().After(deadline) {
			fail(fmt.Errorf("the waiting dshell got no containers"))
		}
		time.Sleep(50 * time.Millisecond)
	}

	var accepted, allocated []time.Duration
	for run := 1; run <= *runs; run++ {
		leader, pid := leaderOf(ctx, rm, c)
		before := count()
		killed := time.Now()
		check(syscall.Kill(pid, syscall.SIGKILL))

		got := make(chan time.Duration, 1)
		go func() {
			for count() <= before {
				time.Sleep(5 * time.Millisecond)
			}
			got <- time.Since(killed)
		}()
		sub := dshell.Options{Name: "after-failover", NumContainers: 1, MemoryMB: 32, VCores: 1, Command: []string{"/bin/true"}, LoomBinary: abs}
		id, err := dshell.Submit(ctx, rm, sub)
		check(err)
		acc := time.Since(killed)
		alloc := <-got
		_, _ = rm.Kill(ctx, id, "measured")
		accepted, allocated = append(accepted, acc), append(allocated, alloc)
		fmt.Printf("run %2d: leader %s killed; submission accepted after %4d ms, first container to the waiting AM after %4d ms\n",
			run, leader, acc.Milliseconds(), alloc.Milliseconds())
		waitRejoined(ctx, c, leader)
	}
	fmt.Printf("leader kill -9 -> new dshell accepted: median %d ms, max %d ms (%d runs)\n", median(accepted).Milliseconds(), slicesMax(accepted).Milliseconds(), len(accepted))
	fmt.Printf("leader kill -9 -> first container allocated to a waiting AM: median %d ms, max %d ms\n", median(allocated).Milliseconds(), slicesMax(allocated).Milliseconds())
}

// leaderOf is the leading replica's address and process id.
func leaderOf(ctx context.Context, rm *rmclient.Client, c *localcluster.Cluster) (string, int) {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st, err := rm.ServiceState(ctx)
		if err != nil || st.LeaderAddress == "" {
			continue
		}
		for i, addr := range c.RMAddrs() {
			if addr == st.LeaderAddress {
				return addr, c.RMs[i].Pid()
			}
		}
	}
	fail(fmt.Errorf("no leader"))
	return "", 0
}

// waitRejoined waits until the replica at addr answers again as a member
// of the cluster that has applied what the leader has.
func waitRejoined(ctx context.Context, c *localcluster.Cluster, addr string) {
	one, err := rmclient.New([]string{addr}, c.Client)
	check(err)
	defer one.Close()
	one.RetryFor = 0
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		st, err := one.ServiceState(ctx)
		if err == nil && st.InCluster && st.LeaderAddress != "" && st.LeaderAddress != addr && st.AppliedIndex > 0 {
			return
		}
	}
	fail(fmt.Errorf("%s did not rejoin", addr))
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func slicesMax(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func check(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "failoverbench:", err)
	os.Exit(1)
}
