package rm

import (
	"context"
	"errors"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/webui"
	"github.com/loom-project/loom/tlsutil"
)

// webCluster is what the web UI reads: the client service's answers,
// as the viewer (a user's certificate) would get them over gRPC, and the
// containers' logs, which the RM reads from the nodes with its own
// certificate once it has checked that the viewer may.
type webCluster struct {
	s  *Server
	ce *clientEndpoint
}

// viewer checks that the request comes from a user: the pages are for
// people; nodes and applications have the gRPC services.
func viewer(ctx context.Context) error {
	id, ok := tlsutil.FromContext(ctx)
	if !ok {
		return errdefs.Unauthenticated("no client certificate of this cluster was presented; `loom ui` serves these pages with yours")
	}
	if id.Kind != tlsutil.KindUser {
		return errdefs.PermissionDenied("%s may not read the web UI (only users may)", id)
	}
	return nil
}

func (c *webCluster) Metrics(ctx context.Context) (*yarnpb.ClusterMetricsResponse, error) {
	if err := viewer(ctx); err != nil {
		return nil, err
	}
	return c.ce.ClusterMetrics(ctx, &yarnpb.ClusterMetricsRequest{})
}

func (c *webCluster) Service(ctx context.Context) (*yarnpb.ServiceStateResponse, error) {
	if err := viewer(ctx); err != nil {
		return nil, err
	}
	return (&adminEndpoint{s: c.s}).ServiceState(ctx, &yarnpb.ServiceStateRequest{})
}

func (c *webCluster) Queues(ctx context.Context) ([]*yarnpb.QueueInfo, error) {
	if err := viewer(ctx); err != nil {
		return nil, err
	}
	resp, err := c.ce.QueueInfo(ctx, &yarnpb.QueueInfoRequest{})
	return resp.GetQueues(), err
}

func (c *webCluster) Nodes(ctx context.Context) ([]*yarnpb.NodeReport, error) {
	if err := viewer(ctx); err != nil {
		return nil, err
	}
	resp, err := c.ce.ListNodes(ctx, &yarnpb.ListNodesRequest{All: true})
	return resp.GetNodes(), err
}

func (c *webCluster) Apps(ctx context.Context) ([]*yarnpb.ApplicationReport, error) {
	if err := viewer(ctx); err != nil {
		return nil, err
	}
	resp, err := c.ce.ListApplications(ctx, &yarnpb.ListApplicationsRequest{All: true})
	return resp.GetApplications(), err
}

func (c *webCluster) App(ctx context.Context, id string) (*yarnpb.ApplicationReport, error) {
	if err := viewer(ctx); err != nil {
		return nil, err
	}
	resp, err := c.ce.GetApplicationReport(ctx, &yarnpb.GetApplicationReportRequest{ApplicationId: id, IncludeContainers: true})
	return resp.GetReport(), err
}

// mayReadLogs checks that the viewer may read an application's logs: its
// owner or an admin, as on a NodeManager.
func (c *webCluster) mayReadLogs(ctx context.Context, a *yarnpb.ApplicationReport) error {
	if err := viewer(ctx); err != nil {
		return err
	}
	if id := caller(ctx); id.Name != a.User && !c.s.isAdmin(id) {
		return errdefs.PermissionDenied("%s may not read the logs of %s of user %s (only its owner or an admin may)", id, a.Id, a.User)
	}
	return nil
}

// logNodeLookups bounds how many nodes one listing asks at once.
const logNodeLookups = 16

func (c *webCluster) Logs(ctx context.Context, a *yarnpb.ApplicationReport) ([]webui.LogFile, error) {
	if err := c.mayReadLogs(ctx, a); err != nil {
		return nil, err
	}
	// The nodes its containers ran on, or, when the RM keeps none of them
	// any more, every node still registered.
	seen := map[string]bool{}
	var nodes []string
	for _, ct := range a.Containers {
		if !seen[ct.NodeId] {
			seen[ct.NodeId] = true
			nodes = append(nodes, ct.NodeId)
		}
	}
	if len(nodes) == 0 {
		for _, n := range c.s.State().Snapshot().Nodes() {
			if n.Live() {
				nodes = append(nodes, n.ID)
			}
		}
	}
	var (
		mu     sync.Mutex
		out    []webui.LogFile
		failed []error
		wg     sync.WaitGroup
		sem    = make(chan struct{}, logNodeLookups)
	)
	for _, node := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			files, err := c.listLogs(ctx, node, a.Id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err)
				return
			}
			out = append(out, files...)
		}()
	}
	wg.Wait()
	if len(out) == 0 && len(failed) > 0 {
		return nil, errors.Join(failed...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ContainerID != out[j].ContainerID {
			return out[i].ContainerID < out[j].ContainerID
		}
		return out[i].Name > out[j].Name // stdout before stderr
	})
	return out, nil
}

func (c *webCluster) listLogs(ctx context.Context, node, appID string) ([]webui.LogFile, error) {
	cl, release, err := c.s.nms.client(node)
	if err != nil {
		return nil, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cl.ListContainerLogs(ctx, &yarnpb.ListContainerLogsRequest{ApplicationId: appID})
	if err != nil {
		return nil, errdefs.Unavailable("listing the logs on node %s: %v", node, errdefs.FromGRPC(err))
	}
	var out []webui.LogFile
	for _, f := range resp.Files {
		if id, err := yarnpb.AppIDOfContainer(f.ContainerId); err != nil || id != appID {
			continue // not this application's: a node answers for itself
		}
		out = append(out, webui.LogFile{ContainerID: f.ContainerId, NodeID: node, Name: f.Name, Size: f.Size})
	}
	return out, nil
}

func (c *webCluster) ReadLog(ctx context.Context, a *yarnpb.ApplicationReport, f webui.LogFile, offset, limit int64, w io.Writer) error {
	if err := c.mayReadLogs(ctx, a); err != nil {
		return err
	}
	if id, err := yarnpb.AppIDOfContainer(f.ContainerID); err != nil || id != a.Id {
		return errdefs.InvalidArgument("%q is not a container of %s", f.ContainerID, a.Id)
	}
	// Only a node of this cluster is ever dialed.
	if c.s.State().Snapshot().Node(f.NodeID) == nil {
		return errdefs.NotFound("node %s is not a node of this cluster", f.NodeID)
	}
	cl, release, err := c.s.nms.client(f.NodeID)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cl.ReadContainerLog(ctx, &yarnpb.ReadContainerLogRequest{ContainerId: f.ContainerID, Name: f.Name, Offset: offset})
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	for limit != 0 {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errdefs.FromGRPC(err)
		}
		data := chunk.Data
		if limit > 0 {
			data = data[:min(int64(len(data)), limit)]
			limit -= int64(len(data))
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
	return nil
}
