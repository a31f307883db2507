package stream_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"loom/flinkrt/stream"
	"loom/flinkrt/stream/sink"
	"loom/flinkrt/stream/source"
)

// counter counts the records of its own subtask, as a Flink
// RichMapFunction with a field would.
type counter struct {
	n       int
	subtask int
	opened  bool
	report  func(subtask, n int, name string)
	name    string
}

func (c *counter) Open(ctx *stream.RuntimeContext) error {
	c.subtask, c.opened, c.name = ctx.Subtask(), true, ctx.TaskNameWithSubtask()
	if ctx.Parallelism() != 2 {
		return errors.New("want parallelism 2")
	}
	return nil
}

func (c *counter) Map(v int64) (int64, error) {
	if !c.opened {
		return 0, errors.New("Map before Open")
	}
	c.n++
	return v, nil
}

func (c *counter) Close() error {
	c.report(c.subtask, c.n, c.name)
	return nil
}

// Two subtasks of one Map in one process: each has its own function, and
// counts its own 100,000 records, as in Flink, however the job is
// deployed.
func TestEachSubtaskHasItsOwnFunction(t *testing.T) {
	var mu sync.Mutex
	counts := map[int]int{}
	var names []string
	report := func(subtask, n int, name string) {
		mu.Lock()
		defer mu.Unlock()
		counts[subtask] += n
		names = append(names, name)
	}
	env := stream.NewEnv().SetParallelism(2)
	src := stream.FromSource(env, "seq", source.Sequence(1, 200_000))
	counted := stream.MapWith(src, "count", func() stream.MapFunction[int64, int64] { return &counter{report: report} })
	kept := stream.FilterWith(counted, "even", func() stream.FilterFunction[int64] { return evens{} })
	split := stream.FlatMapWith(kept, "twice", func() stream.FlatMapFunction[int64, int64] { return twice{} })
	out := sink.Collect[int64]()
	stream.Sink(split, "out", out)
	if _, err := env.Execute(t.Name()); err != nil {
		t.Fatal(err)
	}
	if counts[0] != 100_000 || counts[1] != 100_000 || len(counts) != 2 {
		t.Fatalf("records counted by subtask: %v, want 100000 each of 0 and 1", counts)
	}
	slices.Sort(names)
	if len(names) != 2 || !strings.HasSuffix(names[0], "(1/2)#0") || !strings.HasSuffix(names[1], "(2/2)#0") {
		t.Errorf("task names: %q", names)
	}
	if n := len(out.Values()); n != 200_000 {
		t.Errorf("%d records out of filter and flat map, want 200000 (half kept, each twice)", n)
	}
}

type evens struct{}

func (evens) Filter(v int64) (bool, error) { return v%2 == 0, nil }

type twice struct{}

func (twice) FlatMap(v int64, out stream.Collector[int64]) error {
	out.Collect(v)
	out.Collect(v)
	return nil
}

// failing fails on one record.
type failing struct{}

func (failing) Map(v int64) (int64, error) {
	if v == 500 {
		return 0, errors.New("record 500 is bad")
	}
	return v, nil
}

// A function's error fails the job with it as the cause; a function that
// cannot open fails it before any record.
func TestAFunctionsErrorFailsTheJob(t *testing.T) {
	env := stream.NewEnv().SetParallelism(1)
	bad := stream.MapWith(stream.FromSource(env, "seq", source.Sequence(1, 1000)), "check", func() stream.MapFunction[int64, int64] { return failing{} })
	stream.Sink(bad, "out", sink.Discard[int64]())
	if _, err := env.Execute(t.Name()); err == nil || !strings.Contains(err.Error(), "record 500 is bad") || !strings.Contains(err.Error(), "check") {
		t.Fatalf("err = %v; want the function's error, naming the operator", err)
	}

	env = stream.NewEnv().SetParallelism(3)
	c := stream.MapWith(stream.FromSource(env, "seq", source.Sequence(1, 10)), "count", func() stream.MapFunction[int64, int64] {
		return &counter{report: func(int, int, string) {}}
	})
	stream.Sink(c, "out", sink.Discard[int64]())
	if _, err := env.Execute(t.Name()); err == nil || !strings.Contains(err.Error(), "want parallelism 2") || !strings.Contains(err.Error(), "opening its function") {
		t.Fatalf("err = %v; want Open's error", err)
	}
}

// windowCounter is a ProcessWindowFunction with a field of its own.
type windowCounter struct {
	fired   int
	subtask int
	report  func(subtask, fired int)
}

func (c *windowCounter) Open(ctx *stream.RuntimeContext) error {
	c.subtask = ctx.Subtask()
	return nil
}

func (c *windowCounter) Process(ctx *stream.WindowContext, key string, elems []ev, out stream.Collector[winResult]) error {
	c.fired++
	w := ctx.Window()
	if ctx.CurrentWatermark() < w.MaxTimestamp() {
		return errors.New("an event-time window fired before the watermark passed it")
	}
	describeWindows(key, w, elems, out)
	return nil
}

func (c *windowCounter) Close() error {
	c.report(c.subtask, c.fired)
	return nil
}

// A ProcessWindowFunction of each subtask its own, told its window and
// the watermark that fired it.
func TestProcessWindowWithAFunctionPerSubtask(t *testing.T) {
	var mu sync.Mutex
	fired := map[int]int{}
	env := stream.NewEnv().SetParallelism(2)
	var evs []ev
	for i := range 40 {
		evs = append(evs, ev{Key: string(rune('a' + i%2)), Value: 1, Time: int64(i) * 100})
	}
	w := stream.Window(stream.KeyBy(events(env, evs, nil), keyOf), stream.TumblingEventTimeWindows(time.Second))
	got := run(t, env, stream.ProcessWindowWith(w, "count", func() stream.ProcessWindowFunction[string, ev, winResult] {
		return &windowCounter{report: func(subtask, n int) { mu.Lock(); fired[subtask] += n; mu.Unlock() }}
	}))
	// Keys a and b in turn, records at 0..3900 ms: windows [0,1000) ..
	// [3000,4000) of 5 records each.
	if len(got) != 8 {
		t.Fatalf("%d windows fired, want 8 (2 keys, 4 windows)", len(got))
	}
	for _, r := range got {
		if r.Count != 5 || r.End-r.Start != 1000 {
			t.Errorf("window %s: %d records, want 5", fmtWin(r), r.Count)
		}
	}
	if fired[0]+fired[1] != 8 || len(fired) != 2 {
		t.Errorf("windows fired by subtask: %v", fired)
	}
}

// firings counts, in per-window state, how often a window fired, and in
// global state, how often any window of its key did.
type firings struct{}

func (firings) Process(ctx *stream.WindowContext, key string, elems []ev, out stream.Collector[string]) error {
	perWindow := stream.WindowValueState[int, string](ctx, "fired")
	global := stream.GlobalValueState[int, string](ctx, "fired")
	n, _ := perWindow.Get()
	perWindow.Update(n + 1)
	g, _ := global.Get()
	global.Update(g + 1)
	out.Collect(fmt.Sprintf("%s@%d window#%d key#%d n=%d", key, ctx.Window().Start, n+1, g+1, len(elems)))
	return nil
}

// A process window function's per-window state lives as long as its
// window (here fired again by a late record), its global state as long
// as its key.
func TestProcessWindowPerWindowAndGlobalState(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	evs := []ev{{"a", 1, 100}, {"a", 1, 200}, {"a", 1, 300}, {"a", 1, 1100}}
	w := stream.Window(stream.KeyBy(events(env, evs, map[int]int64{1: 1000}), keyOf), stream.TumblingEventTimeWindows(time.Second)).
		AllowedLateness(time.Second)
	got := run(t, env, stream.ProcessWindowWith(w, "firings", func() stream.ProcessWindowFunction[string, ev, string] { return firings{} }))
	slices.Sort(got)
	// [0,1000) fires at watermark 1000 with 2 records, again for the late
	// one at 300; [1000,2000) fires at the end. Its key has fired three
	// times by then.
	want := []string{"a@0 window#1 key#1 n=2", "a@0 window#2 key#2 n=3", "a@1000 window#1 key#3 n=1"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

// counting counts its records in a user accumulator.
type counting struct{ seen stream.Counter }

func (c *counting) Open(ctx *stream.RuntimeContext) (err error) {
	c.seen, err = ctx.Counter("seen")
	return err
}

func (c *counting) Map(v int64) (int64, error) {
	c.seen.Add(1)
	return v, nil
}

// A user accumulator is summed over the job's subtasks into its result,
// as Flink's getAccumulatorResult.
func TestAccumulators(t *testing.T) {
	env := stream.NewEnv().SetParallelism(3)
	counted := stream.MapWith(stream.FromSource(env, "seq", source.Sequence(1, 5000)), "count", func() stream.MapFunction[int64, int64] { return &counting{} })
	stream.Sink(counted, "out", sink.Discard[int64]())
	res, err := env.Execute(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Accumulators["seen"]; got != 5000 {
		t.Fatalf("accumulator seen = %d (%v), want 5000", got, res.Accumulators)
	}
}
