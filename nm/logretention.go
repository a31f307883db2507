package nm

import (
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/loom-project/loom/proto/yarnpb"
)

// Container logs outlive their containers, but not forever: YARN's
// yarn.nodemanager.log.retain-seconds without log aggregation. An
// application's log directory is deleted LogRetention after the
// application ended on this node (the RM told the node to clean it up),
// and of more than MaxAppLogs ended applications the oldest go first, so
// a node that runs hundreds of applications a minute keeps a bounded
// number of directories whatever the retention.

// DefaultLogRetention is YARN's default retention, three hours.
const DefaultLogRetention = 3 * time.Hour

// DefaultMaxAppLogs bounds the ended applications whose logs a node keeps.
const DefaultMaxAppLogs = 10_000

// endedLogs records when each application whose logs the node keeps
// ended here.
type endedLogs struct {
	mu    sync.Mutex
	ended map[string]time.Time
}

// seed records the log directories an earlier NodeManager on this dir
// left, of applications with no container here now, as ended at now:
// their retention starts again rather than cutting it short.
func (l *endedLogs) seed(dir string, now time.Time, live map[string]bool) {
	entries, _ := os.ReadDir(filepath.Join(dir, "logs"))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = map[string]time.Time{}
	for _, e := range entries {
		if _, _, err := yarnpb.ParseAppID(e.Name()); err == nil && e.IsDir() && !live[e.Name()] {
			l.ended[e.Name()] = now
		}
	}
}

func (l *endedLogs) add(appID string, at time.Time) {
	l.mu.Lock()
	if l.ended == nil {
		l.ended = map[string]time.Time{}
	}
	if _, ok := l.ended[appID]; !ok {
		l.ended[appID] = at
	}
	l.mu.Unlock()
}

// due removes and returns the applications whose logs are to be deleted
// at now: those ended before now-retention, and the oldest beyond keep.
func (l *endedLogs) due(now time.Time, retention time.Duration, keep int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	type entry struct {
		id string
		at time.Time
	}
	all := make([]entry, 0, len(l.ended))
	for id, at := range l.ended {
		all = append(all, entry{id, at})
	}
	sort.Slice(all, func(i, j int) bool {
		return all[i].at.Before(all[j].at) || (all[i].at.Equal(all[j].at) && all[i].id < all[j].id)
	})
	var out []string
	for i, e := range all {
		if now.Sub(e.at) >= retention || len(all)-i > keep {
			out = append(out, e.id)
			delete(l.ended, e.id)
		}
	}
	return out
}

func (l *endedLogs) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ended)
}

// collectLogs deletes the log directories retention lets go.
func (n *NodeManager) collectLogs(now time.Time) {
	for _, id := range n.logs.due(now, n.cfg.LogRetention, n.cfg.MaxAppLogs) {
		if err := os.RemoveAll(filepath.Join(n.cfg.Dir, "logs", id)); err != nil {
			n.logger.Warn("removing an application's logs failed", "app_id", id, "error", err)
		}
	}
}
