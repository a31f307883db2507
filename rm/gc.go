package rm

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/loom-project/loom/rm/state"
)

// Retention, after Nomad's core GC: the leader forgets ended applications
// (with their attempts and containers) beyond the newest
// MaxCompletedApps, and any that ended longer than CompletedAppTTL ago,
// and nodes that left the cluster longer than NodeTTL ago, through raft
// commands like every other change. Of the ended applications it keeps,
// only the newest KeepContainersOf keep their containers, KeepEndedContainers
// of them at most (YARN's reports
// of finished applications list none): containers are most of the state,
// hundreds a second. A running application keeps the newest
// KeepCompletedOfRunning of its completed containers its AM has been
// told of (and its AM containers): a session that runs for months
// replacing TaskManagers would otherwise grow the state with each. An
// application with a container still running, or a node with one, is
// kept until it has none.
const (
	// DefaultMaxCompletedApps is YARN's
	// yarn.resourcemanager.max-completed-applications.
	DefaultMaxCompletedApps = 1000
	// MaxCompletedAppsLimit bounds --max-completed-apps.
	MaxCompletedAppsLimit = 10000
	// KeepCompletedLimit bounds --keep-completed-containers.
	KeepCompletedLimit = 10000
	// gcBatch bounds the objects one raft entry forgets.
	gcBatch = 512
	// forgottenKept is how many forgotten applications the RM still
	// names when asked for them.
	forgottenKept = 10000
)

// gcLoop collects garbage every GCInterval, and sooner once GCPileUp
// containers have completed since the last collection (it looks every
// gcCheck).
func (s *Server) gcLoop(ctx context.Context) {
	last := s.clock.Now()
	after := s.State().Snapshot().CompletedContainers()
	s.tick(ctx, min(s.cfg.GCInterval, gcCheck), func(now time.Time) {
		done := s.State().Snapshot().CompletedContainers()
		due := now.Sub(last) >= s.cfg.GCInterval
		if !due && (s.cfg.GCPileUp <= 0 || done-after < s.cfg.GCPileUp) {
			return
		}
		if !due {
			s.logger.Debug("collecting early: containers completed since the last collection", "completed", done-after)
		}
		last = now
		if _, _, err := s.collectGarbage(now); err != nil {
			s.logger.Warn("forgetting ended applications and nodes failed", "error", err)
		}
		// What retention keeps (AMs not yet told, the newest ended
		// applications') is the floor the next pile-up counts from.
		after = s.State().Snapshot().CompletedContainers()
	})
}

// gcCheck is how often gcLoop looks for completed containers piling up.
const gcCheck = 5 * time.Second

// collectGarbage forgets what retention allows, and says how many
// applications and nodes it forgot.
func (s *Server) collectGarbage(now time.Time) (apps, nodes int, err error) {
	r := s.State().Snapshot()
	ended := r.EndedApps(nil)
	sort.SliceStable(ended, func(i, j int) bool { return ended[i].FinishTime < ended[j].FinishTime })
	excess := len(ended) - s.cfg.MaxCompletedApps
	var forget []string
	for i, a := range ended {
		if i < excess || now.Sub(time.UnixMilli(a.FinishTime)) > s.cfg.CompletedAppTTL {
			if deletable(r, a) {
				forget = append(forget, a.ID)
			}
		}
	}
	// The containers of all but the newest ended applications.
	forgetting := make(map[string]bool, len(forget))
	for _, id := range forget {
		forgetting[id] = true
	}
	// Newest first: an application keeps its containers while it is one
	// of the newest KeepContainersOf and they fit, with the newer ones', in
	// KeepEndedContainers, so a few large applications bound the state as
	// many small ones do.
	var prune []string
	kept := 0
	for i := len(ended) - 1; i >= 0; i-- {
		a := ended[i]
		n := len(r.ContainersByApp(nil, a.ID))
		if n == 0 || forgetting[a.ID] {
			continue
		}
		if len(ended)-i <= s.cfg.KeepContainersOf && kept+n <= s.cfg.KeepEndedContainers {
			kept += n
			continue
		}
		if deletable(r, a) {
			prune = append(prune, a.ID)
		}
	}
	done := s.completedOfRunning(r)
	var gone []string
	for _, n := range r.Nodes() {
		if !n.Live() && now.Sub(time.UnixMilli(n.StateChangedAt)) > s.cfg.NodeTTL {
			gone = append(gone, n.ID)
		}
	}
	if apps, err = s.forgetInBatches(CmdForgetApps, forget, now); err != nil {
		return apps, nodes, err
	}
	if _, err = s.forgetInBatches(CmdForgetContainers, prune, now); err != nil {
		return apps, nodes, err
	}
	if _, err = s.forgetInBatches(CmdForgetCompleted, done, now); err != nil {
		return apps, nodes, err
	}
	if nodes, err = s.forgetInBatches(CmdForgetNodes, gone, now); err != nil {
		return apps, nodes, err
	}
	if apps+nodes > 0 {
		s.logger.Info("forgot ended applications and departed nodes", "applications", apps, "nodes", nodes)
	}
	return apps, nodes, nil
}

// forgetInBatches commits a forget command for ids, gcBatch a raft
// entry, and returns how many the commands report forgotten.
func (s *Server) forgetInBatches(cmd CommandType, ids []string, now time.Time) (int, error) {
	forgot := 0
	for len(ids) > 0 {
		batch := ids[:min(gcBatch, len(ids))]
		ids = ids[len(batch):]
		res, _, err := s.raftApply(cmd, forgetCmd{IDs: batch, Now: now.UnixMilli()})
		if err != nil {
			return forgot, err
		}
		f, _ := res.(forgetResult)
		forgot += len(f.IDs)
	}
	return forgot, nil
}

// completedOfRunning are the completed containers running applications
// need no more: not an AM's, handed to the AM that would hear of them
// (this leader's record of what it told the current attempt; a new
// leader has told nothing yet and forgets none until it has), and older
// than the newest KeepCompletedOfRunning.
func (s *Server) completedOfRunning(r *state.ReadTxn) []string {
	var out []string
	for _, a := range r.LiveApps(nil) {
		told := s.soft.deliveredIndex(a.CurrentAttempt)
		var done []*state.Container
		for _, c := range r.ContainersByApp(nil, a.ID) {
			if !c.Completed() || c.IsAM {
				continue
			}
			// The current AM hears of its own attempt's, and of all with
			// keep-containers; no AM will of the rest.
			if (c.AttemptID == a.CurrentAttempt || a.KeepContainers) && c.CompletedIndex > told {
				continue
			}
			done = append(done, c)
		}
		if len(done) <= s.cfg.KeepCompletedOfRunning {
			continue
		}
		sort.Slice(done, func(i, j int) bool {
			if done[i].CompletedIndex != done[j].CompletedIndex {
				return done[i].CompletedIndex > done[j].CompletedIndex
			}
			return done[i].ID > done[j].ID
		})
		for _, c := range done[s.cfg.KeepCompletedOfRunning:] {
			out = append(out, c.ID)
		}
	}
	return out
}

// deletable reports whether no container of app still runs.
func deletable(r *state.ReadTxn, app *state.Application) bool {
	for _, c := range r.ContainersByApp(nil, app.ID) {
		if !c.Completed() {
			return false
		}
	}
	return true
}

// forgotten remembers, in each replica's memory, the last applications
// retention forgot and when, so that asking for one says what became of
// it. It is bounded to forgottenKept and not replicated: after a restart
// the RM says only what its retention is.
type forgotten struct {
	mu    sync.Mutex
	when  map[string]int64
	order []string
}

func (f *forgotten) add(ids []string, now int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.when == nil {
		f.when = map[string]int64{}
	}
	for _, id := range ids {
		if _, ok := f.when[id]; ok {
			continue
		}
		f.when[id] = now
		f.order = append(f.order, id)
	}
	for len(f.order) > forgottenKept {
		delete(f.when, f.order[0])
		f.order = f.order[1:]
	}
}

func (f *forgotten) at(id string) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.when[id]
	return t, ok
}

// notFoundReason says why there is no application id: forgotten by
// retention when, or unknown, with the retention either way.
func (s *Server) notFoundReason(id string) string {
	keep := fmt.Sprintf("the ResourceManager keeps the last %d ended applications, each for at most %s", s.cfg.MaxCompletedApps, humanDuration(s.cfg.CompletedAppTTL))
	if t, ok := s.fsm.forgotten.at(id); ok {
		return fmt.Sprintf("application %s ended and was forgotten at %s: %s", id, time.UnixMilli(t).UTC().Format(time.RFC3339), keep)
	}
	return fmt.Sprintf("application %s not found (%s); `loom app list --all` shows every application it holds", id, keep)
}

// humanDuration writes whole days as days (7 days, not 168h0m0s).
func humanDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d > day && d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}
