package sink

import (
	"fmt"
	"github.com/loom-project/loom/flinkrt/codec"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func visible(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	files, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Fields(string(b))...)
	}
	sort.Strings(lines)
	return strings.Join(lines, " ")
}

func write(t *testing.T, w *partFiles[string], vs ...string) {
	t.Helper()
	for _, v := range vs {
		if err := w.Write(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// Output is visible once the checkpoint covering it completes; a restart
// from that checkpoint commits what it left pending and drops what came
// after it.
func TestPartFilesCommitOnCheckpointsAndRestoreExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	w, err := openPartFiles[string](dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, "a", "b")
	if got := visible(t, dir); got != "" {
		t.Fatalf("visible before any checkpoint: %q", got)
	}
	st1, err := w.PreCommit(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(1); err != nil {
		t.Fatal(err)
	}
	if got := visible(t, dir); got != "a b" {
		t.Fatalf("visible after checkpoint 1: %q", got)
	}
	write(t, w, "c")
	st2, err := w.PreCommit(2)
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, "d") // after checkpoint 2: lost with the failure
	w.Close()

	// The job fails before checkpoint 2's completion is known, and restarts
	// from it: c is committed, d is gone.
	w, err = openPartFiles[string](dir, 0, st2)
	if err != nil {
		t.Fatal(err)
	}
	if got := visible(t, dir); got != "a b c" {
		t.Fatalf("visible after restoring checkpoint 2: %q", got)
	}
	write(t, w, "e")
	if err := w.EndInput(); err != nil {
		t.Fatal(err)
	}
	if got := visible(t, dir); got != "a b c e" {
		t.Fatalf("visible at the end: %q", got)
	}

	// Restoring checkpoint 1 drops everything written after it.
	if _, err := openPartFiles[string](dir, 0, st1); err != nil {
		t.Fatal(err)
	}
	if got := visible(t, dir); got != "a b" {
		t.Fatalf("visible after restoring checkpoint 1: %q", got)
	}
	if hidden, _ := filepath.Glob(filepath.Join(dir, ".part-*")); len(hidden) != 0 {
		t.Errorf("hidden files left: %v", hidden)
	}
}

// Restored at another parallelism, the part files of every old subtask
// are taken over by one new subtask: what a checkpoint left pending is
// committed, what came after it dropped, the finished files kept and
// never overwritten, through 2 → 3 → 1 → 3 subtasks.
func TestPartFilesChangeParallelism(t *testing.T) {
	dir := t.TempDir()
	var states [][]byte
	for s, vs := range [][]string{{"a0", "b0"}, {"a1"}} {
		w, err := openPartFiles[string](dir, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		write(t, w, vs[0])
		if _, err := w.PreCommit(1); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(1); err != nil {
			t.Fatal(err)
		}
		write(t, w, vs[1:]...)
		st, err := w.PreCommit(2) // pending: completes, but no one hears
		if err != nil {
			t.Fatal(err)
		}
		write(t, w, "lost"+vs[0])
		w.Close()
		states = append(states, st)
	}
	restore := func(states [][]byte, p int, add func(s int) []string) [][]byte {
		t.Helper()
		var next [][]byte
		for s := range p {
			b, err := splitParts(states, s, p)
			if err != nil {
				t.Fatal(err)
			}
			w, err := openPartFiles[string](dir, s, b)
			if err != nil {
				t.Fatal(err)
			}
			write(t, w, add(s)...)
			st, err := w.PreCommit(10)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(10); err != nil {
				t.Fatal(err)
			}
			w.Close()
			next = append(next, st)
		}
		return next
	}
	states = restore(states, 3, func(s int) []string { return []string{fmt.Sprintf("x%d", s)} })
	if got := visible(t, dir); got != "a0 a1 b0 x0 x1 x2" {
		t.Fatalf("2 → 3: visible %q", got)
	}
	if hidden, _ := filepath.Glob(filepath.Join(dir, ".part-*")); len(hidden) != 0 {
		t.Errorf("hidden files left: %v", hidden)
	}
	states = restore(states, 1, func(int) []string { return []string{"y"} })
	states = restore(states, 3, func(s int) []string { return []string{fmt.Sprintf("z%d", s)} })
	if got := visible(t, dir); got != "a0 a1 b0 x0 x1 x2 y z0 z1 z2" {
		t.Fatalf("→ 1 → 3: visible %q", got)
	}
	// Subtask 2 took its part files back with their numbering.
	if _, err := os.Stat(filepath.Join(dir, "part-2-1")); err != nil {
		t.Errorf("subtask 2 did not go on from its earlier files: %v", err)
	}
	if _, err := splitParts([][]byte{states[0], states[0]}, 0, 2); err == nil {
		t.Error("two states of one subtask accepted")
	}
	for _, bad := range [][]byte{[]byte(partsMagic), []byte(partsMagic + "\x01\x02"), {0xff}} {
		if _, err := splitParts([][]byte{bad}, 0, 1); err == nil {
			t.Errorf("corrupt state %q accepted", bad)
		}
	}
}

// A state of the format before sinks could change parallelism restores.
func TestPartFilesRestoreALegacyState(t *testing.T) {
	dir := t.TempDir()
	legacy := codec.MustFor[partState]().Append(nil, partState{Next: 3})
	if err := os.WriteFile(filepath.Join(dir, "part-1-2"), []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "part-1-3"), []byte("after\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openPartFiles[string](dir, 1, legacy); err != nil {
		t.Fatal(err)
	}
	if got := visible(t, dir); got != "kept" {
		t.Fatalf("visible %q, want kept", got)
	}
}
