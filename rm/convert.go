package rm

import (
	"context"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

func (s *Server) nodeReport(n *state.Node) *yarnpb.NodeReport {
	r := &yarnpb.NodeReport{
		Id:            n.ID,
		State:         n.State,
		HttpAddress:   n.HTTPAddress,
		Rack:          n.Rack,
		Total:         n.Total.Proto(),
		Used:          n.Used.Proto(),
		NumContainers: n.NumContainers,
		HealthReport:  n.HealthReport,
		Labels:        n.Labels,
	}
	if s.isLeader.Load() {
		if t, ok := s.soft.lastSeen(n.ID); ok {
			r.LastHeartbeat = t.UnixMilli()
		}
		r.Utilization = s.soft.utilization(n.ID)
	}
	return r
}

// appReport is a's report as the caller of ctx may see it.
func (s *Server) appReport(ctx context.Context, r *state.ReadTxn, a *state.Application, withContainers bool) *yarnpb.ApplicationReport {
	owner := s.mayActOnApp(ctx, a) == nil
	rep := &yarnpb.ApplicationReport{
		Id:               a.ID,
		Name:             a.Name,
		User:             a.User,
		Queue:            a.Queue,
		Type:             a.Type,
		Priority:         a.Priority,
		State:            a.State,
		FinalStatus:      a.FinalStatus,
		Diagnostics:      a.Diagnostics,
		TrackingUrl:      trackingURL(a.TrackingURL, owner),
		Host:             a.Host,
		RpcPort:          a.RPCPort,
		SubmitTime:       a.SubmitTime,
		StartTime:        a.StartTime,
		FinishTime:       a.FinishTime,
		Progress:         a.Progress,
		CurrentAttemptId: a.CurrentAttempt,
		Tags:             a.Tags,
	}
	if a.State == yarnpb.AppState_APP_ACCEPTED && s.isLeader.Load() {
		if why := s.soft.waitingReason(a.ID); why != "" {
			rep.Diagnostics = why
		}
	}
	for _, at := range r.Attempts(nil, a.ID) {
		rep.Attempts = append(rep.Attempts, &yarnpb.ApplicationAttemptReport{
			Id:            at.ID,
			State:         at.State,
			AmContainerId: at.AMContainerID,
			Host:          at.Host,
			RpcPort:       at.RPCPort,
			TrackingUrl:   trackingURL(at.TrackingURL, owner),
			Diagnostics:   at.Diagnostics,
			StartTime:     at.StartTime,
			FinishTime:    at.FinishTime,
		})
	}
	if withContainers {
		for _, c := range r.ContainersByApp(nil, a.ID) {
			rep.Containers = append(rep.Containers, c.Proto())
		}
	}
	rep.Used, rep.NumContainers = a.Used.Proto(), a.NumContainers
	rep.Pending = s.soft.pendingOf(a.CurrentAttempt).Proto()
	return rep
}
