package stream

import (
	"testing"

	"loom/flinkrt/codec"
	"loom/flinkrt/task"
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
