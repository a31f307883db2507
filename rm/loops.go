package rm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/scheduler"
	"github.com/loom-project/loom/rm/state"
	"github.com/loom-project/loom/tlsutil"
)

// The leader-only loops. Each runs until ctx ends with the leadership.

// maxPlansInFlight bounds the plans proposed to raft and not yet applied.
// With a deeper pipeline a loaded RM, whose commits wait for a CPU behind
// thousands of heartbeats, goes on placing while it waits, and raft
// writes the plans to disk together.
const maxPlansInFlight = 8

// schedulerLoop places pending work whenever something changed. A plan is
// committed through raft as one entry before any AM sees it; the next plan
// is made while earlier ones commit (up to maxPlansInFlight), counting
// their placements as made.
func (s *Server) schedulerLoop(ctx context.Context) {
	sch := scheduler.New(nil, s.cfg.MaxBatch)
	sch.NodeLocalityDelay, sch.RackLocalityDelay = s.cfg.NodeLocalityDelay, s.cfg.RackLocalityDelay
	// An ask held back for locality is planned again when the nodes have
	// heartbeated once more: each heartbeat is an opportunity.
	var again <-chan time.Time
	type pending struct {
		future raft.ApplyFuture
		plan   []*state.Container
	}
	var queue []pending
	var inflight []*state.Container
	var lastPass time.Time
	idle := false
	// settle waits for the oldest plan in flight to be applied.
	settle := func() bool {
		p := queue[0]
		queue = queue[1:]
		inflight = inflight[len(p.plan):]
		if err := p.future.Error(); err != nil {
			s.logger.Warn("committing a scheduling plan failed", "containers", len(p.plan), "error", err)
			return false
		}
		if res, _ := p.future.Response().(*fsmResult); res != nil && res.Err != nil {
			s.logger.Warn("a scheduling plan was refused", "error", res.Err)
			return true
		}
		s.metrics.allocations.Add(float64(len(p.plan)))
		return true
	}
	defer func() {
		for len(queue) > 0 {
			settle()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.schedulerKick:
		case <-again:
		}
		again = nil
		// A pass that follows one which placed nothing waits out the
		// pace: what woke it (a completion, an ask) is seldom alone.
		if wait := time.Until(lastPass.Add(minPassGap)); idle && wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		for ctx.Err() == nil {
			began := time.Now()
			lastPass, idle = began, false
			r := s.State().Snapshot()
			sch.SetTree(queueTreeOf(r.Meta()))
			plan := sch.Plan(r, s.soft.asksFor, s.epoch.Load(), inflight)
			s.metrics.plan.Observe(time.Since(began).Seconds())
			sch.Waiting = s.soft.swapWaiting(sch.Waiting)
			if sch.Delayed {
				again = time.After(s.cfg.NMHeartbeat)
			}
			if len(plan) == 0 {
				if len(queue) == 0 {
					idle = true
					break
				}
				if !settle() {
					break
				}
				continue
			}
			f, err := s.raftApplyAsync(CmdPlacePlan, newPlacePlan(s.epoch.Load(), s.nowMS(), plan))
			if err != nil {
				s.logger.Warn("committing a scheduling plan failed", "containers", len(plan), "error", err)
				break
			}
			queue = append(queue, pending{f, plan})
			inflight = append(inflight, plan...)
			if len(queue) >= maxPlansInFlight && !settle() {
				break
			}
		}
	}
}

// minPassGap is the least time from a scheduling pass that placed
// nothing to the next one (YARN's asynchronous scheduling interval is
// 5 ms): the kicks between them are taken by one pass.
const minPassGap = 10 * time.Millisecond

// tick runs fn every interval of the RM's clock until ctx ends.
func (s *Server) tick(ctx context.Context, interval time.Duration, fn func(now time.Time)) {
	c, stop := s.clock.Tick(interval)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-c:
			fn(now)
		}
	}
}

func checkInterval(expiry time.Duration) time.Duration {
	return max(min(expiry/5, time.Second), 20*time.Millisecond)
}

// nodeLivenessLoop marks nodes LOST when they stop heartbeating.
func (s *Server) nodeLivenessLoop(ctx context.Context) {
	s.tick(ctx, checkInterval(s.cfg.NodeExpiry), func(now time.Time) {
		for _, n := range s.State().Snapshot().Nodes() {
			if !n.Live() {
				continue
			}
			seen := s.soft.nodeSeenAt(n.ID, now)
			if now.Sub(seen) <= s.cfg.NodeExpiry {
				continue
			}
			report := fmt.Sprintf("no heartbeat for %s (expiry %s)", now.Sub(seen).Round(time.Millisecond), s.cfg.NodeExpiry)
			if _, _, err := s.raftApply(CmdSetNodeState, setNodeStateCmd{NodeID: n.ID, State: yarnpb.NodeState_NODE_LOST, Report: report, Now: now.UnixMilli()}); err != nil {
				s.logger.Warn("marking node lost failed", "node_id", n.ID, "error", err)
				continue
			}
			s.soft.forgetNode(n.ID)
			s.logger.Warn("node lost", "node_id", n.ID, "reason", report)
		}
	})
}

// amLivenessLoop fails attempts whose AM stopped calling, or never
// registered (YARN's AMLivelinessMonitor watches LAUNCHED attempts too),
// and drops the soft state of attempts and nodes that ended.
func (s *Server) amLivenessLoop(ctx context.Context) {
	s.tick(ctx, checkInterval(s.cfg.AMExpiry), func(now time.Time) {
		r := s.State().Snapshot()
		live := r.LiveAttempts(nil)
		s.soft.retain(live, r.Nodes())
		for _, at := range live {
			var expiry time.Duration
			var why string
			switch {
			case at.State == yarnpb.AttemptState_ATTEMPT_RUNNING && !at.Unregistered:
				expiry, why = s.cfg.AMExpiry, "no heartbeat for"
			case at.State == yarnpb.AttemptState_ATTEMPT_LAUNCHED:
				expiry, why = s.cfg.AMRegisterTimeout, "its AM container started and did not register within"
			default:
				continue
			}
			seen := s.soft.amSeenAt(at.ID, now)
			if now.Sub(seen) <= expiry {
				continue
			}
			diag := fmt.Sprintf("ApplicationMaster for attempt %s timed out: %s %s", at.ID, why, now.Sub(seen).Round(time.Millisecond))
			if _, _, err := s.raftApply(CmdFailAttempt, failAttemptCmd{AttemptID: at.ID, Diagnostics: diag, Now: now.UnixMilli()}); err != nil {
				s.logger.Warn("failing expired attempt failed", "attempt_id", at.ID, "error", err)
				continue
			}
			if am := s.State().Snapshot().Container(at.AMContainerID); am != nil {
				s.stopOnNodes([]*state.Container{am})
			}
			s.soft.forgetAttempt(at.ID)
			s.logger.Warn("application master expired", "attempt_id", at.ID)
		}
	})
}

// cleanupLoop reclaims containers that were allocated but never started.
func (s *Server) cleanupLoop(ctx context.Context) {
	s.tick(ctx, checkInterval(s.cfg.AllocExpiry), func(now time.Time) {
		var expired []*yarnpb.ContainerStatus
		byNode := map[string][]*yarnpb.ContainerStatus{}
		for _, c := range s.State().Snapshot().LiveContainers() {
			if c.State != yarnpb.ContainerState_CONTAINER_ALLOCATED && c.State != yarnpb.ContainerState_CONTAINER_ACQUIRED {
				continue
			}
			if now.UnixMilli()-c.AllocatedAt <= s.cfg.AllocExpiry.Milliseconds() {
				continue
			}
			st := &yarnpb.ContainerStatus{ContainerId: c.ID, State: yarnpb.ContainerState_CONTAINER_COMPLETED, ExitStatus: state.ExitAborted,
				Diagnostics: fmt.Sprintf("Container expired since it was unused for %s", s.cfg.AllocExpiry)}
			byNode[c.NodeID] = append(byNode[c.NodeID], st)
			expired = append(expired, st)
		}
		for node, sts := range byNode {
			if _, _, err := s.raftApply(CmdContainerStatuses, containerStatusesCmd{NodeID: node, Statuses: sts, Now: now.UnixMilli()}); err != nil {
				s.logger.Warn("reclaiming unused containers failed", "node_id", node, "error", err)
			}
		}
		if len(expired) > 0 {
			s.logger.Info("reclaimed unused containers", "count", len(expired))
		}
	})
}

// launcherLoop starts AM containers as soon as they are allocated.
func (s *Server) launcherLoop(ctx context.Context) {
	launched := map[string]bool{}
	for ctx.Err() == nil {
		st := s.State()
		r := st.Snapshot()
		ws := memdb.NewWatchSet()
		ws.Add(st.AbandonCh())
		seen := map[string]bool{}
		for _, at := range r.LiveAttempts(ws) {
			if at.State != yarnpb.AttemptState_ATTEMPT_ALLOCATED {
				continue
			}
			seen[at.ID] = true
			if launched[at.ID] {
				continue
			}
			launched[at.ID] = true
			s.leaderWG.Add(1)
			go func() {
				defer s.leaderWG.Done()
				s.launchAM(ctx, r, at)
			}()
		}
		for id := range launched {
			if !seen[id] {
				delete(launched, id)
			}
		}
		_ = ws.WatchCtx(ctx)
	}
}

// launchAM starts an attempt's AM container on its node. A failure fails
// the attempt through the AM container's completion.
func (s *Server) launchAM(ctx context.Context, r *state.ReadTxn, at *state.Attempt) {
	c := r.Container(at.AMContainerID)
	app := r.App(nil, at.AppID)
	if c == nil || app == nil {
		return
	}
	logger := s.logger.With("attempt_id", at.ID, "container_id", c.ID, "node_id", c.NodeID)
	err := func() error {
		var launch yarnpb.ContainerLaunchContext
		if err := proto.Unmarshal(app.AMLaunch, &launch); err != nil {
			return fmt.Errorf("decoding the AM launch context: %w", err)
		}
		if launch.Env == nil {
			launch.Env = map[string]string{}
		}
		creds, err := s.appCredentials(app)
		if err != nil {
			return err
		}
		if creds[tlsutil.CredentialAMToken], err = s.amToken(at.ID); err != nil {
			return err
		}
		// The application's own credentials (a job's object-store keys)
		// go with the RM's; submission refused any that share a name.
		for name, b := range launch.Credentials {
			if _, ours := creds[name]; !ours {
				creds[name] = b
			}
		}
		launch.Credentials = creds
		ctok, err := s.containerToken(c, app.User, s.clock.Now())
		if err != nil {
			return err
		}
		launch.Env["LOOM_APP_ATTEMPT_ID"] = at.ID
		launch.Env["LOOM_RM_ADDRS"] = strings.Join(s.rmAddrs(), ",")
		launch.Env["LOOM_AM_MEMORY_MB"] = fmt.Sprint(c.Resource.MemoryMB)
		launch.Env[tlsutil.EnvAdmins] = strings.Join(s.cfg.Admins, ",")
		nm, release, err := s.nms.client(c.NodeID)
		if err != nil {
			return err
		}
		defer release()
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		resp, err := nm.StartContainers(cctx, &yarnpb.StartContainersRequest{Containers: []*yarnpb.StartContainerRequest{{
			ContainerId:   c.ID,
			ApplicationId: app.ID,
			User:          app.User,
			Resource:      c.Resource.Proto(),
			LaunchContext: &launch,
			Token:         ctok,
		}}})
		if err != nil {
			return err
		}
		if msg, ok := resp.Failed[c.ID]; ok {
			// A leader before this one may have started it: the launch
			// is done if the node runs it (YARN's AlreadyExists case).
			st, serr := nm.GetContainerStatuses(cctx, &yarnpb.GetContainerStatusesRequest{ContainerIds: []string{c.ID}})
			if serr == nil && len(st.Statuses) == 1 && st.Statuses[0].State != yarnpb.ContainerState_CONTAINER_COMPLETED {
				logger.Info("the AM container was already started", "state", st.Statuses[0].State)
				return nil
			}
			return fmt.Errorf("%s", msg)
		}
		return nil
	}()
	if err == nil {
		logger.Debug("AM container started")
		return
	}
	if ctx.Err() != nil {
		return
	}
	logger.Warn("launching the AM container failed", "error", err)
	st := &yarnpb.ContainerStatus{ContainerId: c.ID, State: yarnpb.ContainerState_CONTAINER_COMPLETED, ExitStatus: state.ExitLaunchFailed,
		Diagnostics: fmt.Sprintf("launching the AM container on node %s failed: %v", c.NodeID, err)}
	if _, _, err := s.raftApply(CmdContainerStatuses, containerStatusesCmd{NodeID: c.NodeID, Statuses: []*yarnpb.ContainerStatus{st}, Now: s.nowMS()}); err != nil {
		logger.Warn("recording the launch failure failed", "error", err)
	}
}

// rmCredentials are the names of the credentials the RM gives an AM
// container, which a submission may not carry.
var rmCredentials = []string{tlsutil.CredentialCA, tlsutil.CredentialCert, tlsutil.CredentialKey, tlsutil.CredentialAMToken}

// appCredentials signs the certificate of an application's containers:
// its AM presents it to the RM and to NodeManagers, and hands it to the
// containers it starts. It is refused once the application has ended.
func (s *Server) appCredentials(app *state.Application) (map[string][]byte, error) {
	if s.cfg.CA == nil || s.cfg.CA.Key == nil {
		return nil, errors.New("the ResourceManager holds no CA key (--tls-ca-key), so it cannot give the AM container its certificate")
	}
	iss, err := s.cfg.CA.Sign(tlsutil.CertRequest{Identity: tlsutil.Identity{Kind: tlsutil.KindApp, Name: app.ID, User: app.User}})
	if err != nil {
		return nil, err
	}
	return iss.Credentials(s.cfg.CA.PEM), nil
}

// rmAddrs lists the gRPC addresses of every RM replica (the raft server
// ids), for containers to find the leader.
func (s *Server) rmAddrs() []string {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return []string{s.cfg.AdvertiseAddr}
	}
	var out []string
	for _, srv := range f.Configuration().Servers {
		out = append(out, string(srv.ID))
	}
	return out
}
