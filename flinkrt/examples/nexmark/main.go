// nexmark runs a query of the Nexmark benchmark over its generated
// events: persons, auctions and bids, deterministic by seed. Run
// directly, it prints the events per second it took (the generator's
// alone with --query gen).
//
//	nexmark [--query q0|q1|q2|q3|q4|q5|q7|q8|gen] [--events 10000000] [--rate 10000000] [--seed 1] [--output DIR | --discard]
//	loom run -t per-job -p 4 bin/examples/nexmark --query q5 --events 100000000 --discard
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/loom-project/loom/flinkrt/nexmark"
	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
)

func main() {
	query := flag.String("query", "q0", "the query: q0, q1, q2, q3, q4, q5, q7, q8, or gen (the generator alone, its events dropped)")
	events := flag.Int64("events", 10_000_000, "events to generate (-1: no end)")
	rate := flag.Float64("rate", 10_000_000, "events per second of event time")
	seed := flag.Uint64("seed", 1, "the generator's seed: the same seed makes the same events")
	output := flag.String("output", "", "directory to write the results to (default: stdout)")
	discard := flag.Bool("discard", false, "drop the results (benchmarks)")
	flag.Parse()

	c := nexmark.DefaultConfig(*events)
	c.Rate, c.Seed = *rate, *seed
	if err := c.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "nexmark:", err)
		os.Exit(2)
	}
	env := stream.NewEnv()
	evs := nexmark.Events(env, c)
	if *query == "gen" {
		stream.Sink(evs, "discard", sink.Discard[nexmark.Event]())
	} else {
		q, ok := nexmark.Queries[*query]
		if !ok {
			names := []string{"gen"}
			for n := range nexmark.Queries {
				names = append(names, n)
			}
			slices.Sort(names)
			fmt.Fprintf(os.Stderr, "nexmark: no query %q: want one of %s\n", *query, strings.Join(names, ", "))
			os.Exit(2)
		}
		q(evs, *output, *discard)
	}
	start := time.Now()
	if _, err := env.Execute("Nexmark " + *query); err != nil {
		fmt.Fprintln(os.Stderr, "nexmark:", err)
		os.Exit(1)
	}
	took := time.Since(start)
	if *events > 0 {
		fmt.Fprintf(os.Stderr, "nexmark %s: %d events at parallelism %d in %.2fs: %.0f events/s\n", *query, *events, env.Parallelism(), took.Seconds(), float64(*events)/took.Seconds())
	}
}
