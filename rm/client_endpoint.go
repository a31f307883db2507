package rm

import (
	"context"
	"slices"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/scheduler"
	"github.com/loom-project/loom/rm/state"
)

// Defaults for an AM container that asks for nothing.
var defaultAMResource = state.Resource{MemoryMB: 128, VCores: 1}

type clientEndpoint struct {
	yarnpb.UnimplementedClientServiceServer
	s *Server
}

var _ yarnpb.ClientServiceServer = (*clientEndpoint)(nil)

func (e *clientEndpoint) NewApplication(ctx context.Context, _ *yarnpb.NewApplicationRequest) (*yarnpb.NewApplicationResponse, error) {
	if err := e.s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	id := yarnpb.AppID(e.s.clusterTS.Load(), e.s.appSeq.Add(1))
	return &yarnpb.NewApplicationResponse{ApplicationId: id, MaxCapability: e.s.cfg.MaxAllocation.Proto(), StagingUrl: e.s.stagingURL()}, nil
}

// validateResource checks a resource ask against the maximum allocation.
func (s *Server) validateResource(what string, r state.Resource) error {
	max := s.cfg.MaxAllocation
	switch {
	case r.MemoryMB <= 0:
		return errdefs.InvalidArgument("%s memory must be positive, got %d MB", what, r.MemoryMB)
	case r.VCores <= 0:
		return errdefs.InvalidArgument("%s vcores must be positive, got %d", what, r.VCores)
	case r.MemoryMB > max.MemoryMB:
		return errdefs.InvalidArgument("%s memory %d MB exceeds the maximum allocation of %d MB; ask for less or raise the ResourceManager's --max-allocation-mb", what, r.MemoryMB, max.MemoryMB)
	case r.VCores > max.VCores:
		return errdefs.InvalidArgument("%s vcores %d exceed the maximum allocation of %d; ask for fewer or raise the ResourceManager's --max-allocation-vcores", what, r.VCores, max.VCores)
	}
	return nil
}

func (e *clientEndpoint) SubmitApplication(ctx context.Context, req *yarnpb.SubmitApplicationRequest) (*yarnpb.SubmitApplicationResponse, error) {
	if err := e.s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	tree := e.s.queueTree()
	app, err := e.s.validateSubmission(tree, req.GetContext())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	// The application is the caller's, whatever the context says.
	app.User = caller(ctx).Name
	if err := e.s.maySubmit(ctx, tree, app.Queue); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := e.s.State().Snapshot()
	if existing := r.App(nil, app.ID); existing != nil {
		return nil, errdefs.ToGRPC(errdefs.AlreadyExists("application %s was already submitted", app.ID))
	}
	if err := checkQueueRoom(r, tree, app.Queue); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if _, _, err := e.s.raftApply(CmdSubmitApp, submitAppCmd{App: app, Now: e.s.nowMS()}); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	e.s.logger.Info("application submitted", "app_id", app.ID, "name", app.Name, "queue", app.Queue, "user", app.User)
	return &yarnpb.SubmitApplicationResponse{}, nil
}

func (s *Server) validateSubmission(tree *scheduler.QueueTree, c *yarnpb.ApplicationSubmissionContext) (*state.Application, error) {
	if c == nil {
		return nil, errdefs.InvalidArgument("submission has no application context")
	}
	if err := s.checkIssuedAppID(c.ApplicationId); err != nil {
		return nil, err
	}
	queue, err := tree.Resolve(c.Queue)
	if err != nil {
		return nil, errdefs.InvalidArgument("%v", err)
	}
	if c.AmContainer == nil || len(c.AmContainer.Command) == 0 || c.AmContainer.Command[0] == "" {
		return nil, errdefs.InvalidArgument("the AM container has no command")
	}
	if err := c.AmContainer.Validate(); err != nil {
		return nil, errdefs.InvalidArgument("the AM container: %v", err)
	}
	if err := checkSubmissionSizes(c); err != nil {
		return nil, err
	}
	if n := len(c.AmContainer.Credentials); n > yarnpb.MaxCredentials-len(rmCredentials) {
		return nil, errdefs.InvalidArgument("the AM container carries %d credentials, at most %d are allowed beside the ResourceManager's", n, yarnpb.MaxCredentials-len(rmCredentials))
	}
	for name := range c.AmContainer.Credentials {
		if slices.Contains(rmCredentials, name) {
			return nil, errdefs.InvalidArgument("the AM container's credential %q is one the ResourceManager gives it; name yours otherwise", name)
		}
	}
	for _, lr := range c.AmContainer.LocalResources {
		if err := validateLocalResource(lr); err != nil {
			return nil, err
		}
	}
	res := state.ResourceFrom(c.AmResource)
	if c.AmResource == nil || (res.MemoryMB == 0 && res.VCores == 0) {
		res = defaultAMResource
	}
	if res.VCores == 0 {
		res.VCores = 1
	}
	if err := s.validateResource("AM container", res); err != nil {
		return nil, err
	}
	if c.MaxAttempts < 0 {
		return nil, errdefs.InvalidArgument("max attempts must not be negative, got %d", c.MaxAttempts)
	}
	attempts := c.MaxAttempts
	if attempts == 0 || attempts > s.cfg.MaxAttempts {
		attempts = s.cfg.MaxAttempts
	}
	launch, err := proto.Marshal(c.AmContainer)
	if err != nil {
		return nil, errdefs.InvalidArgument("encoding the AM launch context: %v", err)
	}
	name, user := c.Name, c.User
	if name == "" {
		name = "loom application"
	}
	if user == "" {
		user = "unknown"
	}
	return &state.Application{
		ID:             c.ApplicationId,
		Name:           name,
		User:           user,
		Queue:          queue,
		Type:           c.Type,
		Priority:       c.Priority,
		Tags:           c.Tags,
		AMLaunch:       launch,
		AMResource:     res,
		MaxAttempts:    attempts,
		KeepContainers: c.KeepContainersAcrossAttempts,
	}, nil
}

// Bounds on the words of a submission, which every report repeats.
const (
	maxNameLen = 256
	maxTags    = 64
	maxTagLen  = 128
	// maxDiagnostics bounds the diagnostics an AM, a NodeManager or a
	// user's kill leaves in the state; longer ones are cut, as YARN cuts
	// an attempt's to yarn.app.attempt.diagnostics.limit.kc.
	maxDiagnostics = 16 << 10
	maxURLLen      = 2048
)

func checkSubmissionSizes(c *yarnpb.ApplicationSubmissionContext) error {
	switch {
	case len(c.Name) > maxNameLen || len(c.Type) > maxNameLen || len(c.User) > maxNameLen:
		return errdefs.InvalidArgument("the application's name, type and user are at most %d bytes each", maxNameLen)
	case len(c.Tags) > maxTags:
		return errdefs.InvalidArgument("%d tags, at most %d are allowed", len(c.Tags), maxTags)
	}
	for _, t := range c.Tags {
		if len(t) > maxTagLen {
			return errdefs.InvalidArgument("tag %.32q... is %d bytes, at most %d are allowed", t, len(t), maxTagLen)
		}
	}
	return nil
}

// cut bounds a diagnostics text to maxDiagnostics bytes, saying so.
func cut(diag string) string {
	if len(diag) <= maxDiagnostics {
		return diag
	}
	const note = " ... (cut)"
	return strings.ToValidUTF8(diag[:maxDiagnostics-len(note)], "") + note
}

func validateLocalResource(lr *yarnpb.LocalResource) error {
	if lr.Name == "" || lr.Url == "" {
		return errdefs.InvalidArgument("local resource needs a name and a url, got name %q url %q", lr.Name, lr.Url)
	}
	if len(lr.Sha256) != 64 {
		return errdefs.InvalidArgument("local resource %q needs its sha256 digest (64 hex characters), got %q", lr.Name, lr.Sha256)
	}
	return nil
}

func (e *clientEndpoint) GetApplicationReport(ctx context.Context, req *yarnpb.GetApplicationReportRequest) (*yarnpb.GetApplicationReportResponse, error) {
	if err := e.s.waitReadable(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if _, _, err := yarnpb.ParseAppID(req.ApplicationId); err != nil {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("%v", err))
	}
	if err := mayReadApp(ctx, req.ApplicationId); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	wait := time.Duration(req.WaitMs) * time.Millisecond
	if wait > 5*time.Minute {
		wait = 5 * time.Minute
	}
	deadline := time.Now().Add(wait)
	for {
		st := e.s.State()
		r := st.Snapshot()
		ws := memdb.NewWatchSet()
		app := r.App(ws, req.ApplicationId)
		if app == nil {
			return nil, errdefs.ToGRPC(errdefs.NotFound("%s", e.s.notFoundReason(req.ApplicationId)))
		}
		index := app.ModifyIndex
		if req.IncludeContainers {
			for _, c := range r.ContainersByApp(ws, app.ID) {
				index = max(index, c.ModifyIndex)
			}
		}
		for _, at := range r.Attempts(ws, app.ID) {
			index = max(index, at.ModifyIndex)
		}
		if req.MinIndex == 0 || index > req.MinIndex || !time.Now().Before(deadline) {
			return &yarnpb.GetApplicationReportResponse{Report: e.s.appReport(ctx, r, app, req.IncludeContainers), Index: index}, nil
		}
		ws.Add(st.AbandonCh())
		wctx, cancel := context.WithDeadline(ctx, deadline)
		err := ws.WatchCtx(wctx)
		cancel()
		if ctx.Err() != nil {
			return nil, errdefs.ToGRPC(ctx.Err())
		}
		_ = err // a timeout: answer with what is there
	}
}

func (e *clientEndpoint) ListApplications(ctx context.Context, req *yarnpb.ListApplicationsRequest) (*yarnpb.ListApplicationsResponse, error) {
	if err := e.s.waitReadable(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := e.s.State().Snapshot()
	out := &yarnpb.ListApplicationsResponse{}
	apps := r.LiveApps(nil)
	if req.All {
		apps = r.Apps(nil)
	}
	queue := ""
	if req.Queue != "" {
		q, err := queueTreeOf(r.Meta()).Resolve(req.Queue)
		if err != nil {
			return nil, errdefs.ToGRPC(errdefs.InvalidArgument("%v", err))
		}
		queue = q
	}
	for _, a := range apps {
		if queue != "" && a.Queue != queue {
			continue
		}
		if req.Type != "" && req.Type != a.Type {
			continue
		}
		out.Applications = append(out.Applications, e.s.appReport(ctx, r, a, false))
	}
	return out, nil
}

func (e *clientEndpoint) KillApplication(ctx context.Context, req *yarnpb.KillApplicationRequest) (*yarnpb.KillApplicationResponse, error) {
	if _, _, err := yarnpb.ParseAppID(req.ApplicationId); err != nil {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("%v", err))
	}
	if err := e.s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := e.s.State().Snapshot()
	app, err := e.s.appToChange(ctx, r, req.ApplicationId)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if app.Terminal() {
		return &yarnpb.KillApplicationResponse{AlreadyFinished: true}, nil
	}
	live := liveContainers(r.ContainersByApp(nil, app.ID))
	diag := cut(req.Diagnostics)
	if diag == "" {
		diag = "Application killed by user."
	}
	res, _, err := e.s.raftApply(CmdKillApp, killAppCmd{AppID: app.ID, Diagnostics: diag, Now: e.s.nowMS()})
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	e.s.stopOnNodes(live)
	killed, _ := res.(bool)
	e.s.logger.Info("application killed", "app_id", app.ID)
	return &yarnpb.KillApplicationResponse{AlreadyFinished: !killed}, nil
}

// appToChange is the application a call names, when the caller may
// change it.
func (s *Server) appToChange(ctx context.Context, r *state.ReadTxn, id string) (*state.Application, error) {
	app := r.App(nil, id)
	if app == nil {
		return nil, errdefs.NotFound("%s", s.notFoundReason(id))
	}
	if err := s.mayActOnApp(ctx, app); err != nil {
		return nil, err
	}
	return app, nil
}

func liveContainers(cs []*state.Container) []*state.Container {
	var out []*state.Container
	for _, c := range cs {
		if !c.Completed() {
			out = append(out, c)
		}
	}
	return out
}

// MoveApplication moves a live application to another leaf queue, as
// YARN's: its owner or an administrator of its queue may, when the
// application's user may submit to the target queue and that has room.
func (e *clientEndpoint) MoveApplication(ctx context.Context, req *yarnpb.MoveApplicationRequest) (*yarnpb.MoveApplicationResponse, error) {
	if _, _, err := yarnpb.ParseAppID(req.ApplicationId); err != nil {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("%v", err))
	}
	if err := e.s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := e.s.State().Snapshot()
	tree := queueTreeOf(r.Meta())
	target, err := tree.Resolve(req.Queue)
	if err != nil {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("%v", err))
	}
	app, err := e.s.appToChange(ctx, r, req.ApplicationId)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if app.Terminal() {
		return nil, errdefs.ToGRPC(errdefs.FailedPrecondition("application %s has ended (%s); only a live application moves", app.ID, app.State))
	}
	if app.Queue == target {
		return &yarnpb.MoveApplicationResponse{}, nil
	}
	owner := scheduler.Who{User: app.User}
	if !tree.MaySubmit(target, owner) && !e.s.mayAdministerQueue(ctx, tree, target) {
		return nil, errdefs.ToGRPC(errdefs.PermissionDenied("application %s of user %s may not move to queue %s: its acl_submit does not name that user", app.ID, app.User, target))
	}
	if err := checkQueueRoom(r, tree, target); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if _, _, err := e.s.raftApply(CmdMoveApp, moveAppCmd{AppID: app.ID, Queue: target}); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	e.s.logger.Info("application moved", "app_id", app.ID, "from", app.Queue, "to", target, "by", caller(ctx).Name)
	e.s.kickScheduler()
	return &yarnpb.MoveApplicationResponse{}, nil
}

func (e *clientEndpoint) ClusterMetrics(ctx context.Context, _ *yarnpb.ClusterMetricsRequest) (*yarnpb.ClusterMetricsResponse, error) {
	if err := e.s.waitReadable(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := e.s.State().Snapshot()
	m := &yarnpb.ClusterMetricsResponse{}
	var total, used state.Resource
	for _, n := range r.Nodes() {
		switch n.State {
		case yarnpb.NodeState_NODE_RUNNING, yarnpb.NodeState_NODE_DECOMMISSIONING:
			m.ActiveNodes++
		case yarnpb.NodeState_NODE_LOST:
			m.LostNodes++
		case yarnpb.NodeState_NODE_UNHEALTHY:
			m.UnhealthyNodes++
		case yarnpb.NodeState_NODE_DECOMMISSIONED:
			m.DecommissionedNodes++
		}
		if n.Live() {
			total = total.Add(n.Total)
			used = used.Add(n.Used)
			m.ContainersAllocated += n.NumContainers
		}
	}
	for _, a := range r.Apps(nil) {
		switch {
		case a.State == yarnpb.AppState_APP_RUNNING:
			m.AppsRunning++
		case a.Terminal():
			m.AppsCompleted++
		default:
			m.AppsPending++
		}
	}
	m.Total, m.Used = total.Proto(), used.Proto()
	return m, nil
}

func (e *clientEndpoint) ListNodes(ctx context.Context, req *yarnpb.ListNodesRequest) (*yarnpb.ListNodesResponse, error) {
	if err := e.s.waitReadable(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := e.s.State().Snapshot()
	out := &yarnpb.ListNodesResponse{}
	if req.NodeId != "" {
		n := r.Node(req.NodeId)
		if n == nil {
			return nil, errdefs.ToGRPC(errdefs.NotFound("node %s not found; `loom node list --all` shows every node", req.NodeId))
		}
		out.Nodes = append(out.Nodes, e.s.nodeReport(n))
		return out, nil
	}
	for _, n := range r.Nodes() {
		if !req.All && !n.Live() {
			continue
		}
		out.Nodes = append(out.Nodes, e.s.nodeReport(n))
	}
	return out, nil
}

// stopOnNodes asks NMs to stop containers at once, without waiting for
// their next heartbeat. Best effort: the heartbeat cleans up what is missed.
func (s *Server) stopOnNodes(cs []*state.Container) {
	byNode := map[string][]string{}
	for _, c := range cs {
		byNode[c.NodeID] = append(byNode[c.NodeID], c.ID)
	}
	for node, ids := range byNode {
		s.nms.stopAsync(node, ids)
	}
}
