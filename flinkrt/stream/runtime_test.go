package stream_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
	"github.com/loom-project/loom/flinkrt/task"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCancelStopsAnEndlessJob(t *testing.T) {
	before := runtime.NumGoroutine()
	env := stream.NewEnv().SetParallelism(2)
	var seen atomic.Int64
	src := stream.FromSource(env, "endless", source.Generator(-1, func(i int64) int64 { return i }))
	counted := stream.Map(src.Rebalance(), "count", func(v int64) int64 { seen.Add(1); return v })
	stream.Sink(counted, "out", sink.Discard[int64]())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var res *stream.JobResult
	go func() {
		var err error
		res, err = env.ExecuteContext(ctx, "endless")
		done <- err
	}()
	waitFor(t, 10*time.Second, "records to flow", func() bool { return seen.Load() > 10000 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, task.ErrCanceled) || res.State != "CANCELED" {
			t.Fatalf("err = %v, state %s; want canceled", err, res.State)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not stop after cancel")
	}
	waitFor(t, 5*time.Second, "the job's goroutines to end", func() bool { return runtime.NumGoroutine() <= before+1 })
}

func TestAFailingTaskFailsTheJobWithItsRootCause(t *testing.T) {
	env := stream.NewEnv().SetParallelism(3)
	src := stream.FromSource(env, "endless", source.Generator(-1, func(i int64) int64 { return i }))
	boom := stream.Map(src.Rebalance(), "boom", func(v int64) int64 {
		if v == 5000 {
			panic("bad record 5000")
		}
		return v
	})
	stream.Sink(boom, "out", sink.Discard[int64]())
	res, err := env.ExecuteContext(context.Background(), "failing")
	if err == nil || !strings.Contains(err.Error(), "bad record 5000") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v; want the panic of the boom operator as the root cause", err)
	}
	if res.State != "FAILED" {
		t.Fatalf("state %s", res.State)
	}
}

func TestSinkErrorFailsTheJob(t *testing.T) {
	env := stream.NewEnv().SetParallelism(1)
	src := stream.FromSource(env, "seq", source.Sequence(1, 10))
	stream.Sink(src, "files", sink.TextFile[int64]("/proc/not-a-dir/out"))
	if _, err := env.ExecuteContext(context.Background(), "bad-sink"); err == nil || !strings.Contains(err.Error(), "text sink") {
		t.Fatalf("err = %v", err)
	}
}

// A slow sink must slow the source down: credits bound what is in flight,
// so the heap stays flat however far the source could run ahead.
func TestBackpressureBoundsMemory(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	var produced, consumed atomic.Int64
	src := stream.FromSource(env, "fast", source.Generator(-1, func(i int64) [64]int64 {
		produced.Add(1)
		return [64]int64{i}
	}))
	slow := stream.Map(src.Rebalance(), "slow", func(v [64]int64) int64 {
		if consumed.Add(1)%1000 == 0 {
			time.Sleep(time.Millisecond)
		}
		return v[0]
	})
	stream.Sink(slow, "out", sink.Discard[int64]())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := env.ExecuteContext(ctx, "backpressure"); done <- err }()

	waitFor(t, 20*time.Second, "the consumer to take 200k records", func() bool { return consumed.Load() > 200_000 })
	// In flight: per channel 4 credits of 512 records, 2×2 channels, plus
	// one batch being filled per channel and one being read per consumer.
	const bound = 2 * 2 * (4 + 1) * 512
	for i := 0; i < 20; i++ {
		if ahead := produced.Load() - consumed.Load(); ahead > bound+2*512 {
			t.Fatalf("the source ran %d records ahead of a slow sink; credits should bound it to %d", ahead, bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
