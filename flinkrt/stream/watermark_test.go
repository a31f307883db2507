package stream_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
)

// partitions is a source of two subtasks: subtask 0 emits events at
// 0..2900 ms of event time and then stays open with nothing more, as a
// partition without new data; subtask 1 never emits anything.
type partitions struct{}

func (partitions) Describe() string    { return "partitions" }
func (partitions) MaxParallelism() int { return 0 }

func (partitions) Run(ctx source.Context[ev]) error {
	if ctx.Subtask() == 0 {
		for i := range 30 {
			ctx.Collect(ev{Key: "k", Value: 1, Time: int64(i) * 100})
		}
	}
	// Waiting, as a source waits for input: the task's own work (the
	// periodic watermark, flushes) runs meanwhile.
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ctx.Idle():
			ctx.Yield()
		}
	}
}

func twoPartitions(env *stream.Env) stream.DataStream[ev] {
	return stream.FromSource(env, "partitions", source.Source[ev](partitions{})).SetParallelism(2)
}

// An input with nothing to say holds every window back unless it is
// marked idle: with WithIdleness, the event-time windows of the subtask
// that has data fire while the other source subtask is silent.
func TestIdleInputsDoNotHoldTheWatermarkBack(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2).SetAutoWatermarkInterval(10 * time.Millisecond)
	timed := stream.AssignTimestampsAndWatermarks(twoPartitions(env),
		stream.ForMonotonousTimestamps(func(e ev) int64 { return e.Time }).WithIdleness(50*time.Millisecond)).SetParallelism(2)
	w := stream.Window(stream.KeyBy(timed, keyOf), stream.TumblingEventTimeWindows(time.Second))
	out := sink.Collect[string]()
	stream.Sink(stream.ProcessWindow(w, "count", func(k string, win stream.TimeWindow, elems []ev, o stream.Collector[string]) {
		o.Collect(fmt.Sprintf("[%d,%d) %d", win.Start, win.End, len(elems)))
	}), "out", out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := env.ExecuteContext(ctx, t.Name()); done <- err }()
	// The watermark reaches 2899 once subtask 1 is idle: two windows fire.
	waitFor(t, 20*time.Second, "two windows to fire while a source subtask is idle", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the job ended: %v", err)
		default:
		}
		return len(out.Values()) >= 2
	})
	cancel()
	<-done
	got := out.Values()
	slices.Sort(got)
	if !slices.Equal(got[:2], []string{"[0,1000) 10", "[1000,2000) 10"}) {
		t.Fatalf("windows: %q", got)
	}
}

// punctuated emits a watermark on every record that says so, as a
// generator of one's own (Flink's punctuated watermarks).
type punctuated struct{}

func (punctuated) OnEvent(e ev, ts int64, out *stream.WatermarkOutput) {
	if e.Key == "mark" {
		out.EmitWatermark(ts)
	}
}

func (punctuated) OnPeriodicEmit(*stream.WatermarkOutput) {}

// A watermark generator of one's own decides when event time moves: here
// only marker records move it, so a record behind a marker is late.
func TestCustomWatermarkGenerator(t *testing.T) {
	env := stream.NewEnv().SetParallelism(1)
	src := stream.FromSource(env, "events", source.Func("events", func(ctx source.Context[ev]) error {
		for _, e := range []ev{{"a", 1, 100}, {"mark", 0, 1500}, {"a", 1, 200}, {"a", 1, 1600}} {
			ctx.Collect(e)
		}
		return nil
	}))
	timed := stream.AssignTimestampsAndWatermarks(src, stream.ForGenerator(func() stream.WatermarkGenerator[ev] { return punctuated{} }, func(e ev) int64 { return e.Time }))
	w := stream.Window(stream.KeyBy(timed.Filter("data", func(e ev) bool { return e.Key != "mark" }), keyOf), stream.TumblingEventTimeWindows(time.Second))
	got := sortedStrings(run(t, env, stream.ProcessWindow(w, "windows", describeWindows)), fmtWin)
	// The marker at 1500 fires [0,1000) with the record at 100; the one
	// at 200 arrives after it and is late.
	if want := []string{"a[0,1000) sum=1 n=1", "a[1000,2000) sum=1 n=1"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
