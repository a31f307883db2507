package logfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The file never holds more than its limit: it rolls over to NAME.1,
// which holds the lines before, and a new file takes the next ones.
func TestRollsOverAtItsLimit(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, "jm.log", 100)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 39) + "\n" // 40 bytes
	for range 7 {
		if _, err := l.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cur, _ := os.ReadFile(filepath.Join(dir, "jm.log"))
	old, _ := os.ReadFile(filepath.Join(dir, "jm.log.1"))
	// 7 lines: 2 in each of three files; the first two are gone.
	if len(cur) != 40 || len(old) != 80 {
		t.Fatalf("current %d bytes, rolled %d bytes; want 40 and 80", len(cur), len(old))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("%d files, want the log and one rolled copy", len(entries))
	}
	if _, err := l.Write([]byte("late")); err == nil {
		t.Fatal("a write after Close succeeded")
	}
}

// A reopened log appends, counting what the file held.
func TestReopenAppends(t *testing.T) {
	dir := t.TempDir()
	l, _ := Open(dir, "tm.log", 50)
	_, _ = l.Write([]byte(strings.Repeat("a", 30)))
	l.Close()
	l, _ = Open(dir, "tm.log", 50)
	_, _ = l.Write([]byte(strings.Repeat("b", 30)))
	l.Close()
	cur, _ := os.ReadFile(filepath.Join(dir, "tm.log"))
	old, _ := os.ReadFile(filepath.Join(dir, "tm.log.1"))
	if string(cur) != strings.Repeat("b", 30) || string(old) != strings.Repeat("a", 30) {
		t.Fatalf("current %q, rolled %q", cur, old)
	}
}
