package rm

import (
	"context"
	"iter"
	"slices"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/scheduler"
	"github.com/loom-project/loom/rm/state"
)

// maxAllocateWait bounds how long an Allocate call is held.
const maxAllocateWait = 10 * time.Second

type amEndpoint struct {
	yarnpb.UnimplementedApplicationMasterServiceServer
	s *Server
}

var _ yarnpb.ApplicationMasterServiceServer = (*amEndpoint)(nil)

// currentAttempt returns the attempt and its application, or an error
// saying why the caller may not act for it: it must hold the
// application's certificate and the attempt's AMToken (tok). roll, when
// not nil, is the token to replace tok with.
func (s *Server) currentAttempt(ctx context.Context, r *state.ReadTxn, attemptID string, tok []byte) (at *state.Attempt, app *state.Application, roll []byte, err error) {
	appID, err := yarnpb.AppIDOfAttempt(attemptID)
	if err != nil {
		return nil, nil, nil, errdefs.InvalidArgument("%v", err)
	}
	if err := isAttemptOfCaller(ctx, appID); err != nil {
		return nil, nil, nil, err
	}
	if roll, err = s.checkAMToken(tok, attemptID); err != nil {
		return nil, nil, nil, err
	}
	if at = r.Attempt(nil, attemptID); at == nil {
		return nil, nil, nil, errdefs.NotFound("application attempt %s not found", attemptID)
	}
	if app = r.App(nil, at.AppID); app == nil {
		return nil, nil, nil, errdefs.NotFound("application %s not found", at.AppID)
	}
	return at, app, roll, nil
}

func (e *amEndpoint) RegisterApplicationMaster(ctx context.Context, req *yarnpb.RegisterApplicationMasterRequest) (*yarnpb.RegisterApplicationMasterResponse, error) {
	if err := e.s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := e.s.State().Snapshot()
	at, app, _, err := e.s.currentAttempt(ctx, r, req.ApplicationAttemptId, req.AmToken)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if at.Terminal() || app.Terminal() || app.CurrentAttempt != at.ID {
		return nil, errdefs.ToGRPC(errdefs.FailedPrecondition("application attempt %s is no longer current (attempt %s, application %s)", at.ID, state.AttemptStateName(at.State), state.AppStateName(app.State)))
	}
	if len(req.Host) > maxNameLen || len(req.TrackingUrl) > maxURLLen {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("the AM's host is at most %d bytes and its tracking URL at most %d", maxNameLen, maxURLLen))
	}
	if _, _, err := e.s.raftApply(CmdRegisterAttempt, registerAttemptCmd{
		AttemptID: at.ID, Host: req.Host, RPCPort: req.RpcPort, TrackingURL: req.TrackingUrl, Now: e.s.nowMS(),
	}); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	e.s.soft.touchAM(at.ID, e.s.clock.Now())
	e.s.soft.setLastResponse(at.ID, nil)
	resp := &yarnpb.RegisterApplicationMasterResponse{
		MaxCapability:       e.s.cfg.MaxAllocation.Proto(),
		Queue:               app.Queue,
		ApplicationId:       app.ID,
		HeartbeatIntervalMs: e.s.cfg.AMExpiry.Milliseconds() / 3,
	}
	if app.KeepContainers {
		for _, c := range r.ContainersByApp(nil, app.ID) {
			if !c.Completed() && !c.IsAM && c.AttemptID != at.ID {
				resp.ContainersFromPreviousAttempts = append(resp.ContainersFromPreviousAttempts, c.Proto())
			}
		}
	}
	e.s.logger.Info("application master registered", "attempt_id", at.ID, "host", req.Host, "tracking_url", req.TrackingUrl)
	return resp, nil
}

func (e *amEndpoint) Allocate(ctx context.Context, req *yarnpb.AllocateRequest) (*yarnpb.AllocateResponse, error) {
	s := e.s
	if err := s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := s.State().Snapshot()
	at, app, roll, err := s.currentAttempt(ctx, r, req.ApplicationAttemptId, req.AmToken)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if at.Terminal() || app.CurrentAttempt != at.ID {
		return &yarnpb.AllocateResponse{ResponseId: req.ResponseId, Command: yarnpb.AMCommand_AM_SHUTDOWN}, nil
	}
	if !at.Registered {
		return nil, errdefs.ToGRPC(errdefs.FailedPrecondition("application attempt %s has not registered; call RegisterApplicationMaster first", at.ID))
	}
	asks, err := s.convertAsks(req.Asks, queueTreeOf(r.Meta()), app.Queue)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	counted := withoutUndelivered(asks, r.EachContainerOfAttempt(at.ID), req.ResponseId)
	s.soft.touchAM(at.ID, s.clock.Now())
	if s.soft.updateAsks(at.ID, asks, req.BlacklistAdditions, req.BlacklistRemovals) {
		s.kickScheduler()
	}
	if len(req.Releases) > 0 {
		var rel []*state.Container
		for _, id := range req.Releases {
			if c := r.Container(id); c != nil && c.AppID == app.ID && !c.Completed() && !c.IsAM {
				rel = append(rel, c)
			}
		}
		if len(rel) > 0 {
			if _, _, err := s.raftApply(CmdReleaseContainers, releaseContainersCmd{AttemptID: at.ID, IDs: req.Releases, Now: s.nowMS()}); err != nil {
				return nil, errdefs.ToGRPC(err)
			}
			s.stopOnNodes(rel)
		}
	}
	if p := req.Progress; p >= 0 && p <= 1 && p != app.Progress {
		if _, _, err := s.raftApply(CmdAppProgress, appProgressCmd{AppID: app.ID, Progress: p}); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
	}

	lock := s.soft.amLock(at.ID)
	lock.Lock()
	last := s.soft.lastResponse(at.ID)
	if last != nil {
		switch req.ResponseId {
		case last.ResponseId:
		case last.ResponseId - 1:
			// The AM did not get our last answer: send it again.
			lock.Unlock()
			return last, nil
		default:
			lock.Unlock()
			return &yarnpb.AllocateResponse{ResponseId: last.ResponseId, Command: yarnpb.AMCommand_AM_RESYNC}, nil
		}
	}
	lock.Unlock()

	wait := min(time.Duration(req.WaitMs)*time.Millisecond, maxAllocateWait)
	deadline := time.Now().Add(wait)
	for {
		lock.Lock()
		resp, done, ws, err := s.collectAllocate(at.ID, app, req.ResponseId, counted)
		if err != nil {
			lock.Unlock()
			return nil, errdefs.ToGRPC(err)
		}
		if done || !time.Now().Before(deadline) {
			resp.AmToken = roll
			if len(resp.Allocated) > 0 {
				ids := make([]string, len(resp.Allocated))
				for i, c := range resp.Allocated {
					ids[i] = c.Id
				}
				if _, _, err := s.raftApply(CmdAcquireContainers, acquireContainersCmd{IDs: ids, Response: resp.ResponseId}); err != nil {
					lock.Unlock()
					return nil, errdefs.ToGRPC(err)
				}
			}
			s.soft.setLastResponse(at.ID, resp)
			lock.Unlock()
			return resp, nil
		}
		lock.Unlock()
		wctx, cancel := context.WithDeadline(ctx, deadline)
		_ = ws.WatchCtx(wctx)
		cancel()
		if ctx.Err() != nil {
			return nil, errdefs.ToGRPC(ctx.Err())
		}
	}
}

// maxHandedOut bounds the containers one Allocate answer hands over,
// for the write that records them to stay small (see maxBatchStatuses);
// the AM is handed the rest on its next call, at once.
const maxHandedOut = 256

// handOut reports whether the next Allocate answer of an AM whose last
// answer was respID hands c to it: c is placed and not handed out yet, or
// was handed out in a later answer, which the AM never got because the
// leader that sent it went (a new leader has none of the answers its
// predecessor sent to send again).
func handOut(c *state.Container, respID int32) bool {
	switch c.State {
	case yarnpb.ContainerState_CONTAINER_ALLOCATED:
		return true
	case yarnpb.ContainerState_CONTAINER_ACQUIRED:
		return c.HandedIn > respID
	}
	return false
}

// collectAllocate builds an Allocate response from the state: containers
// placed for the attempt and not yet handed over (the oldest
// maxHandedOut), each with its container token, and completions the AM
// has not seen. done is false when there is
// nothing new; ws then fires when there may be. Containers the call's
// asks were lowered by (counted) are not taken off the asks again when
// they are handed over.
func (s *Server) collectAllocate(attemptID string, app *state.Application, respID int32, counted map[string]bool) (*yarnpb.AllocateResponse, bool, memdb.WatchSet, error) {
	appID, keep, now := app.ID, app.KeepContainers, s.clock.Now()
	st := s.State()
	r := st.Snapshot()
	ws := memdb.NewWatchSet()
	ws.Add(st.AbandonCh())
	resp := &yarnpb.AllocateResponse{ResponseId: respID + 1}
	at := r.Attempt(ws, attemptID)
	if at == nil || at.Terminal() {
		resp.Command = yarnpb.AMCommand_AM_SHUTDOWN
		return resp, true, ws, nil
	}
	delivered := s.soft.deliveredIndex(attemptID)
	maxIndex := delivered
	var handed, placedSince []*state.Container
	// Woken by what the AM is told of alone: its containers' starts
	// would wake it to find nothing new.
	r.WatchNewsForAM(ws, appID)
	for c := range r.EachContainerOfApp(appID) {
		if c.IsAM {
			continue
		}
		if c.AttemptID == attemptID && handOut(c, respID) && len(handed) < maxHandedOut {
			p, err := s.withToken(c, app.User, now)
			if err != nil {
				return nil, false, nil, err
			}
			resp.Allocated = append(resp.Allocated, p)
			handed = append(handed, c)
			if !counted[c.ID] {
				placedSince = append(placedSince, c)
			}
		}
		if c.Completed() && c.CompletedIndex > delivered && (c.AttemptID == attemptID || keep) {
			resp.Completed = append(resp.Completed, c.Status())
			maxIndex = max(maxIndex, c.CompletedIndex)
		}
	}
	room := s.clusterRoom(r)
	resp.Available, resp.NumClusterNodes = room.available.Proto(), room.nodes
	preempt, news, changed := s.soft.preemptionFor(attemptID)
	ws.Add(changed)
	resp.Preempt = preempt
	done := len(resp.Allocated)+len(resp.Completed) > 0 || news
	if done {
		s.soft.markDelivered(attemptID, placedSince, maxIndex)
		s.soft.preemptionSent(attemptID, preempt)
	}
	return resp, done, ws, nil
}

// Bounds on an ask's locality.
const (
	maxAskNodes = 1000
	maxAskRacks = 100
)

func (s *Server) convertAsks(in []*yarnpb.ResourceRequest, tree *scheduler.QueueTree, queue string) ([]*scheduler.Ask, error) {
	out := make([]*scheduler.Ask, 0, len(in))
	for _, a := range in {
		switch {
		case a.Count < 0:
			return nil, errdefs.InvalidArgument("ask count must not be negative, got %d", a.Count)
		case len(a.Nodes) > maxAskNodes || len(a.Racks) > maxAskRacks:
			return nil, errdefs.InvalidArgument("an ask names %d nodes and %d racks; at most %d and %d", len(a.Nodes), len(a.Racks), maxAskNodes, maxAskRacks)
		case a.MaxPerNode < 0:
			return nil, errdefs.InvalidArgument("max_per_node must not be negative, got %d", a.MaxPerNode)
		case a.NodeLabel != "" && !yarnpb.NodeLabel(a.NodeLabel):
			return nil, errdefs.InvalidArgument("node label %.32q: a node label is 1 to 128 letters, digits, '.', '_' and '-'", a.NodeLabel)
		case !tree.MayUseLabel(queue, a.NodeLabel):
			return nil, errdefs.PermissionDenied("queue %s may not use nodes labeled %q: its accessible_node_labels does not list it", queue, a.NodeLabel)
		}
		for _, name := range append(slices.Clip(a.Nodes), a.Racks...) {
			if name == "" || len(name) > 255 {
				return nil, errdefs.InvalidArgument("an ask's preferred node or rack %.32q: want 1 to 255 characters", name)
			}
		}
		res := state.ResourceFrom(a.Capability)
		if a.Count > 0 {
			if err := s.validateResource("container", res); err != nil {
				return nil, err
			}
		}
		relax := a.RelaxLocality == nil || *a.RelaxLocality
		out = append(out, &scheduler.Ask{
			Key:        scheduler.AskKey{AllocationRequestID: a.AllocationRequestId, Priority: a.Priority, Capability: res},
			Count:      a.Count,
			Nodes:      a.Nodes,
			Relax:      relax,
			Racks:      a.Racks,
			Label:      a.NodeLabel,
			MaxPerNode: a.MaxPerNode,
		})
	}
	return out, nil
}

// withoutUndelivered lowers an AM's asks by the containers placed for its
// attempt that it has not been handed yet: it asked before it knew of
// them (placed after its last answer, or by a leader that failed before
// answering), and counting them again would place them twice.
//
// It returns the containers it counted.
func withoutUndelivered(asks []*scheduler.Ask, containers iter.Seq[*state.Container], respID int32) map[string]bool {
	var pending map[scheduler.AskKey]int32
	var counted map[string]bool
	for c := range containers {
		if !c.IsAM && handOut(c, respID) {
			if counted == nil {
				counted, pending = map[string]bool{}, map[scheduler.AskKey]int32{}
			}
			counted[c.ID] = true
			pending[scheduler.AskKey{AllocationRequestID: c.AllocationRequestID, Priority: c.Priority, Capability: c.Resource}]++
		}
	}
	for _, a := range asks {
		if n := pending[a.Key]; n > 0 {
			a.Count = max(a.Count-n, 0)
		}
	}
	return counted
}

func (e *amEndpoint) FinishApplicationMaster(ctx context.Context, req *yarnpb.FinishApplicationMasterRequest) (*yarnpb.FinishApplicationMasterResponse, error) {
	s := e.s
	if err := s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := s.State().Snapshot()
	at, app, _, err := s.currentAttempt(ctx, r, req.ApplicationAttemptId, req.AmToken)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if app.Terminal() {
		return &yarnpb.FinishApplicationMasterResponse{Unregistered: true}, nil
	}
	if at.Terminal() || app.CurrentAttempt != at.ID {
		return nil, errdefs.ToGRPC(errdefs.FailedPrecondition("application attempt %s is no longer current", at.ID))
	}
	if len(req.TrackingUrl) > maxURLLen {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("the tracking URL is at most %d bytes", maxURLLen))
	}
	var live []*state.Container
	for _, c := range liveContainers(r.ContainersByApp(nil, app.ID)) {
		if !c.IsAM {
			live = append(live, c)
		}
	}
	if _, _, err := s.raftApply(CmdUnregisterAttempt, unregisterAttemptCmd{
		AttemptID: at.ID, FinalStatus: req.FinalStatus, Diagnostics: cut(req.Diagnostics), TrackingURL: req.TrackingUrl, Now: s.nowMS(),
	}); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	s.stopOnNodes(live)
	s.soft.forgetAttempt(at.ID)
	s.logger.Info("application master unregistered", "attempt_id", at.ID, "final_status", req.FinalStatus)
	return &yarnpb.FinishApplicationMasterResponse{Unregistered: true}, nil
}

// roomView is what the schedulable nodes have free, as of when.
type roomView struct {
	at        time.Time
	available state.Resource
	nodes     int32
}

// roomTTL is how stale the free room an Allocate answer reports may be:
// summing every node for every answer cost the leader a sixth of its CPU
// at 10,000 nodes.
const roomTTL = 250 * time.Millisecond

// clusterRoom is the free room of the schedulable nodes, summed at most
// every roomTTL.
func (s *Server) clusterRoom(r *state.ReadTxn) roomView {
	now := time.Now()
	if v := s.room.Load(); v != nil && now.Sub(v.at) < roomTTL {
		return *v
	}
	v := roomView{at: now}
	var total, used state.Resource
	r.EachNode(func(n *state.Node) {
		if n.Schedulable() {
			total = total.Add(n.Total)
			used = used.Add(n.Used)
			v.nodes++
		}
	})
	v.available = total.Sub(used)
	s.room.Store(&v)
	return v
}
