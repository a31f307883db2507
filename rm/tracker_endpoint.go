package rm

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

type trackerEndpoint struct {
	yarnpb.UnimplementedResourceTrackerServiceServer
	s *Server
}

var _ yarnpb.ResourceTrackerServiceServer = (*trackerEndpoint)(nil)

func validateNodeID(id string) error {
	host, port, err := net.SplitHostPort(id)
	if err != nil || host == "" {
		return errdefs.InvalidArgument("node id %q is not host:port", id)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return errdefs.InvalidArgument("node id %q has no valid port", id)
	}
	return nil
}

// Bounds on what a NodeManager may claim: more than any host has is a
// mistake or an attack, and sums of such claims would overflow.
const (
	maxNodeMemoryMB = 16 << 20 // 16 TiB
	maxNodeVCores   = 4096
	maxNodeLabels   = 64
	maxReported     = 100_000
)

func validateNodeRegistration(req *yarnpb.RegisterNodeManagerRequest, total state.Resource) error {
	switch {
	case total.MemoryMB <= 0 || total.VCores <= 0:
		return errdefs.InvalidArgument("node %s must offer positive memory and vcores, got %d MB and %d vcores", req.NodeId, total.MemoryMB, total.VCores)
	case total.MemoryMB > maxNodeMemoryMB:
		return errdefs.InvalidArgument("node %s offers %d MB of memory, more than any host has (at most %d MB)", req.NodeId, total.MemoryMB, maxNodeMemoryMB)
	case total.VCores > maxNodeVCores:
		return errdefs.InvalidArgument("node %s offers %d vcores, more than any host has (at most %d)", req.NodeId, total.VCores, maxNodeVCores)
	case len(req.Labels) > maxNodeLabels:
		return errdefs.InvalidArgument("node %s has %d labels, at most %d are allowed", req.NodeId, len(req.Labels), maxNodeLabels)
	case len(req.Containers) > maxReported:
		return errdefs.InvalidArgument("node %s reports %d containers, at most %d are allowed", req.NodeId, len(req.Containers), maxReported)
	case len(req.HttpAddress) > 256:
		return errdefs.InvalidArgument("node %s: http address too long", req.NodeId)
	}
	for _, l := range req.Labels {
		if !yarnpb.NodeLabel(l) {
			return errdefs.InvalidArgument("node %s: label %q: use 1 to 128 letters, digits, '.', '_' and '-'", req.NodeId, l)
		}
	}
	if req.Rack != "" && !rackRe.MatchString(req.Rack) {
		return errdefs.InvalidArgument("node %s: rack %q: want a path such as /dc1/rack7 (segments of letters, digits, '.', '_' and '-'), at most 255 characters", req.NodeId, req.Rack)
	}
	return nil
}

var rackRe = regexp.MustCompile(`^(/[a-zA-Z0-9._-]{1,64}){1,8}$`)

// defaultRack is a node's rack when it names none, as YARN's.
const defaultRack = "/default-rack"

// checkNodeIdentity checks that the caller is the node certificate node
// registered with.
func checkNodeIdentity(ctx context.Context, node *state.Node) error {
	if node == nil || node.Identity == "" {
		return nil
	}
	if who := caller(ctx).Name; who != node.Identity {
		return errdefs.PermissionDenied("node %s is registered by node certificate %q, not %q", node.ID, node.Identity, who)
	}
	return nil
}

func (e *trackerEndpoint) RegisterNodeManager(ctx context.Context, req *yarnpb.RegisterNodeManagerRequest) (*yarnpb.RegisterNodeManagerResponse, error) {
	s := e.s
	if err := s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := validateNodeID(req.NodeId); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	total := state.ResourceFrom(req.Total)
	if err := validateNodeRegistration(req, total); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	who := caller(ctx).Name
	old := s.State().Snapshot().Node(req.NodeId)
	if old != nil && old.State == yarnpb.NodeState_NODE_DECOMMISSIONED {
		return &yarnpb.RegisterNodeManagerResponse{Action: yarnpb.NodeAction_SHUTDOWN, Diagnostics: "node " + req.NodeId + " is decommissioned; recommission it before starting its NodeManager again"}, nil
	}
	if old != nil && old.Live() && old.Identity != "" && old.Identity != who {
		return nil, errdefs.ToGRPC(errdefs.PermissionDenied("node %s is registered by node certificate %q; %q may not take it over", req.NodeId, old.Identity, who))
	}
	reported := make([]string, 0, len(req.Containers))
	for _, c := range req.Containers {
		if c.State != yarnpb.ContainerState_CONTAINER_COMPLETED {
			reported = append(reported, c.ContainerId)
		}
	}
	node := &state.Node{
		ID:           req.NodeId,
		HTTPAddress:  req.HttpAddress,
		Rack:         cmp.Or(req.Rack, defaultRack),
		State:        yarnpb.NodeState_NODE_RUNNING,
		Total:        total,
		HealthReport: "healthy",
		Labels:       req.Labels,
		Identity:     who,
	}
	now := s.clock.Now()
	if _, _, err := s.raftApply(CmdRegisterNode, registerNodeCmd{Node: node, Reported: reported, Now: now.UnixMilli()}); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	s.soft.forgetNode(req.NodeId)
	s.soft.touchNode(req.NodeId, now, nil)
	s.logger.Info("node registered", "node_id", req.NodeId, "memory_mb", total.MemoryMB, "vcores", total.VCores)
	return &yarnpb.RegisterNodeManagerResponse{
		Action:              yarnpb.NodeAction_NORMAL,
		HeartbeatIntervalMs: s.cfg.NMHeartbeat.Milliseconds(),
		RmIdentifier:        s.epoch.Load(),
		ContainerKeys:       s.masterKeys(),
	}, nil
}

func (e *trackerEndpoint) NodeHeartbeat(ctx context.Context, req *yarnpb.NodeHeartbeatRequest) (*yarnpb.NodeHeartbeatResponse, error) {
	s := e.s
	defer s.metrics.observeHeartbeat(time.Now())
	if err := s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := validateNodeID(req.NodeId); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	resp := &yarnpb.NodeHeartbeatResponse{NextHeartbeatMs: s.cfg.NMHeartbeat.Milliseconds(), StagingUrl: s.stagingURL()}
	r := s.State().Snapshot()
	node := r.Node(req.NodeId)
	if err := checkNodeIdentity(ctx, node); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if node == nil || !node.Live() {
		if node != nil && node.State == yarnpb.NodeState_NODE_DECOMMISSIONED {
			resp.Action = yarnpb.NodeAction_SHUTDOWN
			resp.Diagnostics = "node is decommissioned"
			return resp, nil
		}
		resp.Action = yarnpb.NodeAction_RESYNC
		resp.Diagnostics = "node is not registered with this ResourceManager; register again"
		return resp, nil
	}
	// The keys that verify container tokens, as they rotate.
	resp.ContainerKeys = r.Meta().Keys
	now := s.clock.Now()
	s.soft.touchNode(node.ID, now, req.Utilization)
	resp.ResponseId = s.soft.nextNodeResponse(node.ID)

	// Apply what changed: containers that started or completed. The
	// node's live containers come in one seek of their index, and a
	// reported container is looked for among them first: the whole
	// table is searched only for one the RM holds completed, or not at
	// all.
	var buf [32]*state.Container
	onNode := r.AppendContainersByNode(buf[:0], node.ID)
	var heldBuf [32]*state.Container
	held := heldBuf[:min(len(req.Containers), len(heldBuf))]
	if len(req.Containers) > len(heldBuf) {
		held = make([]*state.Container, len(req.Containers))
	}
	var changed []*yarnpb.ContainerStatus
	for i, cs := range req.Containers {
		c := containerIn(onNode, cs.ContainerId)
		if c == nil {
			c = r.Container(cs.ContainerId)
		}
		held[i] = c
		if c == nil || c.NodeID != node.ID || c.Completed() {
			continue
		}
		switch cs.State {
		case yarnpb.ContainerState_CONTAINER_RUNNING:
			if c.State != yarnpb.ContainerState_CONTAINER_RUNNING {
				changed = append(changed, cs)
			}
		case yarnpb.ContainerState_CONTAINER_COMPLETED:
			if len(cs.Diagnostics) > maxDiagnostics {
				cs.Diagnostics = cut(cs.Diagnostics)
			}
			changed = append(changed, cs)
		}
	}
	if len(changed) > 0 {
		// Committed by the status loop with other nodes' changes; the
		// node hears its completions acknowledged on a later heartbeat,
		// and reports again what a full queue dropped.
		s.queueStatuses(containerStatusesCmd{NodeID: node.ID, Statuses: changed, Now: now.UnixMilli()})
	}
	wrote := false
	switch {
	case !req.Healthy && node.State == yarnpb.NodeState_NODE_RUNNING:
		if _, _, err := s.raftApply(CmdSetNodeState, setNodeStateCmd{NodeID: node.ID, State: yarnpb.NodeState_NODE_UNHEALTHY, Report: cut(req.HealthReport), Now: now.UnixMilli()}); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
		wrote = true
	case req.Healthy && node.State == yarnpb.NodeState_NODE_UNHEALTHY:
		if _, _, err := s.raftApply(CmdSetNodeState, setNodeStateCmd{NodeID: node.ID, State: yarnpb.NodeState_NODE_RUNNING, Report: "healthy", Now: now.UnixMilli()}); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
		wrote = true
	}

	// Tell the node what to clean up, from the state after the changes
	// (the status loop's come later: the node hears of them next time).
	if wrote {
		r = s.State().Snapshot()
		for i, cs := range req.Containers {
			held[i] = r.Container(cs.ContainerId)
		}
	}
	var liveApps map[string]bool
	if len(req.RunningApps) > 0 {
		liveApps = make(map[string]bool, len(req.RunningApps))
	}
	for i, cs := range req.Containers {
		c := held[i]
		if cs.State == yarnpb.ContainerState_CONTAINER_COMPLETED {
			if c == nil || c.Completed() {
				resp.ContainersAcked = append(resp.ContainersAcked, cs.ContainerId)
			}
			continue
		}
		if c != nil && liveApps != nil {
			liveApps[c.AppID] = true
		}
		// The RM is done with a container it holds completed, and with
		// the AM of an application that ended: an AM that unregistered
		// and does not exit is stopped once its grace is over.
		if c == nil || c.Completed() || (c.IsAM && appEnded(r, c.AppID)) {
			if c != nil && c.IsAM && !s.amGraceOver(r, c, now) {
				continue
			}
			resp.ContainersToCleanup = append(resp.ContainersToCleanup, cs.ContainerId)
		}
	}
	for _, appID := range req.RunningApps {
		// An application the RM holds a container of is there (it is
		// forgotten with its containers), and the node still runs
		// that container: nothing to clean up yet, and no lookup.
		if liveApps[appID] {
			continue
		}
		if app := r.App(nil, appID); app == nil || app.Terminal() {
			resp.AppsToCleanup = append(resp.AppsToCleanup, appID)
		}
	}

	// A decommissioning node leaves once it is empty or its time is up.
	if wrote {
		node = r.Node(node.ID)
	}
	if node.State == yarnpb.NodeState_NODE_DECOMMISSIONING && (node.NumContainers == 0 || (node.DecommissionDeadline > 0 && now.UnixMilli() > node.DecommissionDeadline)) {
		if _, _, err := s.raftApply(CmdSetNodeState, setNodeStateCmd{NodeID: node.ID, State: yarnpb.NodeState_NODE_DECOMMISSIONED, Report: "decommissioned", Now: now.UnixMilli()}); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
		resp.Action = yarnpb.NodeAction_SHUTDOWN
		resp.Diagnostics = "node is decommissioned"
	}
	return resp, nil
}

// NodeHeartbeats answers each heartbeat of a stream as NodeHeartbeat
// does, in turn, and ends the stream with the first error a call would
// have returned: a NodeManager told the replica is no leader opens its
// next stream on the leader. A server shutting down answers a stream's
// next heartbeat Unavailable; the shutdown itself does not wait for
// streams (stopGRPC).
func (e *trackerEndpoint) NodeHeartbeats(stream yarnpb.ResourceTrackerService_NodeHeartbeatsServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-e.s.shutdown:
			return errdefs.ToGRPC(errdefs.Unavailable("the ResourceManager is shutting down"))
		default:
		}
		resp, err := e.NodeHeartbeat(ctx, req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// containerIn finds container id in cs, sorted by id; nil when it is not
// there.
func containerIn(cs []*state.Container, id string) *state.Container {
	i, ok := slices.BinarySearchFunc(cs, id, func(c *state.Container, id string) int { return strings.Compare(c.ID, id) })
	if !ok {
		return nil
	}
	return cs[i]
}

// appEnded reports whether application id has ended.
func appEnded(r *state.ReadTxn, id string) bool {
	app := r.App(nil, id)
	return app != nil && app.Terminal()
}

// amGraceOver reports whether an AM container whose application ended
// has had its grace period to exit by itself. A killed application's AM
// gets none.
func (s *Server) amGraceOver(r *state.ReadTxn, c *state.Container, now time.Time) bool {
	if c.ExitStatus == state.ExitKilledByRM || c.ExitStatus == state.ExitAborted {
		return true
	}
	app := r.App(nil, c.AppID)
	if app == nil || !app.Terminal() {
		return true
	}
	return now.UnixMilli()-app.FinishTime > s.cfg.KillGrace.Milliseconds()
}

func (e *trackerEndpoint) UnRegisterNodeManager(ctx context.Context, req *yarnpb.UnRegisterNodeManagerRequest) (*yarnpb.UnRegisterNodeManagerResponse, error) {
	s := e.s
	if err := s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	node := s.State().Snapshot().Node(req.NodeId)
	if node == nil {
		return nil, errdefs.ToGRPC(errdefs.NotFound("node %s not found", req.NodeId))
	}
	if err := checkNodeIdentity(ctx, node); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if node.Live() {
		if _, _, err := s.raftApply(CmdSetNodeState, setNodeStateCmd{NodeID: node.ID, State: yarnpb.NodeState_NODE_SHUTDOWN, Report: "NodeManager shut down", Now: s.nowMS()}); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
	}
	s.soft.forgetNode(req.NodeId)
	s.logger.Info("node shut down", "node_id", req.NodeId)
	return &yarnpb.UnRegisterNodeManagerResponse{}, nil
}

// Bounds on the status loop: updates queued, and statuses in one raft
// entry. Batches stay at a few hundred containers, as plans and Allocate
// answers do, so that one raft entry and one FSM transaction stay short
// beside the heartbeats and calls waiting behind them.
const (
	statusQueueLen   = 8192
	maxBatchStatuses = 256
)

// queueStatuses hands a heartbeat's container changes to the status
// loop; when the queue is full they are dropped, and the node reports
// them again on its next heartbeat.
func (s *Server) queueStatuses(u containerStatusesCmd) {
	select {
	case s.statusQ <- u:
	default:
		s.logger.Debug("container statuses dropped; the node reports them again", "node_id", u.NodeID)
	}
}

// statusLoop commits the queued container changes of heartbeats, as many
// as have queued while the last commit ran, in one raft entry: one entry
// a heartbeat would make raft and the FSM the bottleneck of thousands of
// nodes.
func (s *Server) statusLoop(ctx context.Context) {
	for {
		var batch nodeStatusesCmd
		select {
		case <-ctx.Done():
			return
		case u := <-s.statusQ:
			batch.Nodes = append(batch.Nodes, u)
		}
		n := len(batch.Nodes[0].Statuses)
	drain:
		for n < maxBatchStatuses {
			select {
			case u := <-s.statusQ:
				batch.Nodes = append(batch.Nodes, u)
				n += len(u.Statuses)
			default:
				break drain
			}
		}
		if _, _, err := s.raftApply(CmdNodeStatuses, batch); err != nil {
			s.logger.Warn("recording container statuses failed; nodes report them again", "nodes", len(batch.Nodes), "error", err)
		}
	}
}
