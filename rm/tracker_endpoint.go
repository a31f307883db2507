package rm

import (
	"context"
	"net"
	"strconv"
	"time"

	"loom/errdefs"
	"loom/proto/yarnpb"
	"loom/rm/state"
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

func (e *trackerEndpoint) RegisterNodeManager(ctx context.Context, req *yarnpb.RegisterNodeManagerRequest) (*yarnpb.RegisterNodeManagerResponse, error) {
	s := e.s
	if err := s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := validateNodeID(req.NodeId); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	total := state.ResourceFrom(req.Total)
	if total.MemoryMB <= 0 || total.VCores <= 0 {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("node %s must offer positive memory and vcores, got %d MB and %d vcores", req.NodeId, total.MemoryMB, total.VCores))
	}
	if old := s.State().Snapshot().Node(nil, req.NodeId); old != nil && old.State == yarnpb.NodeState_NODE_DECOMMISSIONED {
		return &yarnpb.RegisterNodeManagerResponse{Action: yarnpb.NodeAction_SHUTDOWN, Diagnostics: "node " + req.NodeId + " is decommissioned; recommission it before starting its NodeManager again"}, nil
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
		Rack:         "/default-rack",
		State:        yarnpb.NodeState_NODE_RUNNING,
		Total:        total,
		HealthReport: "healthy",
		Labels:       req.Labels,
	}
	now := time.Now()
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
	}, nil
}

func (e *trackerEndpoint) NodeHeartbeat(ctx context.Context, req *yarnpb.NodeHeartbeatRequest) (*yarnpb.NodeHeartbeatResponse, error) {
	s := e.s
	if err := s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := validateNodeID(req.NodeId); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	resp := &yarnpb.NodeHeartbeatResponse{NextHeartbeatMs: s.cfg.NMHeartbeat.Milliseconds()}
	r := s.State().Snapshot()
	node := r.Node(nil, req.NodeId)
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
	now := time.Now()
	s.soft.touchNode(node.ID, now, req.Utilization)
	resp.ResponseId = s.soft.nextNodeResponse(node.ID)

	// Apply what changed: containers that started or completed.
	var changed []*yarnpb.ContainerStatus
	for _, cs := range req.Containers {
		c := r.Container(nil, cs.ContainerId)
		if c == nil || c.NodeID != node.ID || c.Completed() {
			continue
		}
		switch cs.State {
		case yarnpb.ContainerState_CONTAINER_RUNNING:
			if c.State != yarnpb.ContainerState_CONTAINER_RUNNING {
				changed = append(changed, cs)
			}
		case yarnpb.ContainerState_CONTAINER_COMPLETED:
			changed = append(changed, cs)
		}
	}
	if len(changed) > 0 {
		if _, _, err := s.raftApply(CmdContainerStatuses, containerStatusesCmd{NodeID: node.ID, Statuses: changed, Now: now.UnixMilli()}); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
	}
	switch {
	case !req.Healthy && node.State == yarnpb.NodeState_NODE_RUNNING:
		if _, _, err := s.raftApply(CmdSetNodeState, setNodeStateCmd{NodeID: node.ID, State: yarnpb.NodeState_NODE_UNHEALTHY, Report: req.HealthReport, Now: now.UnixMilli()}); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
	case req.Healthy && node.State == yarnpb.NodeState_NODE_UNHEALTHY:
		if _, _, err := s.raftApply(CmdSetNodeState, setNodeStateCmd{NodeID: node.ID, State: yarnpb.NodeState_NODE_RUNNING, Report: "healthy", Now: now.UnixMilli()}); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
	}

	// Tell the node what to clean up, from the state after the changes.
	r = s.State().Snapshot()
	liveApps := map[string]bool{}
	for _, cs := range req.Containers {
		c := r.Container(nil, cs.ContainerId)
		if cs.State == yarnpb.ContainerState_CONTAINER_COMPLETED {
			if c == nil || c.Completed() {
				resp.ContainersAcked = append(resp.ContainersAcked, cs.ContainerId)
			}
			continue
		}
		if c != nil {
			liveApps[c.AppID] = true
		}
		if c == nil || c.Completed() {
			if c != nil && c.IsAM && !s.amGraceOver(r, c, now) {
				continue
			}
			resp.ContainersToCleanup = append(resp.ContainersToCleanup, cs.ContainerId)
		}
	}
	for _, appID := range req.RunningApps {
		app := r.App(nil, appID)
		if app == nil || app.Terminal() {
			if !liveApps[appID] || app == nil {
				resp.AppsToCleanup = append(resp.AppsToCleanup, appID)
			}
		}
	}

	// A decommissioning node leaves once it is empty or its time is up.
	node = r.Node(nil, node.ID)
	if node.State == yarnpb.NodeState_NODE_DECOMMISSIONING && (node.NumContainers == 0 || (node.DecommissionDeadline > 0 && now.UnixMilli() > node.DecommissionDeadline)) {
		if _, _, err := s.raftApply(CmdSetNodeState, setNodeStateCmd{NodeID: node.ID, State: yarnpb.NodeState_NODE_DECOMMISSIONED, Report: "decommissioned", Now: now.UnixMilli()}); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
		resp.Action = yarnpb.NodeAction_SHUTDOWN
		resp.Diagnostics = "node is decommissioned"
	}
	return resp, nil
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
	node := s.State().Snapshot().Node(nil, req.NodeId)
	if node == nil {
		return nil, errdefs.ToGRPC(errdefs.NotFound("node %s not found", req.NodeId))
	}
	if node.Live() {
		if _, _, err := s.raftApply(CmdSetNodeState, setNodeStateCmd{NodeID: node.ID, State: yarnpb.NodeState_NODE_SHUTDOWN, Report: "NodeManager shut down", Now: nowMS()}); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
	}
	s.soft.forgetNode(req.NodeId)
	s.logger.Info("node shut down", "node_id", req.NodeId)
	return &yarnpb.UnRegisterNodeManagerResponse{}, nil
}
