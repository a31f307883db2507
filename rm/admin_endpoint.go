package rm

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
)

type adminEndpoint struct {
	yarnpb.UnimplementedAdminServiceServer
	s *Server
}

var _ yarnpb.AdminServiceServer = (*adminEndpoint)(nil)

func (e *adminEndpoint) Decommission(ctx context.Context, req *yarnpb.DecommissionRequest) (*yarnpb.DecommissionResponse, error) {
	s := e.s
	if err := s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if len(req.NodeIds) == 0 {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("name at least one node to decommission"))
	}
	r := s.State().Snapshot()
	for _, id := range req.NodeIds {
		n := r.Node(id)
		if n == nil || !n.Live() && n.State != yarnpb.NodeState_NODE_DECOMMISSIONED {
			return nil, errdefs.ToGRPC(errdefs.NotFound("node %s is not a live node; `loom node list` shows them", id))
		}
	}
	now := time.Now()
	resp := &yarnpb.DecommissionResponse{}
	for _, id := range req.NodeIds {
		n := r.Node(id)
		if n.State == yarnpb.NodeState_NODE_DECOMMISSIONED ||
			req.Graceful && n.State == yarnpb.NodeState_NODE_DECOMMISSIONING {
			resp.Nodes = append(resp.Nodes, &yarnpb.NodeChange{NodeId: id, Before: n.State, After: n.State})
			continue // already where it was asked to go
		}
		cmd := setNodeStateCmd{NodeID: id, State: yarnpb.NodeState_NODE_DECOMMISSIONED, Report: "decommissioned by an administrator", Now: now.UnixMilli()}
		if req.Graceful {
			cmd.State = yarnpb.NodeState_NODE_DECOMMISSIONING
			cmd.Report = "decommissioning: no new containers"
			if req.TimeoutS > 0 {
				cmd.Deadline = now.Add(time.Duration(req.TimeoutS) * time.Second).UnixMilli()
			}
		}
		live := liveContainers(r.ContainersByNode(id))
		if _, _, err := s.raftApply(CmdSetNodeState, cmd); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
		if !req.Graceful {
			s.stopOnNodes(live)
		}
		s.logger.Info("node decommissioned", "node_id", id, "graceful", req.Graceful)
		resp.Nodes = append(resp.Nodes, &yarnpb.NodeChange{NodeId: id, Before: n.State, After: cmd.State})
	}
	return resp, nil
}

func (e *adminEndpoint) Recommission(ctx context.Context, req *yarnpb.RecommissionRequest) (*yarnpb.RecommissionResponse, error) {
	s := e.s
	if err := s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if len(req.NodeIds) == 0 {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("name at least one node to recommission"))
	}
	r := s.State().Snapshot()
	for _, id := range req.NodeIds {
		if r.Node(id) == nil {
			return nil, errdefs.ToGRPC(errdefs.NotFound("node %s not found; `loom node list --all` shows them", id))
		}
	}
	resp := &yarnpb.RecommissionResponse{}
	for _, id := range req.NodeIds {
		n := r.Node(id)
		next := yarnpb.NodeState_NODE_RUNNING
		switch n.State {
		case yarnpb.NodeState_NODE_DECOMMISSIONING:
		case yarnpb.NodeState_NODE_DECOMMISSIONED:
			// Its NodeManager has stopped: it comes back by registering.
			next = yarnpb.NodeState_NODE_SHUTDOWN
		default:
			resp.Nodes = append(resp.Nodes, &yarnpb.NodeChange{NodeId: id, Before: n.State, After: n.State})
			continue
		}
		if _, _, err := s.raftApply(CmdSetNodeState, setNodeStateCmd{NodeID: id, State: next, Report: "recommissioned", Now: s.nowMS()}); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
		resp.Nodes = append(resp.Nodes, &yarnpb.NodeChange{NodeId: id, Before: n.State, After: next})
	}
	return resp, nil
}

func (e *adminEndpoint) ServiceState(context.Context, *yarnpb.ServiceStateRequest) (*yarnpb.ServiceStateResponse, error) {
	s := e.s
	resp := &yarnpb.ServiceStateResponse{
		State:           stateName(s.raft.State()),
		LeaderAddress:   s.leaderAddr(),
		LastIndex:       s.raft.LastIndex(),
		Epoch:           s.epoch.Load(),
		Id:              s.cfg.AdvertiseAddr,
		RaftAddress:     string(s.raftTrans.LocalAddr()),
		BootstrapExpect: int32(s.cfg.BootstrapExpect),
		AppliedIndex:    s.fsm.AppliedIndex(),
		ReadIndex:       s.readIndex(),
		StagingUrl:      s.stagingURL(),
		WebUrl:          s.webURL(),
	}
	resp.InCluster = s.inCluster()
	if f := s.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			resp.Peers = append(resp.Peers, &yarnpb.RaftPeer{
				Id:      string(srv.ID),
				Address: string(srv.Address),
				Leader:  string(srv.ID) == resp.LeaderAddress,
				Voter:   srv.Suffrage == raft.Voter,
			})
		}
	}
	return resp, nil
}

func (e *adminEndpoint) AddRaftPeer(ctx context.Context, req *yarnpb.AddRaftPeerRequest) (*yarnpb.AddRaftPeerResponse, error) {
	if err := e.s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := e.s.addPeer(req.Id, req.RaftAddress); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &yarnpb.AddRaftPeerResponse{}, nil
}

func (e *adminEndpoint) RemoveRaftPeer(ctx context.Context, req *yarnpb.RemoveRaftPeerRequest) (*yarnpb.RemoveRaftPeerResponse, error) {
	if err := e.s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := e.s.removePeer(req.Id); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	e.s.logger.Info("replica removed by an administrator", "id", req.Id, "by", caller(ctx).String())
	return &yarnpb.RemoveRaftPeerResponse{}, nil
}

func stateName(st raft.RaftState) string {
	switch st {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "shutdown"
}
