package stream_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/stream/source"
)

// numbers emits 1..n as ints, without times.
func numbers(env *stream.Env, n int) stream.DataStream[int] {
	return stream.Map(stream.FromSource(env, "numbers", source.Sequence(1, int64(n))), "int", func(v int64) int { return int(v) })
}

func TestCoMapAndCoFlatMap(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	words := stream.FromSource(env, "words", source.Func("words", func(ctx source.Context[string]) error {
		for _, w := range []string{"x", "yy", "zzz"} {
			ctx.Collect(w)
		}
		return nil
	}))
	c := stream.Connect(numbers(env, 3), words)
	got := run(t, env, stream.CoMap(c, "describe", func(n int) string { return "n" + strconv.Itoa(n) }, func(w string) string { return "w" + w }))
	slices.Sort(got)
	if want := []string{"n1", "n2", "n3", "wx", "wyy", "wzzz"}; !slices.Equal(got, want) {
		t.Fatalf("CoMap: %q, want %q", got, want)
	}

	env = stream.NewEnv().SetParallelism(2)
	c = stream.Connect(numbers(env, 3), stream.FromSource(env, "words", source.Func("words", func(ctx source.Context[string]) error {
		ctx.Collect("ab")
		return nil
	})))
	lengths := run(t, env, stream.CoFlatMap(c, "spread", func(n int, out stream.Collector[int]) {
		for range n {
			out.Collect(n)
		}
	}, func(w string, out stream.Collector[int]) {
		for range w {
			out.Collect(-1)
		}
	}))
	slices.Sort(lengths)
	if want := []int{-1, -1, 1, 2, 2, 3, 3, 3}; !slices.Equal(lengths, want) {
		t.Fatalf("CoFlatMap: %v, want %v", lengths, want)
	}
}

// enrich pairs each order with its customer's name, whichever arrives
// first: the order waits in the key's state for the name, or the name
// for the orders (Flink's connected-streams enrichment).
type enrich struct {
	name interface {
		Get() (string, bool)
		Update(string)
	}
	orders interface {
		Get() []ev
		Add(ev)
		Clear()
	}
}

func (e *enrich) Open(ctx *stream.KeyedContext[string]) error {
	e.name = stream.ValueState[string](ctx, "name")
	e.orders = stream.ListState[ev](ctx, "orders")
	return nil
}

func (e *enrich) ProcessElement1(ctx *stream.KeyedContext[string], order ev, out stream.Collector[string]) error {
	if name, ok := e.name.Get(); ok {
		out.Collect(fmt.Sprintf("%s:%d", name, order.Value))
		return nil
	}
	e.orders.Add(order)
	return nil
}

func (e *enrich) ProcessElement2(ctx *stream.KeyedContext[string], customer ev, out stream.Collector[string]) error {
	name := fmt.Sprintf("%s#%d", customer.Key, customer.Value)
	e.name.Update(name)
	for _, o := range e.orders.Get() {
		out.Collect(fmt.Sprintf("%s:%d", name, o.Value))
	}
	e.orders.Clear()
	return nil
}

// A KeyedCoProcessFunction sees both inputs' records of a key, with the
// key's state, whatever order they arrive in.
func TestKeyedCoProcess(t *testing.T) {
	env := stream.NewEnv().SetParallelism(3)
	orders := events(env, []ev{{"ann", 10, 1}, {"bob", 20, 2}, {"ann", 30, 3}, {"cat", 40, 4}}, nil)
	customers := events(env, []ev{{"bob", 2, 1}, {"ann", 1, 2}}, nil)
	c := stream.KeyByConnected(stream.Connect(orders, customers), keyOf, keyOf)
	got := run(t, env, stream.CoProcess(c, "enrich", func() stream.KeyedCoProcessFunction[string, ev, ev, string] { return &enrich{} }))
	slices.Sort(got)
	// cat's order never meets a customer.
	if want := []string{"ann#1:10", "ann#1:30", "bob#2:20"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func pairOf(a, b ev) string {
	return fmt.Sprintf("%s:%d@%d-%d@%d", a.Key, a.Value, a.Time, b.Value, b.Time)
}

// A tumbling-window join pairs the records of equal keys in the same
// window, and only those.
func TestWindowJoin(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	a := events(env, []ev{{"k", 1, 100}, {"k", 2, 900}, {"k", 3, 1100}, {"j", 4, 200}}, nil)
	b := events(env, []ev{{"k", 10, 500}, {"k", 20, 1500}, {"j", 30, 1200}, {"x", 40, 300}}, nil)
	joined := stream.JoinApply(stream.Join(a, b, keyOf, keyOf).Window(stream.TumblingEventTimeWindows(time.Second)), "join", pairOf)
	got := run(t, env, joined)
	slices.Sort(got)
	// [0,1000): k 1,2 × k 10; [1000,2000): k 3 × k 20; j's are in different
	// windows; x has no partner.
	want := []string{"k:1@100-10@500", "k:2@900-10@500", "k:3@1100-20@1500"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

// An interval join pairs a with every b of its key within [a-1s, a+2s],
// the bounds included, and the pair carries the later time.
func TestIntervalJoin(t *testing.T) {
	env := stream.NewEnv().SetParallelism(2)
	a := events(env, []ev{{"k", 1, 5000}, {"k", 2, 9000}, {"j", 3, 5000}}, nil)
	b := events(env, []ev{{"k", 10, 4000}, {"k", 20, 3999}, {"k", 30, 7000}, {"k", 40, 7001}, {"k", 50, 10500}, {"j", 60, 6000}, {"q", 70, 5000}}, nil)
	joined := stream.IntervalJoin(a, b, keyOf, keyOf, -time.Second, 2*time.Second, "interval", func(x, y ev) ev {
		return ev{Key: pairOf(x, y)}
	})
	// The pair's time, as the output's, is checked through a
	// timestamped window: each pair is alone in a one-millisecond window
	// starting at its time.
	w := stream.Window(stream.KeyBy(joined, keyOf), stream.TumblingEventTimeWindows(time.Millisecond))
	got := run(t, env, stream.ProcessWindow(w, "at", func(k string, win stream.TimeWindow, elems []ev, out stream.Collector[string]) {
		out.Collect(fmt.Sprintf("%s at %d", k, win.Start))
	}))
	slices.Sort(got)
	// a=5000 joins b in [4000,7000]: 10@4000, 30@7000 (not 3999, not 7001);
	// a=9000 joins b in [8000,11000]: 50@10500; j: 60@6000 in [4000,7000].
	want := []string{
		"j:3@5000-60@6000 at 6000",
		"k:1@5000-10@4000 at 5000",
		"k:1@5000-30@7000 at 7000",
		"k:2@9000-50@10500 at 10500",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

// rules keeps the broadcast rules (name -> threshold) and counts what it
// sees; main records pass when they reach every threshold known.
type rules struct {
	subtask, seenRules, seenMain int
	report                       func(subtask, rules, main, state int)
	stateLen                     func() int
}

func (r *rules) Open(ctx *stream.RuntimeContext) error {
	r.subtask = ctx.Subtask()
	return nil
}

func (r *rules) ProcessElement(_ *stream.ProcessContext, s *stream.BroadcastState[int], v int, out stream.Collector[int]) error {
	r.seenMain++
	r.stateLen = s.Len
	for _, min := range s.All() {
		if v < min {
			return nil
		}
	}
	out.Collect(v)
	return nil
}

func (r *rules) ProcessBroadcastElement(_ *stream.ProcessContext, s *stream.BroadcastState[int], rule string, _ stream.Collector[int]) error {
	r.seenRules++
	r.stateLen = s.Len
	name, v, _ := strings.Cut(rule, "=")
	n, err := strconv.Atoi(v)
	if err != nil {
		return err
	}
	s.Put(name, n)
	return nil
}

func (r *rules) Close() error {
	n := 0
	if r.stateLen != nil {
		n = r.stateLen()
	}
	r.report(r.subtask, r.seenRules, r.seenMain, n)
	return nil
}

// Every subtask of a broadcast process function gets every broadcast
// record and keeps them in its broadcast state; the other stream's
// records are shared out.
func TestBroadcastState(t *testing.T) {
	env := stream.NewEnv().SetParallelism(3)
	ruleStream := stream.FromSource(env, "rules", source.Func("rules", func(ctx source.Context[string]) error {
		for _, r := range []string{"a=1", "b=2", "c=3", "a=4", "d=0"} {
			ctx.Collect(r)
		}
		return nil
	}))
	var mu sync.Mutex
	seen := map[int][3]int{}
	c := stream.ConnectBroadcast(numbers(env, 3000), ruleStream)
	out := stream.ProcessBroadcast(c, "filter", func() stream.BroadcastProcessFunction[int, string, int, int] {
		return &rules{report: func(s, nr, nm, st int) { mu.Lock(); seen[s] = [3]int{nr, nm, st}; mu.Unlock() }}
	})
	run(t, env, out)
	if len(seen) != 3 {
		t.Fatalf("subtasks reporting: %v", seen)
	}
	main := 0
	for s, v := range seen {
		if v[0] != 5 || v[2] != 4 {
			t.Errorf("subtask %d saw %d broadcast records and keeps %d rules; want 5 and 4 (a, b, c, d)", s, v[0], v[2])
		}
		main += v[1]
	}
	if main != 3000 {
		t.Errorf("%d main records reached the subtasks, want 3000 shared out", main)
	}
}

// perKeyRules sums each key's values in keyed state, and counts the
// broadcast rules each subtask sees in an accumulator.
type perKeyRules struct {
	sum interface {
		Get() (int, bool)
		Update(int)
	}
	rules stream.Counter
}

func (p *perKeyRules) Open(ctx *stream.KeyedContext[string]) (err error) {
	p.sum = stream.ValueState[int](ctx, "sum")
	p.rules, err = ctx.Runtime().Counter("rules seen")
	return err
}

func (p *perKeyRules) ProcessElement(ctx *stream.KeyedContext[string], _ *stream.BroadcastState[int], e ev, out stream.Collector[string]) error {
	n, _ := p.sum.Get()
	n += e.Value
	p.sum.Update(n)
	out.Collect(fmt.Sprintf("%s=%d", ctx.CurrentKey(), n))
	return nil
}

func (p *perKeyRules) ProcessBroadcastElement(_ *stream.KeyedContext[string], s *stream.BroadcastState[int], rule string, _ stream.Collector[string]) error {
	p.rules.Add(1)
	s.Put(rule, len(rule))
	return nil
}

// A keyed broadcast process function: the keyed input's records reach the
// subtask of their key, with the key's state; every subtask gets every
// broadcast record.
func TestKeyedBroadcastState(t *testing.T) {
	env := stream.NewEnv().SetParallelism(3)
	evs := events(env, []ev{{"a", 1, 1}, {"b", 2, 2}, {"a", 3, 3}, {"c", 4, 4}, {"b", 5, 5}}, nil)
	ruleStream := stream.FromSource(env, "rules", source.Func("rules", func(ctx source.Context[string]) error {
		for _, r := range []string{"x", "yy", "zzz"} {
			ctx.Collect(r)
		}
		return nil
	}))
	out := sink.Collect[string]()
	stream.Sink(stream.ProcessKeyedBroadcast(stream.KeyBy(evs, keyOf), ruleStream, "rules", func() stream.KeyedBroadcastProcessFunction[string, ev, string, int, string] {
		return &perKeyRules{}
	}), "out", out)
	res, err := env.Execute(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	got := out.Values()
	slices.Sort(got)
	if want := []string{"a=1", "a=4", "b=2", "b=7", "c=4"}; !slices.Equal(got, want) {
		t.Errorf("keyed sums %q, want %q", got, want)
	}
	if n := res.Accumulators["rules seen"]; n != 9 {
		t.Errorf("broadcast records seen %d, want 3 by each of 3 subtasks", n)
	}
}

// inOrder checks that a key's records of the first input arrive in the
// order they were made.
type inOrder struct {
	last interface {
		Get() (int, bool)
		Update(int)
	}
}

func (o *inOrder) Open(ctx *stream.KeyedContext[string]) error {
	o.last = stream.ValueState[int](ctx, "last")
	return nil
}

func (o *inOrder) ProcessElement1(ctx *stream.KeyedContext[string], e ev, out stream.Collector[string]) error {
	if last, ok := o.last.Get(); ok && e.Value != last+1 {
		out.Collect(fmt.Sprintf("%s: %d after %d", ctx.CurrentKey(), e.Value, last))
	}
	o.last.Update(e.Value)
	return nil
}

func (o *inOrder) ProcessElement2(*stream.KeyedContext[string], ev, stream.Collector[string]) error {
	return nil
}

// A key's records reach a two-input operator in their order, whatever
// the parallelism of the source and of the operator (as through KeyBy).
func TestConnectedInputsKeepEachKeysOrder(t *testing.T) {
	env := stream.NewEnv().SetParallelism(4)
	var evs []ev
	for i := range 4000 {
		evs = append(evs, ev{Key: fmt.Sprint(i % 7), Value: i / 7, Time: int64(i)})
	}
	c := stream.KeyByConnected(stream.Connect(events(env, evs, nil), events(env, nil, nil)), keyOf, keyOf)
	if got := run(t, env, stream.CoProcess(c, "order", func() stream.KeyedCoProcessFunction[string, ev, ev, string] { return &inOrder{} })); len(got) > 0 {
		t.Fatalf("%d records out of order, as %q", len(got), got[0])
	}
}
