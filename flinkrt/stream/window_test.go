package stream_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
)

type ev struct {
	Key   string
	Value int
	Time  int64
}

// events emits evs with their times, and a watermark after each record
// listed in marks (index -> watermark).
func events(env *stream.Env, evs []ev, marks map[int]int64) stream.DataStream[ev] {
	return stream.FromSource(env, "events", source.Func("events", func(ctx source.Context[ev]) error {
		for i, e := range evs {
			ctx.CollectWithTimestamp(e, e.Time)
			if wm, ok := marks[i]; ok {
				ctx.EmitWatermark(wm)
			}
		}
		return nil
	}))
}

func keyOf(e ev) string { return e.Key }

func run[T any](t *testing.T, env *stream.Env, s stream.DataStream[T]) []T {
	t.Helper()
	out := sink.Collect[T]()
	stream.Sink(s, "collect", out)
	if _, err := env.ExecuteContext(context.Background(), t.Name()); err != nil {
		t.Fatal(err)
	}
	return out.Values()
}

func sortedStrings[T any](vs []T, f func(T) string) []string {
	var out []string
	for _, v := range vs {
		out = append(out, f(v))
	}
	slices.Sort(out)
	return out
}

type winResult struct {
	Key        string
	Start, End int64
	Sum, Count int
}

func describeWindows(key string, w stream.TimeWindow, elems []ev, out stream.Collector[winResult]) {
	r := winResult{Key: key, Start: w.Start, End: w.End, Count: len(elems)}
	for _, e := range elems {
		r.Sum += e.Value
	}
	out.Collect(r)
}

func fmtWin(r winResult) string {
	return fmt.Sprintf("%s[%d,%d) sum=%d n=%d", r.Key, r.Start, r.End, r.Sum, r.Count)
}

func TestTumblingEventTimeWindows(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	var evs []ev
	for i := 0; i < 30; i++ {
		evs = append(evs, ev{Key: []string{"a", "b"}[i%2], Value: i, Time: int64(i)})
	}
	w := stream.Window(stream.KeyBy(events(env, evs, nil), keyOf), stream.TumblingEventTimeWindows(10*time.Millisecond))
	got := run(t, env, stream.ProcessWindow(w, "windows", describeWindows))
	want := []string{
		"a[0,10) sum=20 n=5", "a[10,20) sum=70 n=5", "a[20,30) sum=120 n=5",
		"b[0,10) sum=25 n=5", "b[10,20) sum=75 n=5", "b[20,30) sum=125 n=5",
	}
	if g := sortedStrings(got, fmtWin); !slices.Equal(g, want) {
		t.Fatalf("got %q\nwant %q", g, want)
	}
}

func TestWindowReduceAndSumFireAtTheWatermark(t *testing.T) {
	env := stream.NewEnv().SetParallelism(1)
	evs := []ev{{"a", 1, 1}, {"a", 2, 5}, {"a", 4, 12}, {"a", 8, 3}}
	// The watermark after the third record closes [0,10); the fourth
	// record (time 3) comes after it and is late: dropped.
	w := stream.Window(stream.KeyBy(events(env, evs, map[int]int64{2: 11}), keyOf), stream.TumblingEventTimeWindows(10*time.Millisecond))
	got := run(t, env, w.Sum("Value"))
	if len(got) != 2 || got[0].Value != 3 || got[1].Value != 4 {
		t.Fatalf("got %+v, want sums 3 (late record dropped) then 4", got)
	}
	// A result carries the first record's other fields, as Flink's sum.
	if got[0].Time != 1 {
		t.Fatalf("sum result %+v does not keep the first record's fields", got[0])
	}
}

func TestSlidingWindowsCountEachRecordTwice(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	var evs []ev
	for i := 0; i < 20; i++ {
		evs = append(evs, ev{Key: "k", Value: 1, Time: int64(i)})
	}
	w := stream.Window(stream.KeyBy(events(env, evs, nil), keyOf), stream.SlidingEventTimeWindows(10*time.Millisecond, 5*time.Millisecond))
	count := stream.AggregateFunction[ev, int, int]{
		Create: func() int { return 0 },
		Add:    func(acc int, _ ev) int { return acc + 1 },
		Result: func(acc int) int { return acc },
		Merge:  func(a, b int) int { return a + b },
	}
	got := run(t, env, stream.Aggregate(w, "count", count))
	slices.Sort(got)
	// Windows [-5,5) [0,10) [5,15) [10,20) [15,25): 5, 10, 10, 10, 5.
	if !slices.Equal(got, []int{5, 5, 10, 10, 10}) {
		t.Fatalf("got %v", got)
	}
}

func TestSessionWindowsMerge(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	evs := []ev{
		{"a", 1, 0}, {"b", 1, 1}, {"a", 1, 10}, {"a", 1, 3}, // a: 0,3 merge; 10 apart until 6 joins
		{"a", 1, 6}, {"a", 1, 30}, {"b", 1, 4},
	}
	w := stream.Window(stream.KeyBy(events(env, evs, nil), keyOf), stream.EventTimeSessionWindows(5*time.Millisecond))
	got := run(t, env, stream.ProcessWindow(w, "sessions", describeWindows))
	want := []string{"a[0,15) sum=4 n=4", "a[30,35) sum=1 n=1", "b[1,9) sum=2 n=2"}
	if g := sortedStrings(got, fmtWin); !slices.Equal(g, want) {
		t.Fatalf("got %q\nwant %q", g, want)
	}
}

func TestCountWindows(t *testing.T) {
	var evs []ev
	for i := 1; i <= 10; i++ {
		evs = append(evs, ev{Key: "k", Value: i, Time: int64(i)})
	}
	t.Run("tumbling", func(t *testing.T) {
		env := stream.NewEnv().SetParallelism(1)
		w := stream.Window(stream.KeyBy(events(env, evs, nil), keyOf), stream.GlobalWindows()).
			Trigger(stream.PurgingTrigger(stream.CountTrigger[ev](3)))
		got := run(t, env, w.Sum("Value"))
		var sums []int
		for _, e := range got {
			sums = append(sums, e.Value)
		}
		if !slices.Equal(sums, []int{6, 15, 24}) {
			t.Fatalf("sums %v, want 6 15 24 (the tenth record never fills a window)", sums)
		}
	})
	t.Run("sliding with a count evictor", func(t *testing.T) {
		env := stream.NewEnv().SetParallelism(1)
		w := stream.Window(stream.KeyBy(events(env, evs, nil), keyOf), stream.GlobalWindows()).
			Trigger(stream.CountTrigger[ev](2)).Evictor(stream.CountEvictor[ev](3))
		got := run(t, env, w.Reduce("sum", func(a, b ev) ev { a.Value += b.Value; return a }))
		var sums []int
		for _, e := range got {
			sums = append(sums, e.Value)
		}
		// Fires at 2, 4, 6, 8, 10 records over the last 3.
		if !slices.Equal(sums, []int{3, 9, 15, 21, 27}) {
			t.Fatalf("sums %v", sums)
		}
	})
}

func TestDeltaTriggerWithTimeEvictor(t *testing.T) {
	env := stream.NewEnv().SetParallelism(1)
	// Distance grows by 10 per record, one record per second of event time.
	var evs []ev
	for i := 0; i < 12; i++ {
		evs = append(evs, ev{Key: "car", Value: i * 10, Time: int64(i) * 1000})
	}
	w := stream.Window(stream.KeyBy(events(env, evs, nil), keyOf), stream.GlobalWindows()).
		Evictor(stream.TimeEvictor[ev](3 * time.Second)).
		Trigger(stream.DeltaTrigger(25, func(old, new ev) float64 { return float64(new.Value - old.Value) }))
	got := run(t, env, stream.ProcessWindow(w, "recent", describeWindows))
	// Fires at distances 30, 60, 90 (delta > 25 from the last firing),
	// each over the records of the last 3 s: times t-2s..t.
	want := []string{"car[-9223372036854775808,9223372036854775807) sum=60 n=3",
		"car[-9223372036854775808,9223372036854775807) sum=150 n=3",
		"car[-9223372036854775808,9223372036854775807) sum=240 n=3"}
	slices.Sort(want)
	if g := sortedStrings(got, fmtWin); !slices.Equal(g, want) {
		t.Fatalf("got %q\nwant %q", g, want)
	}
}

// At the end of input a processing-time window not yet due emits
// nothing, as in Flink's streaming mode (FLINK-14231); an event-time
// window fires on the final watermark.
func TestProcessingTimeWindowsDoNotFireAtEndOfInput(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	src := stream.FromSource(env, "seq", source.Sequence(1, 1000))
	w := stream.Window(stream.KeyBy(src, func(v int64) int64 { return v % 3 }), stream.TumblingProcessingTimeWindows(time.Hour))
	if got := run(t, env, w.Sum("")); len(got) != 0 {
		t.Fatalf("processing-time windows an hour long emitted %v at the end of input, want nothing", got)
	}

	env = stream.NewEnv().SetParallelism(2)
	timed := stream.AssignTimestampsAndWatermarks(stream.FromSource(env, "seq", source.Sequence(1, 1000)),
		stream.ForMonotonousTimestamps(func(v int64) int64 { return v }))
	ew := stream.Window(stream.KeyBy(timed, func(v int64) int64 { return v % 3 }), stream.TumblingEventTimeWindows(time.Hour))
	total := int64(0)
	for _, v := range run(t, env, ew.Sum("")) {
		total += v
	}
	if total != 500500 {
		t.Fatalf("event-time windows summed to %d at the end of input, want 500500", total)
	}
}

// A record late for a session window is dropped, and its window leaves
// the key's sessions: a later record's session does not merge with it
// (Flink's retireWindow).
func TestLateSessionIsRetired(t *testing.T) {
	env := stream.NewEnv().SetParallelism(1)
	evs := []ev{
		{"a", 1, 100000}, // [100000,102000), fires at watermark 106000
		{"b", 1, 106500}, // takes the watermark past a's session
		{"a", 1, 104000}, // [104000,106000): late, dropped
		{"a", 1, 105500}, // [105500,107500): on time; it must not merge with the late one
	}
	w := stream.Window(stream.KeyBy(events(env, evs, map[int]int64{1: 106000}), keyOf), stream.EventTimeSessionWindows(2*time.Second))
	got := run(t, env, stream.ProcessWindow(w, "sessions", describeWindows))
	want := []string{"a[100000,102000) sum=1 n=1", "a[105500,107500) sum=1 n=1", "b[106500,108500) sum=1 n=1"}
	if g := sortedStrings(got, fmtWin); !slices.Equal(g, want) {
		t.Fatalf("got %q\nwant %q", g, want)
	}
}

// Four subtasks of one window operator in one process, each with windows
// of its own keys firing while the others add records: every window sees
// exactly its own records. (Run it under -race too.)
func TestProcessWindowAtParallelismFourInOneProcess(t *testing.T) {
	const keys, windows, perWindow = 100, 20, 50
	env := stream.NewEnv().SetParallelism(4)
	src := stream.FromSource(env, "events", source.Func("events", func(ctx source.Context[ev]) error {
		for w := 0; w < windows; w++ {
			for i := 0; i < perWindow; i++ {
				for k := 0; k < keys; k++ {
					ts := int64(w)*1000 + int64(i)
					ctx.CollectWithTimestamp(ev{Key: fmt.Sprint(k), Value: k*windows + w, Time: ts}, ts)
				}
			}
			ctx.EmitWatermark(int64(w)*1000 + 999)
		}
		return nil
	})).SetParallelism(1)
	win := stream.Window(stream.KeyBy(src, keyOf), stream.TumblingEventTimeWindows(time.Second))
	type check struct {
		Key          string
		Start, Count int64
		Foreign      int
	}
	got := run(t, env, stream.ProcessWindow(win, "check", func(key string, w stream.TimeWindow, elems []ev, out stream.Collector[check]) {
		c := check{Key: key, Start: w.Start, Count: int64(len(elems))}
		for _, e := range elems {
			if e.Key != key || int64(e.Value%windows)*1000 != w.Start {
				c.Foreign++
			}
		}
		out.Collect(c)
	}))
	if len(got) != keys*windows {
		t.Fatalf("%d windows fired, want %d", len(got), keys*windows)
	}
	wrong := 0
	for _, c := range got {
		if c.Count != perWindow || c.Foreign != 0 {
			if wrong < 5 {
				t.Errorf("window %s@%d: %d records, %d of other windows; want %d, none", c.Key, c.Start, c.Count, c.Foreign, perWindow)
			}
			wrong++
		}
	}
	if wrong > 0 {
		t.Fatalf("%d of %d windows wrong", wrong, len(got))
	}
}

func TestEventTimeWindowWithoutTimestampsFails(t *testing.T) {
	env := stream.NewEnv().SetParallelism(1)
	src := stream.FromSource(env, "seq", source.Sequence(1, 10))
	w := stream.Window(stream.KeyBy(src, func(v int64) int64 { return v }), stream.TumblingEventTimeWindows(time.Second))
	stream.Print(w.Sum(""))
	_, err := env.ExecuteContext(context.Background(), "no-timestamps")
	if err == nil || !strings.Contains(err.Error(), "AssignTimestampsAndWatermarks") {
		t.Fatalf("err = %v", err)
	}
}

// countWithTimer counts per key and emits the count when the watermark
// passes the key's last record.
type countWithTimer struct {
	count *stateValue
	last  *stateLast
}

type (
	stateValue = stateOf[int]
	stateLast  = stateOf[int64]
)

type stateOf[V any] interface {
	Get() (V, bool)
	Update(V)
	Clear()
}

func (f *countWithTimer) Open(ctx *stream.KeyedContext[string]) error {
	var c stateValue = stream.ValueState[int](ctx, "count")
	var l stateLast = stream.ValueState[int64](ctx, "last")
	f.count, f.last = &c, &l
	return nil
}

func (f *countWithTimer) ProcessElement(ctx *stream.KeyedContext[string], e ev, _ stream.Collector[string]) error {
	n, _ := (*f.count).Get()
	(*f.count).Update(n + 1)
	(*f.last).Update(ctx.Timestamp())
	ctx.RegisterEventTimeTimer(ctx.Timestamp() + 100)
	return nil
}

func (f *countWithTimer) OnTimer(ctx *stream.KeyedContext[string], ts int64, out stream.Collector[string]) error {
	last, _ := (*f.last).Get()
	if ts != last+100 {
		return nil // a later record moved the timeout
	}
	n, _ := (*f.count).Get()
	out.Collect(fmt.Sprintf("%s=%d", ctx.CurrentKey(), n))
	(*f.count).Clear()
	return nil
}

func TestProcessWithStateAndTimers(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	evs := []ev{{"a", 0, 0}, {"b", 0, 10}, {"a", 0, 50}, {"a", 0, 300}, {"b", 0, 320}}
	// The watermark 200 times out a's first burst (last record at 50) and b's first.
	src := events(env, evs, map[int]int64{2: 200})
	got := run(t, env, stream.Process(stream.KeyBy(src, keyOf), "timeouts", func() stream.KeyedProcessFunction[string, ev, string] {
		return &countWithTimer{}
	}))
	slices.Sort(got)
	if !slices.Equal(got, []string{"a=1", "a=2", "b=1", "b=1"}) {
		t.Fatalf("got %v", got)
	}
}

// WindowAll: one subtask's windows hold every key's records; a
// parallelism above 1 is refused.
func TestWindowAll(t *testing.T) {
	env := stream.NewEnv().SetParallelism(4)
	var evs []ev
	for i := range 30 {
		evs = append(evs, ev{Key: fmt.Sprint(i % 7), Value: i, Time: int64(i) * 100})
	}
	w := stream.WindowAll(events(env, evs, nil), stream.TumblingEventTimeWindows(time.Second))
	got := run(t, env, stream.ProcessAllWindow(w, "all", func(win stream.TimeWindow, elems []ev, out stream.Collector[string]) {
		sum := 0
		for _, e := range elems {
			sum += e.Value
		}
		out.Collect(fmt.Sprintf("[%d,%d) n=%d sum=%d", win.Start, win.End, len(elems), sum))
	}))
	slices.Sort(got)
	// Records 0..9, 10..19, 20..29: sums 45, 145, 245.
	want := []string{"[0,1000) n=10 sum=45", "[1000,2000) n=10 sum=145", "[2000,3000) n=10 sum=245"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}

	env = stream.NewEnv()
	w2 := stream.WindowAll(events(env, evs, nil), stream.TumblingEventTimeWindows(time.Second))
	stream.Print(w2.Sum("Value").SetParallelism(2))
	if _, _, err := env.Plan("too wide"); err == nil || !strings.Contains(err.Error(), "maximum parallelism 1") {
		t.Fatalf("a WindowAll at parallelism 2: %v", err)
	}
}

// Incremental aggregation with the window's metadata: a reduce or an
// aggregate keeps one value per window, and the window function gets it
// with the key and the window (Flink's reduce/aggregate with a
// ProcessWindowFunction).
func TestIncrementalAggregationWithAWindowFunction(t *testing.T) {
	evs := []ev{{"a", 3, 100}, {"a", 9, 200}, {"b", 4, 300}, {"a", 5, 1100}, {"b", 1, 1200}, {"b", 7, 1300}}
	env := stream.NewEnv().SetParallelism(2)
	w := stream.Window(stream.KeyBy(events(env, evs, nil), keyOf), stream.TumblingEventTimeWindows(time.Second))
	maxes := stream.ReduceWindow(w, "max", func(a, b ev) ev {
		if b.Value > a.Value {
			return b
		}
		return a
	}, func(k string, win stream.TimeWindow, m ev, out stream.Collector[string]) {
		out.Collect(fmt.Sprintf("%s[%d,%d) max=%d", k, win.Start, win.End, m.Value))
	})
	got := run(t, env, maxes)
	slices.Sort(got)
	if want := []string{"a[0,1000) max=9", "a[1000,2000) max=5", "b[0,1000) max=4", "b[1000,2000) max=7"}; !slices.Equal(got, want) {
		t.Fatalf("ReduceWindow: %q, want %q", got, want)
	}

	env = stream.NewEnv().SetParallelism(2)
	w = stream.Window(stream.KeyBy(events(env, evs, nil), keyOf), stream.TumblingEventTimeWindows(time.Second))
	type avg struct{ sum, n int }
	means := stream.AggregateWindow(w, "mean", stream.AggregateFunction[ev, avg, float64]{
		Create: func() avg { return avg{} },
		Add:    func(a avg, e ev) avg { return avg{a.sum + e.Value, a.n + 1} },
		Result: func(a avg) float64 { return float64(a.sum) / float64(a.n) },
	}, func(k string, win stream.TimeWindow, mean float64, out stream.Collector[string]) {
		out.Collect(fmt.Sprintf("%s@%d mean=%.1f", k, win.Start, mean))
	})
	got = run(t, env, means)
	slices.Sort(got)
	if want := []string{"a@0 mean=6.0", "a@1000 mean=5.0", "b@0 mean=4.0", "b@1000 mean=4.0"}; !slices.Equal(got, want) {
		t.Fatalf("AggregateWindow: %q, want %q", got, want)
	}
}
