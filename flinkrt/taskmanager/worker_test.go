package taskmanager

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A TaskManager keeps the programs it used last, at most maxArtifacts,
// and always the one it just fetched.
func TestArtifactsAreBounded(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	name := func(i int) string { return strings.Repeat(fmt.Sprint(i%10), 64) }
	for i := range 10 {
		p := filepath.Join(dir, name(i))
		if err := os.WriteFile(p, []byte("program"), 0o755); err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i) * time.Minute)
		_ = os.Chtimes(p, at, at)
	}
	// The oldest, just fetched again, is kept.
	evictArtifacts(dir, name(0))
	entries, _ := os.ReadDir(dir)
	if len(entries) != maxArtifacts {
		t.Fatalf("%d artifacts kept, want %d", len(entries), maxArtifacts)
	}
	for _, keep := range []int{0, 9, 8, 3} {
		if _, err := os.Stat(filepath.Join(dir, name(keep))); err != nil {
			t.Errorf("artifact %d: %v", keep, err)
		}
	}
	for _, gone := range []int{1, 2} {
		if _, err := os.Stat(filepath.Join(dir, name(gone))); err == nil {
			t.Errorf("the least recently used artifact %d was kept", gone)
		}
	}
}
