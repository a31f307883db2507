package stream

import (
	"testing"

	"github.com/loom-project/loom/flinkrt/codec"
	"github.com/loom-project/loom/flinkrt/stream/source"
	"github.com/loom-project/loom/flinkrt/task"
)

// A keyed reduce restored at another parallelism keeps exactly the keys
// its key groups own, with their accumulators: each key in one subtask.
func TestReduceRestoresTheKeysItOwns(t *testing.T) {
	hash, err := codec.Hasher[string]()
	if err != nil {
		t.Fatal(err)
	}
	const maxPar = 128
	var states [][]byte
	for s := range 2 {
		op := &reduceOp[string, int]{acc: map[string]int{}}
		for i := range 200 {
			k := string(rune('a'+i%26)) + string(rune('a'+i/26))
			if (task.KeyGroups{MaxParallelism: maxPar, Parallelism: 2, Subtask: s}).Owns(hash(k)) {
				op.acc[k] = i
			}
		}
		b, err := op.SnapshotState(1)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, b)
	}
	seen := map[string]int{}
	for s := range 3 {
		g := task.KeyGroups{MaxParallelism: maxPar, Parallelism: 3, Subtask: s}
		op := &reduceOp[string, int]{}
		if err := op.RestoreKeyed(states, g); err != nil {
			t.Fatal(err)
		}
		for k := range op.acc {
			if !g.Owns(hash(k)) {
				t.Errorf("subtask %d of 3 holds key %q of another", s, k)
			}
			seen[k]++
		}
	}
	if len(seen) != 200 {
		t.Errorf("%d keys after the rescale, want 200", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("key %q in %d subtasks", k, n)
		}
	}
}

// tally is a MapFunction with state of its own.
type tally struct{ n int64 }

func (t *tally) Map(v int64) (int64, error) { t.n++; return v, nil }
func (t *tally) SnapshotState(int64) ([]byte, error) {
	return []byte{byte(t.n)}, nil
}
func (t *tally) RestoreState(b []byte) error { t.n = int64(b[0]); return nil }

// A rich function that is a CheckpointedFunction has its state taken and
// given back through its operator, which the worker finds as a
// task.Snapshotter; a plain rich function has none.
func TestCheckpointedFunctionsStateGoesThroughItsOperator(t *testing.T) {
	env := NewEnv().SetParallelism(1)
	src := FromSource(env, "n", source.Sequence(1, 10))
	counted := MapWith(src, "count", func() MapFunction[int64, int64] { return &tally{} })
	plain := MapWith(counted, "plain", func() MapFunction[int64, int64] { return identity{} })
	inst := counted.node.Factory.New(task.Output[int64](task.Discard[int64]{}))
	snap, ok := inst.Lifecycle.(task.Snapshotter)
	if !ok {
		t.Fatal("a MapWith operator is no Snapshotter")
	}
	in := inst.Input.(task.Output[int64])
	for range 7 {
		in.Collect(1, task.NoTime)
	}
	b, err := snap.SnapshotState(1)
	if err != nil || len(b) != 1 || b[0] != 7 {
		t.Fatalf("snapshot %v, %v; want the function's count 7", b, err)
	}
	again := counted.node.Factory.New(task.Output[int64](task.Discard[int64]{}))
	if err := again.Lifecycle.(task.Snapshotter).RestoreState(b); err != nil {
		t.Fatal(err)
	}
	again.Input.(task.Output[int64]).Collect(1, task.NoTime)
	if b, _ := again.Lifecycle.(task.Snapshotter).SnapshotState(2); b[0] != 8 {
		t.Fatalf("restored and one more record: %v, want 8", b)
	}
	p := plain.node.Factory.New(task.Output[int64](task.Discard[int64]{}))
	if b, err := p.Lifecycle.(task.Snapshotter).SnapshotState(1); b != nil || err != nil {
		t.Errorf("a function without state snapshots %v, %v", b, err)
	}
}

type identity struct{}

func (identity) Map(v int64) (int64, error) { return v, nil }
