package rm

import (
	"context"
	"fmt"
	"time"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/scheduler"
	"github.com/loom-project/loom/rm/state"
)

// preemptionInterval is how often the leader looks for queues below their
// guarantee (YARN's monitoring interval is 3 s).
const preemptionInterval = time.Second

// preemptionLoop takes containers back for queues below their guarantee,
// with YARN's protocol: each pass chooses the containers (the
// scheduler's Preempt), warns their AMs through the preempt list of the
// Allocate response, and kills those still chosen once the grace is
// over. A container no longer needed (the starved queue's asks went, or
// room freed up) is let go: its AM hears it dropped from the list.
func (s *Server) preemptionLoop(ctx context.Context) {
	if !s.cfg.Preemption {
		return
	}
	sch := scheduler.New(nil, 0)
	sch.PreemptionPerRound = s.cfg.PreemptionPerRound
	defer s.soft.setPreempting(map[string]preemption{})
	s.tick(ctx, preemptionInterval, func(now time.Time) {
		r := s.State().Snapshot()
		tree := queueTreeOf(r.Meta())
		if len(tree.LeafNames()) < 2 {
			s.soft.setPreempting(nil)
			return // one queue: nobody to take from for whom
		}
		sch.SetTree(tree)
		marked := s.soft.preemptingSet()
		victims := sch.Preempt(r, s.soft.asksFor, marked)
		prev := s.soft.preemptions()
		next := make(map[string]preemption, len(victims))
		for _, v := range victims {
			c := v.Container
			p, ok := prev[c.ID]
			if !ok {
				p = preemption{attemptID: c.AttemptID, nodeID: c.NodeID, deadline: now.Add(s.cfg.PreemptionGrace),
					why: fmt.Sprintf("Container preempted by the scheduler: queue %s is over its guarantee and %s below theirs", v.Queue, v.For)}
				s.logger.Info("preempting a container", "container_id", c.ID, "app_id", c.AppID, "queue", v.Queue, "for", v.For, "grace", s.cfg.PreemptionGrace)
			}
			next[c.ID] = p
		}
		for id := range prev {
			if _, ok := next[id]; !ok {
				s.logger.Info("no longer preempting a container", "container_id", id)
			}
		}
		s.soft.setPreempting(next)
		s.killPreempted(r, next, now)
	})
}

// killPreempted ends the chosen containers whose grace is over.
func (s *Server) killPreempted(r *state.ReadTxn, chosen map[string]preemption, now time.Time) {
	byNode := map[string][]*yarnpb.ContainerStatus{}
	var stop []*state.Container
	for id, p := range chosen {
		if now.Before(p.deadline) {
			continue
		}
		c := r.Container(id)
		if c == nil || c.Completed() {
			continue
		}
		byNode[p.nodeID] = append(byNode[p.nodeID], &yarnpb.ContainerStatus{ContainerId: id, State: yarnpb.ContainerState_CONTAINER_COMPLETED, ExitStatus: state.ExitPreempted, Diagnostics: p.why})
		stop = append(stop, c)
	}
	for node, sts := range byNode {
		if _, _, err := s.raftApply(CmdContainerStatuses, containerStatusesCmd{NodeID: node, Statuses: sts, Now: now.UnixMilli()}); err != nil {
			s.logger.Warn("killing preempted containers failed", "node_id", node, "error", err)
			continue
		}
		s.logger.Info("killed preempted containers", "node_id", node, "count", len(sts))
	}
	s.stopOnNodes(stop)
}
