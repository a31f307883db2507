package task_test

import (
	"context"
	"testing"
	"time"

	"github.com/loom-project/loom/flinkrt/network"
	"github.com/loom-project/loom/flinkrt/task"
)

// recorder is a chain head that records what reaches it, and the
// checkpoints aligned, in order.
type recorder struct {
	events  []string
	dropped []int64
}

func (r *recorder) Collect(v int, _ int64) { r.events = append(r.events, "r"+itoa(v)) }
func (r *recorder) Watermark(int64)        {}
func (r *recorder) Aligned(id int64, _ time.Duration) {
	r.events = append(r.events, "cp"+itoa(int(id)))
}
func (r *recorder) Abandoned(id int64, _ string) { r.dropped = append(r.dropped, id) }
func itoa(v int) string                          { return string(rune('0' + v)) }
func data(ch, v int) *network.Batch[int] {
	return &network.Batch[int]{Kind: network.Data, Channel: ch, Records: []int{v}, Times: []int64{task.NoTime}}
}
func barrier(ch int, id int64) *network.Batch[int] {
	return &network.Batch[int]{Kind: network.Barrier, Channel: ch, Checkpoint: id}
}
func end(ch int) *network.Batch[int] {
	return &network.Batch[int]{Kind: network.EndOfPartition, Channel: ch}
}

func run(t *testing.T, channels int, batches ...*network.Batch[int]) *recorder {
	t.Helper()
	gate := network.NewGate[int](channels, len(batches)+1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range batches {
		if err := gate.Deliver(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	r := &recorder{}
	tc := &task.Context{Context: ctx, Mailbox: task.NewMailbox(), Barriers: r}
	if err := task.RunInput[int](tc, gate, r); err != nil {
		t.Fatal(err)
	}
	return r
}

func joined(s []string) string {
	out := ""
	for _, e := range s {
		out += e + " "
	}
	return out
}

// Records a channel sends after its barrier wait until every channel's
// barrier is in: the snapshot holds exactly what came before them.
func TestBarriersAlignChannels(t *testing.T) {
	r := run(t, 2,
		data(0, 1), barrier(0, 1), data(0, 2), // channel 0 is ahead
		data(1, 3), data(1, 4), barrier(1, 1), data(1, 5),
		end(0), end(1))
	if got, want := joined(r.events), "r1 r3 r4 cp1 r2 r5 "; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
}

// A channel that ended counts as aligned: the others' barriers complete
// the checkpoint.
func TestEndedChannelCountsAsAligned(t *testing.T) {
	r := run(t, 2, data(0, 1), end(0), barrier(1, 1), data(1, 2), end(1))
	if got, want := joined(r.events), "r1 cp1 r2 "; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
}

// A newer checkpoint's barrier overtaking an alignment abandons the older
// checkpoint and aligns the newer one.
func TestNewerBarrierAbandonsOlderCheckpoint(t *testing.T) {
	r := run(t, 2, barrier(0, 1), data(0, 1), barrier(0, 2), barrier(1, 2), data(1, 2), barrier(1, 1), end(0), end(1))
	if len(r.dropped) != 1 || r.dropped[0] != 1 {
		t.Errorf("abandoned %v, want [1]", r.dropped)
	}
	if got, want := joined(r.events), "r1 cp2 r2 "; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
}
