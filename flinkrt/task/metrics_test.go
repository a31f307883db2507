package task_test

import (
	"context"
	"math"
	"testing"
	"time"

	"loom/flinkrt/network"
	"loom/flinkrt/task"
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
