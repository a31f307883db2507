package task_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/network"
	"github.com/loom-project/loom/flinkrt/task"
)

// A task's input counts: records as they come, time spent waiting for
// them as idle, and its input watermark.
func TestInputMetrics(t *testing.T) {
	gate := network.NewGate[int](1, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gate.Deliver(ctx, &network.Batch[int]{Kind: network.Data, Records: []int{1, 2, 3}, Times: []int64{task.NoTime, task.NoTime, task.NoTime}}); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		// The task waits for these.
		<-started
		time.Sleep(60 * time.Millisecond)
		_ = gate.Deliver(ctx, &network.Batch[int]{Kind: network.Watermark, Watermark: 42})
		_ = gate.Deliver(ctx, end(0))
	}()
	r := &recorder{}
	tc := &task.Context{Context: ctx, Mailbox: task.NewMailbox(), Barriers: r}
	tc.InputWatermark.Store(math.MinInt64)
	close(started)
	if err := task.RunInput[int](tc, gate, r); err != nil {
		t.Fatal(err)
	}
	if n := tc.RecordsIn.Load(); n != 3 {
		t.Errorf("records in: %d, want 3", n)
	}
	if idle := time.Duration(tc.IdleNanos.Load()); idle < 20*time.Millisecond {
		t.Errorf("idle %v, want most of the 60 ms the producer paused", idle)
	}
	// The end of input passes the maximum watermark on.
	if wm := tc.InputWatermark.Load(); wm != task.MaxWatermark {
		t.Errorf("input watermark %d, want the end of input's", wm)
	}
}

// A writer whose consumer is slow waits for credit: that is its back
// pressure.
func TestBackPressuredTime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gate := network.NewGate[int](1, 2)
	ch := network.NewLocalChannel[int](gate, 0, 2, 1)
	w := task.NewRecordWriter[int](ctx, task.Partitioning{Kind: task.Forward}, []network.ChannelOut[int]{ch}, 1, 128)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for b := range gate.C() {
			end := b.Kind == network.EndOfPartition
			time.Sleep(10 * time.Millisecond)
			b.Recycle()
			if end {
				return
			}
		}
	}()
	for i := range 20 {
		w.Collect(i, task.NoTime)
	}
	w.End()
	<-consumed
	if waited := time.Duration(w.BackPressuredNanos()); waited < 100*time.Millisecond {
		t.Errorf("back pressured %v, want most of the 200 ms the consumer took", waited)
	}
	if n := w.RecordsOut(); n != 20 {
		t.Errorf("records out: %d, want 20", n)
	}
}

// counter counts what reaches it.
type counter struct{ n int }

func (c *counter) Collect(int, int64) { c.n++ }
func (c *counter) Watermark(int64)    {}

// The task's own work (timers, flushes, checkpoint triggers) runs between
// batches even when input never pauses.
func TestMailboxRunsUnderSteadyInput(t *testing.T) {
	const batches = 100
	gate := network.NewGate[int](1, batches+2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range batches {
		if err := gate.Deliver(ctx, data(0, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := gate.Deliver(ctx, end(0)); err != nil {
		t.Fatal(err)
	}
	c := &counter{}
	tc := &task.Context{Context: ctx, Mailbox: task.NewMailbox(), Barriers: &recorder{}}
	ranAt := -1
	tc.Mailbox.Post(func() { ranAt = c.n })
	if err := task.RunInput[int](tc, gate, c); err != nil {
		t.Fatal(err)
	}
	if ranAt < 0 || ranAt >= batches {
		t.Fatalf("the mailbox action ran after %d of %d records; want it between batches, before the input ended", ranAt, batches)
	}
}

// A writer's output watermark is the last one it sent on; before one it
// has none.
func TestOutputWatermark(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gate := network.NewGate[int](1, 8)
	ch := network.NewLocalChannel[int](gate, 0, 8, 1)
	w := task.NewRecordWriter[int](ctx, task.Partitioning{Kind: task.Forward}, []network.ChannelOut[int]{ch}, 4, 128)
	if _, sent := w.OutputWatermark(); sent {
		t.Fatal("an output watermark before any was sent")
	}
	w.Collect(1, 10)
	w.Watermark(10)
	w.Collect(2, 20)
	w.Watermark(25)
	if wm, sent := w.OutputWatermark(); !sent || wm != 25 {
		t.Errorf("output watermark %d (%v), want 25", wm, sent)
	}
}
