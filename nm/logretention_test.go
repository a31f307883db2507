package nm

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// An ended application's logs stay for the retention and go after it;
// beyond the cap the oldest go first; a live application's logs, and
// what an earlier NodeManager left, are kept.
func TestEndedApplicationsLogsGoAfterTheirRetention(t *testing.T) {
	dir := t.TempDir()
	n := &NodeManager{cfg: &Config{Dir: dir, LogRetention: time.Hour, MaxAppLogs: 3}, logger: hclog.NewNullLogger()}
	app := func(i int) string { return fmt.Sprintf("application_1700000000000_%04d", i) }
	mk := func(id string) {
		if err := os.MkdirAll(filepath.Join(dir, "logs", id, "container_1"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(id string) bool {
		_, err := os.Stat(filepath.Join(dir, "logs", id))
		return err == nil
	}
	// Left by an earlier NodeManager: one of a live application.
	mk(app(1))
	mk(app(2))
	start := time.Unix(1_800_000_000, 0)
	n.logs.seed(dir, start, map[string]bool{app(2): true})
	if n.logs.len() != 1 {
		t.Fatalf("seeded %d ended applications, want 1", n.logs.len())
	}
	mk(app(3))
	n.logs.add(app(3), start.Add(30*time.Minute))
	n.collectLogs(start.Add(59 * time.Minute))
	if !exists(app(1)) || !exists(app(3)) {
		t.Fatal("logs went within their retention")
	}
	n.collectLogs(start.Add(61 * time.Minute))
	if exists(app(1)) || !exists(app(3)) || !exists(app(2)) {
		t.Fatalf("after an hour: app 1 %v (want gone), app 3 %v, live app 2 %v", exists(app(1)), exists(app(3)), exists(app(2)))
	}
	// Five more end at once: the cap of three keeps the newest.
	for i := 4; i <= 8; i++ {
		mk(app(i))
		n.logs.add(app(i), start.Add(time.Duration(60+i)*time.Minute))
	}
	n.collectLogs(start.Add(70 * time.Minute))
	for i, want := range map[int]bool{3: false, 4: false, 5: false, 6: true, 7: true, 8: true} {
		if exists(app(i)) != want {
			t.Errorf("app %d's logs kept: %v, want %v", i, exists(app(i)), want)
		}
	}
	if n.logs.len() != 3 {
		t.Fatalf("%d ended applications remembered, want 3", n.logs.len())
	}
}
