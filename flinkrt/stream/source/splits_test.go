package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeContext runs one source subtask and fails it at its stopAt-th
// record: it takes a checkpoint as that record is collected, keeps what
// came before, and drops the rest, as a restore from that checkpoint
// would.
type fakeContext[T any] struct {
	context.Context
	cancel      context.CancelFunc
	subtask, p  int
	restored    []byte
	position    func() []byte
	stopAt      int
	n           int
	kept        []T
	checkpoint  []byte
	checkpoints bool
}

func newFake[T any](subtask, p int, restored []byte, stopAt int) *fakeContext[T] {
	ctx, cancel := context.WithCancel(context.Background())
	return &fakeContext[T]{Context: ctx, cancel: cancel, subtask: subtask, p: p, restored: restored, stopAt: stopAt}
}

func (c *fakeContext[T]) Collect(v T) {
	c.n++
	if c.n == c.stopAt {
		c.checkpoint, c.checkpoints = c.position(), true
		c.cancel()
	}
	if !c.checkpoints {
		c.kept = append(c.kept, v)
	}
}
func (c *fakeContext[T]) CollectWithTimestamp(v T, _ int64)   { c.Collect(v) }
func (c *fakeContext[T]) EmitWatermark(int64)                 {}
func (c *fakeContext[T]) MarkIdle()                           {}
func (c *fakeContext[T]) Subtask() int                        { return c.subtask }
func (c *fakeContext[T]) Parallelism() int                    { return c.p }
func (c *fakeContext[T]) Idle() <-chan struct{}               { return nil }
func (c *fakeContext[T]) Yield()                              {}
func (c *fakeContext[T]) Restored() []byte                    { return c.restored }
func (c *fakeContext[T]) Checkpointed(position func() []byte) { c.position = position }

// rescaleRuns runs src at each parallelism in turn, each run's subtask s
// failing at its stops[s]-th record (0: never), restoring each run from
// the last one's checkpoint; it returns every record kept.
func rescaleRuns[T any](t *testing.T, src Source[T], runs []int, stops func(run, subtask int) int) []T {
	t.Helper()
	var all []T
	var positions [][]byte
	for r, p := range runs {
		var next [][]byte
		for s := range p {
			var restored []byte
			if positions != nil {
				b, err := src.(Splittable).Split(positions, s, p)
				if err != nil {
					t.Fatal(err)
				}
				restored = b
			}
			c := newFake[T](s, p, restored, stops(r, s))
			if err := src.Run(c); err != nil {
				t.Fatalf("run %d at p%d, subtask %d: %v", r, p, s, err)
			}
			all = append(all, c.kept...)
			if !c.checkpoints {
				c.checkpoint = c.position() // it ended: nothing left
			}
			next = append(next, c.checkpoint)
		}
		positions = next
	}
	return all
}

// A text source read at 2, then 3, then 1, then 4 subtasks, failing
// part-way at each, reads every line of several files exactly once.
func TestTextSourceChangesParallelism(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for f := range 3 {
		var b strings.Builder
		for i := range 500 + 37*f {
			line := fmt.Sprintf("file%d line %d %s", f, i, strings.Repeat("x", i%23))
			want = append(want, line)
			b.WriteString(line + "\n")
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("in-%d.txt", f)), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := rescaleRuns(t, TextFile(dir), []int{2, 3, 1, 4}, func(run, s int) int {
		if run == 3 {
			return 0
		}
		return 101 + 50*s + 7*run
	})
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("read %d lines, want %d, each once", len(got), len(want))
	}
}

// So does a bounded generator with its indexes.
func TestGeneratorChangesParallelism(t *testing.T) {
	got := rescaleRuns(t, Generator(10_000, func(i int64) int64 { return i }), []int{3, 2, 5, 1}, func(run, s int) int {
		if run == 3 {
			return 0
		}
		return 500 + 333*s + run
	})
	slices.Sort(got)
	for i, v := range got {
		if v != int64(i) || len(got) != 10_000 {
			t.Fatalf("emitted %d indexes, want 0..9999 once each; the %dth is %d", len(got), i, v)
		}
	}
	if _, ok := Generator(-1, func(i int64) int64 { return i }).(Splittable); ok {
		t.Error("an unbounded generator says it can split")
	}
}

// Restored positions are checked: corrupt ones, spans past the input,
// and positions from before sources could split, at a new parallelism.
func TestSplitRefusesBadPositions(t *testing.T) {
	legacy := []byte{0x04}
	if _, err := splitSpans([][]byte{legacy}, 0, 2); err == nil || !strings.Contains(err.Error(), "restore it at its parallelism") {
		t.Errorf("a legacy position: %v", err)
	}
	for _, bad := range [][]byte{[]byte(spansMagic), []byte(spansMagic + "\x01\x04"), []byte(spansMagic + "\x01\x04\x02\x00\x00"), []byte(spansMagic + "\x01\x08\x04\x00")} {
		if _, err := splitSpans([][]byte{bad}, 0, 1); err == nil {
			t.Errorf("position %q accepted", bad)
		}
	}
	if _, err := restoredSpans(encodeSpans([]span{{0, 100, false}}), span{0, 10, false}, 50); err == nil {
		t.Error("a span past the input accepted")
	}
	if _, err := splitSpans(nil, 2, 2); err == nil {
		t.Error("subtask 2 of 2 accepted")
	}
}

func FuzzDecodePosition(f *testing.F) {
	f.Add(encodeSpans([]span{{1, 5, true}, {9, 12, false}}))
	f.Add([]byte{0x04})
	f.Fuzz(func(t *testing.T, b []byte) {
		spans, _, legacy, err := decodePosition(b)
		if err == nil && !legacy {
			for _, s := range spans {
				if s.Start < 0 || s.End < s.Start {
					t.Fatalf("decoded a bad span %+v", s)
				}
			}
		}
	})
}
