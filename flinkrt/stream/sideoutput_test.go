package stream_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
)

// splitter sends values of 100 and more to a side output of another type,
// as a string, and the others on.
type splitter struct{ big stream.OutputTag[string] }

func (s splitter) ProcessElement(ctx *stream.KeyedContext[string], v ev, out stream.Collector[ev]) error {
	if v.Value >= 100 {
		stream.Output(ctx, s.big, fmt.Sprintf("%s=%d", v.Key, v.Value))
		return nil
	}
	out.Collect(v)
	return nil
}

// A process function's side output, of a type of its own, read as a
// stream: keyed again (across the network at p2) and windowed in event
// time, which needs the records' times and the watermarks passed on.
func TestProcessFunctionSideOutput(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	var evs []ev
	for i := range 40 {
		v := i
		if i%4 == 0 {
			v = 100 + i
		}
		evs = append(evs, ev{Key: string(rune('a' + i%3)), Value: v, Time: int64(i) * 100})
	}
	big := stream.NewOutputTag[string]("big")
	main := stream.Process(stream.KeyBy(events(env, evs, nil), keyOf), "split", func() stream.KeyedProcessFunction[string, ev, ev] { return splitter{big} })
	// One-second windows over the side output.
	perWindow := stream.Window(stream.KeyBy(stream.SideOutput(main, big), func(string) int { return 0 }), stream.TumblingEventTimeWindows(time.Second))
	counts := stream.ProcessWindow(perWindow, "count", func(_ int, w stream.TimeWindow, elems []string, out stream.Collector[string]) {
		slices.Sort(elems)
		out.Collect(fmt.Sprintf("[%d,%d) %s", w.Start, w.End, strings.Join(elems, " ")))
	})
	mainOut, sideOut := sink.Collect[ev](), sink.Collect[string]()
	stream.Sink(main, "main", mainOut)
	stream.Sink(counts, "side", sideOut)
	if _, err := env.Execute(t.Name()); err != nil {
		t.Fatal(err)
	}
	if n := len(mainOut.Values()); n != 30 {
		t.Errorf("%d records on the main output, want the 30 small ones", n)
	}
	got := sortedStrings(sideOut.Values(), func(s string) string { return s })
	// Big are i = 0, 4, …, 36: key a+i%3, value 100+i, at i×100 ms.
	want := []string{"[0,1000) a=100 b=104 c=108", "[1000,2000) a=112 b=116", "[2000,3000) a=124 b=128 c=120", "[3000,4000) a=136 c=132"}
	if !slices.Equal(got, want) {
		t.Fatalf("side output windows:\n%q\nwant\n%q", got, want)
	}
}

// Flink's allowed lateness and late-data side output: a record behind the
// watermark but within the lateness fires its window again with it; one
// later than that goes to the side output, with its time.
func TestAllowedLatenessAndLateData(t *testing.T) {
	evs := []ev{
		{"a", 1, 100}, {"a", 1, 900}, // [0,1000); watermark 1000 fires it
		{"a", 1, 200},  // behind the watermark, within 500 ms of lateness: fires again
		{"b", 1, 1550}, // watermark 1600 passes [0,1000)'s cleanup at 1499
		{"a", 1, 300},  // too late: the side output
		{"a", 1, 1700}, // [1000,2000), fired by the final watermark
	}
	for _, c := range []struct {
		name     string
		lateness time.Duration
		want     []string
		late     []int64
	}{
		{"500ms of lateness", 500 * time.Millisecond, []string{"a[0,1000) sum=2 n=2", "a[0,1000) sum=3 n=3", "a[1000,2000) sum=1 n=1", "b[1000,2000) sum=1 n=1"}, []int64{300}},
		{"no lateness", 0, []string{"a[0,1000) sum=2 n=2", "a[1000,2000) sum=1 n=1", "b[1000,2000) sum=1 n=1"}, []int64{200, 300}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := stream.NewEnv().SetParallelism(2)
			late := stream.NewOutputTag[ev]("late")
			w := stream.Window(stream.KeyBy(events(env, evs, map[int]int64{1: 1000, 3: 1600}), keyOf), stream.TumblingEventTimeWindows(time.Second)).
				AllowedLateness(c.lateness).SideOutputLateData(late)
			fired := stream.ProcessWindow(w, "windows", describeWindows)
			main, lateOut := sink.Collect[winResult](), sink.Collect[ev]()
			stream.Sink(fired, "main", main)
			stream.Sink(stream.SideOutput(fired, late), "late", lateOut)
			if _, err := env.Execute(t.Name()); err != nil {
				t.Fatal(err)
			}
			if got := sortedStrings(main.Values(), fmtWin); !slices.Equal(got, c.want) {
				t.Errorf("windows fired:\n%q\nwant\n%q", got, c.want)
			}
			var times []int64
			for _, e := range lateOut.Values() {
				times = append(times, e.Time)
			}
			slices.Sort(times)
			if !slices.Equal(times, c.late) {
				t.Errorf("late records at %v, want %v", times, c.late)
			}
		})
	}
}

// Without a late-data side output, a window drops the records that are
// too late and counts them, as Flink's numLateRecordsDropped.
func TestLateRecordsDroppedAreCounted(t *testing.T) {
	evs := []ev{{"a", 1, 100}, {"a", 1, 900}, {"a", 1, 200}, {"b", 1, 1550}, {"a", 1, 300}, {"a", 1, 1700}}
	for _, c := range []struct {
		lateness time.Duration
		dropped  int64
	}{{500 * time.Millisecond, 1}, {0, 2}} {
		env := stream.NewEnv().SetParallelism(2)
		w := stream.Window(stream.KeyBy(events(env, evs, map[int]int64{1: 1000, 3: 1600}), keyOf), stream.TumblingEventTimeWindows(time.Second)).
			AllowedLateness(c.lateness)
		stream.Sink(stream.ProcessWindow(w, "windows", describeWindows), "main", sink.Collect[winResult]())
		res, err := env.Execute(t.Name())
		if err != nil {
			t.Fatal(err)
		}
		var dropped int64
		for _, v := range res.Vertices {
			dropped += v.LateRecordsDropped
		}
		if dropped != c.dropped {
			t.Errorf("lateness %v: %d records dropped as late, want %d (%+v)", c.lateness, dropped, c.dropped, res.Vertices)
		}
	}
}

// router is a ProcessFunction on a stream that is not keyed: odd records
// to a side output, the record's time and the watermark at hand.
type router struct{ odd stream.OutputTag[int64] }

func (r router) ProcessElement(ctx *stream.ProcessContext, v int64, out stream.Collector[string]) error {
	if v%2 == 1 {
		stream.Output(ctx, r.odd, v)
		return nil
	}
	out.Collect(fmt.Sprintf("%d@%d", v, ctx.Timestamp()))
	return nil
}

func TestProcessStreamWithASideOutput(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	src := stream.AssignTimestampsAndWatermarks(stream.FromSource(env, "seq", source.Sequence(1, 6)),
		stream.ForMonotonousTimestamps(func(v int64) int64 { return v * 10 }))
	odd := stream.NewOutputTag[int64]("odd")
	even := stream.ProcessStream(src, "route", func() stream.ProcessFunction[int64, string] { return router{odd} })
	evens, odds := sink.Collect[string](), sink.Collect[int64]()
	stream.Sink(even, "even", evens)
	stream.Sink(stream.SideOutput(even, odd), "odd", odds)
	if _, err := env.Execute(t.Name()); err != nil {
		t.Fatal(err)
	}
	e, o := evens.Values(), odds.Values()
	slices.Sort(e)
	slices.Sort(o)
	if !slices.Equal(e, []string{"2@20", "4@40", "6@60"}) || !slices.Equal(o, []int64{1, 3, 5}) {
		t.Fatalf("even %q, odd %v", e, o)
	}
}
