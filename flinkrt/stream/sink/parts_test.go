package sink

import (
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
