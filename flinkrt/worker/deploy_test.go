package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"loom/flinkrt/network"
	"loom/flinkrt/stream"
	"loom/flinkrt/stream/sink"
	"loom/flinkrt/stream/source"
	"loom/flinkrt/worker"
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
	var servers [2]*network.Server
	for i := range servers {
		if servers[i], err = network.Listen("127.0.0.1:0", ""); err != nil {
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
