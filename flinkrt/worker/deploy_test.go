package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/network"
	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
	"github.com/loom-project/loom/flinkrt/worker"
)

type wordCount struct {
	Word  string
	Count int
}

// Two deployments of one job, each with its own data server, exchange
// records over TCP: the keyed counts come out as a plain count.
func TestDeploymentsExchangeOverTCP(t *testing.T) {
	const lines = 2000
	text := func(i int64) string { return fmt.Sprintf("w%d w%d common", i%17, i%5) }
	want := map[string]int{}
	for i := int64(0); i < lines; i++ {
		for _, w := range strings.Fields(text(i)) {
			want[w]++
		}
	}

	env := stream.NewEnv().SetParallelism(2)
	src := stream.FromSource(env, "lines", source.Generator(lines, text))
	words := stream.FlatMap(src, "split", func(line string, out stream.Collector[wordCount]) {
		for _, w := range strings.Fields(line) {
			out.Collect(wordCount{w, 1})
		}
	})
	counts := stream.Sum(stream.KeyBy(words, func(wc wordCount) string { return wc.Word }), "Count")
	collected := sink.Collect[wordCount]()
	stream.Sink(counts, "collect", collected)
	sg, jg, err := env.Plan("split wordcount")
	if err != nil {
		t.Fatal(err)
	}
	if len(jg.Vertices) != 2 {
		t.Fatalf("want 2 vertices (source chain, keyed sum), got %d", len(jg.Vertices))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	trust := testTrust(t)
	var servers [2]*network.Server
	for i := range servers {
		if servers[i], err = network.Listen("127.0.0.1:0", "", trust.ServerTLS(), trust.ClientTLS()); err != nil {
			t.Fatal(err)
		}
		defer servers[i].Close()
	}
	// Subtask s of every vertex runs in worker s.
	locations := make([][]string, len(jg.Vertices))
	for v := range locations {
		locations[v] = []string{servers[0].Addr(), servers[1].Addr()}
	}
	job := &worker.Job{Graph: sg, Plan: jg, InProcess: true}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for w := range servers {
		d := worker.Deployment{JobID: "job", Locations: locations}
		for v := range jg.Vertices {
			d.Tasks = append(d.Tasks, worker.Subtask{Vertex: v, Index: w})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = worker.RunDeployment(ctx, job, d, servers[w], nil)
		}()
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", w, err)
		}
	}
	got := map[string]int{}
	for _, wc := range collected.Values() {
		got[wc.Word] = max(got[wc.Word], wc.Count)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d words, want %d", len(got), len(want))
	}
	for w, n := range want {
		if got[w] != n {
			t.Errorf("%s: got %d, want %d", w, got[w], n)
		}
	}
}

// A chained pipeline of parallelism 2 is two regions: a subtask that fails
// cancels nothing of the other region, which runs to its end; a subtask
// stopped through Stops ends CANCELED, alone.
func TestAFailureStaysInItsRegion(t *testing.T) {
	trust := testTrust(t)
	srv, err := network.Listen("127.0.0.1:0", "", trust.ServerTLS(), trust.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// run runs numbers 1..count through a map that fails on failAt, in
	// two subtasks; stop, if set, is stopped once running. It returns the
	// subtasks' final states and how many numbers reached the sink.
	run := func(count, failAt int64, stop *worker.Subtask) (map[int]string, int) {
		env := stream.NewEnv().SetParallelism(2)
		nums := stream.FromSource(env, "numbers", source.Sequence(1, count))
		checked := stream.Map(nums, "check", func(n int64) int64 {
			if n == failAt {
				panic("the number to fail at")
			}
			return n
		})
		collected := sink.Collect[int64]()
		stream.Sink(checked, "collect", collected)
		sg, jg, err := env.Plan("regions")
		if err != nil {
			t.Fatal(err)
		}
		if len(jg.Vertices) != 1 {
			t.Fatalf("want one chained vertex, got %d", len(jg.Vertices))
		}
		stops := worker.NewStops()
		d := worker.Deployment{JobID: "job", Locations: [][]string{{srv.Addr(), srv.Addr()}}, Stops: stops,
			Tasks: []worker.Subtask{{Vertex: 0, Index: 0, Region: 0}, {Vertex: 0, Index: 1, Region: 1}}}
		var mu sync.Mutex
		final := map[int]string{}
		report := func(u worker.Update) {
			mu.Lock()
			defer mu.Unlock()
			if u.State == worker.StateFinished || u.State == worker.StateCanceled || u.State == worker.StateFailed {
				final[u.Subtask.Index] = u.State
			}
			if stop != nil && u.State == worker.StateRunning && u.Subtask.Index == stop.Index {
				stops.Stop(*stop)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = worker.RunDeployment(ctx, &worker.Job{Graph: sg, Plan: jg, InProcess: true}, d, srv, report)
		return final, len(collected.Values())
	}
	// Sequence gives subtask 0 the first half: 7 fails it.
	got, n := run(2000, 7, nil)
	if got[0] != worker.StateFailed || got[1] != worker.StateFinished {
		t.Fatalf("final states %v: want subtask 0 FAILED, subtask 1 FINISHED", got)
	}
	if n < 1000 {
		t.Fatalf("the region that did not fail wrote %d numbers, want its 1000", n)
	}
	// Subtask 1 is stopped before it emits: subtask 0 still sends all of
	// its half.
	got, n = run(2_000_000, -1, &worker.Subtask{Vertex: 0, Index: 1})
	if got[0] != worker.StateFinished || got[1] != worker.StateCanceled {
		t.Fatalf("final states %v: want subtask 0 FINISHED, subtask 1 CANCELED", got)
	}
	if n < 1_000_000 || n == 2_000_000 {
		t.Fatalf("%d numbers reached the sink, want subtask 0's 1000000 and not all of subtask 1's", n)
	}
}

func testTrust(t *testing.T) *auth.Trust {
	t.Helper()
	tr, err := auth.FromSecret(auth.NewSecret(), "")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
