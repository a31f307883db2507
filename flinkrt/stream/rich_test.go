package stream_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/state"
	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
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

// average is Flink's CountWindowAverage: a flat map on a keyed stream
// that keeps each key's count and sum in value state and emits the
// average every two records.
type average struct {
	sum    *state.Value[int, [2]int64]
	closed *atomic.Int32
}

func (a *average) Open(ctx *stream.RuntimeContext) error {
	kc, err := stream.KeyedRuntime[int](ctx)
	if err != nil {
		return err
	}
	a.sum = stream.ValueState[[2]int64](kc, "average")
	return nil
}

func (a *average) FlatMap(v [2]int64, out stream.Collector[string]) error {
	cur, _ := a.sum.Get()
	cur[0]++
	cur[1] += v[1]
	if cur[0] < 2 {
		a.sum.Update(cur)
		return nil
	}
	a.sum.Clear()
	out.Collect(fmt.Sprintf("(%d,%d)", v[0], cur[1]/cur[0]))
	return nil
}

func (a *average) Close() error {
	a.closed.Add(1)
	return nil
}

// A rich function on a keyed stream keeps state per key through its
// RuntimeContext, as Flink's RichFlatMapFunction with getState, at p2.
func TestKeyedRichFunctionKeepsStateByKey(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	in := [][2]int64{{1, 3}, {2, 10}, {1, 5}, {1, 7}, {2, 20}, {1, 4}, {1, 2}, {2, 30}}
	src := stream.FromSource(env, "in", source.Generator(int64(len(in)), func(i int64) [2]int64 { return in[i] })).SetParallelism(1)
	var closed atomic.Int32
	keyed := stream.KeyBy(src, func(v [2]int64) int { return int(v[0]) })
	avg := stream.KeyedFlatMapWith(keyed, "average", func() stream.FlatMapFunction[[2]int64, string] { return &average{closed: &closed} })
	got := run(t, env, avg)
	slices.Sort(got)
	// Flink's documented output for key 1: (1,4) and (1,5); key 2 has
	// one pair, its third record waits.
	if want := []string{"(1,4)", "(1,5)", "(2,15)"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if closed.Load() != 2 {
		t.Errorf("Close called %d times, want once per subtask", closed.Load())
	}
}

// Keyed state off a keyed stream, or by another key type, fails the job
// with a reason.
func TestKeyedRuntimeNeedsAKeyedStream(t *testing.T) {
	env := stream.NewEnv()
	src := stream.FromSource(env, "in", source.Generator(1, func(int64) [2]int64 { return [2]int64{1, 2} }))
	bad := stream.FlatMapWith(src, "average", func() stream.FlatMapFunction[[2]int64, string] { return &average{} })
	stream.Sink(bad, "out", sink.Discard[string]())
	if _, err := env.Execute(t.Name()); err == nil || !strings.Contains(err.Error(), "keyed state needs a keyed stream") {
		t.Fatalf("not keyed: %v", err)
	}
	env = stream.NewEnv()
	src = stream.FromSource(env, "in", source.Generator(1, func(int64) [2]int64 { return [2]int64{1, 2} }))
	byString := stream.KeyBy(src, func(v [2]int64) string { return fmt.Sprint(v[0]) })
	bad = stream.KeyedFlatMapWith(byString, "average", func() stream.FlatMapFunction[[2]int64, string] { return &average{} })
	stream.Sink(bad, "out", sink.Discard[string]())
	if _, err := env.Execute(t.Name()); err == nil || !strings.Contains(err.Error(), "keyed by string, not int") {
		t.Fatalf("keyed by another type: %v", err)
	}
}

// measured registers one metric of each kind.
type measured struct {
	seen    stream.MetricCounter
	rate    stream.Meter
	sizes   *stream.Histogram
	last    atomic.Int64
	subtask int
}

func (m *measured) Open(ctx *stream.RuntimeContext) (err error) {
	m.subtask = ctx.Subtask()
	g := ctx.Metrics().AddGroup("my group")
	if m.seen, err = g.Counter("seen"); err != nil {
		return err
	}
	if m.rate, err = g.Meter("rate"); err != nil {
		return err
	}
	if m.sizes, err = g.Histogram("values", 1000); err != nil {
		return err
	}
	return g.Gauge("last", func() float64 { return float64(m.last.Load()) })
}

func (m *measured) Map(v int64) (int64, error) {
	m.seen.Inc()
	m.rate.MarkEvent()
	m.sizes.Update(v % 10)
	m.last.Store(v)
	return v, nil
}

// A function's metrics are reported with its subtask's counts, in its
// operator's scope by Flink's names.
func TestUserMetricsAreReported(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	src := stream.FromSource(env, "seq", source.Sequence(1, 10_000))
	counted := stream.MapWith(src, "measure: values", func() stream.MapFunction[int64, int64] { return &measured{} })
	stream.Sink(counted, "out", sink.Discard[int64]())
	res, err := env.Execute(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	var ums []map[string]float64
	for _, v := range res.Vertices {
		if strings.Contains(v.Name, "measure") {
			ums = v.UserMetrics
		}
	}
	if len(ums) != 2 {
		t.Fatalf("user metrics of %d subtasks, want 2: %+v", len(ums), res.Vertices)
	}
	total := 0.0
	for i, m := range ums {
		seen := m["measure__values.my_group.seen"]
		total += seen
		if seen == 0 || m["measure__values.my_group.values_max"] != 9 || m["measure__values.my_group.values_min"] != 0 || m["measure__values.my_group.last"] == 0 {
			t.Errorf("subtask %d's metrics: %v", i, m)
		}
		if _, ok := m["measure__values.my_group.rate"]; !ok {
			t.Errorf("subtask %d has no meter: %v", i, m)
		}
	}
	if total != 10_000 {
		t.Errorf("records counted %v, want 10000", total)
	}
}
