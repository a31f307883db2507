package nm

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/tlsutil"
)

// containerManager serves ContainerManagerService: what the RM's AM
// launcher and ApplicationMasters call to start and stop containers, and
// what `loom app logs` reads logs through.
type containerManager struct {
	yarnpb.UnimplementedContainerManagerServiceServer
	nm *NodeManager
}

var _ yarnpb.ContainerManagerServiceServer = (*containerManager)(nil)

// maxBatch bounds the containers one request may name.
const maxBatch = 1024

func (s *containerManager) StartContainers(ctx context.Context, req *yarnpb.StartContainersRequest) (*yarnpb.StartContainersResponse, error) {
	if len(req.Containers) > maxBatch {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("%d containers in one request, at most %d are allowed", len(req.Containers), maxBatch))
	}
	resp := &yarnpb.StartContainersResponse{Failed: map[string]string{}}
	id := caller(ctx)
	for _, c := range req.Containers {
		appID, err := yarnpb.AppIDOfContainer(c.ContainerId)
		if err == nil {
			err = s.nm.mayTouch(ctx, appID, "")
		}
		if err == nil && id.Kind == tlsutil.KindApp {
			// An application's containers run for its owner, whatever
			// the request says.
			c.User = id.User
		}
		if err == nil && s.nm.exec.get(c.ContainerId) != nil {
			// Before the token is taken: a second start of a container
			// (a new RM leader launching an AM again) is told it runs.
			err = errdefs.AlreadyExists("container %s was already started on this node", c.ContainerId)
		}
		if err == nil {
			// Nothing starts without the ResourceManager's word for it.
			err = s.nm.tokens.check(c, s.nm.nodeID, time.Now())
		}
		if err == nil {
			err = s.nm.exec.start(c)
		}
		if err != nil {
			resp.Failed[c.ContainerId] = err.Error()
			continue
		}
		resp.Succeeded = append(resp.Succeeded, c.ContainerId)
	}
	return resp, nil
}

func (s *containerManager) StopContainers(ctx context.Context, req *yarnpb.StopContainersRequest) (*yarnpb.StopContainersResponse, error) {
	if len(req.ContainerIds) > maxBatch {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("%d containers in one request, at most %d are allowed", len(req.ContainerIds), maxBatch))
	}
	resp := &yarnpb.StopContainersResponse{Failed: map[string]string{}}
	for _, id := range req.ContainerIds {
		if err := s.nm.mayTouchContainer(ctx, id); err != nil {
			resp.Failed[id] = err.Error()
			continue
		}
		if err := s.nm.exec.stop(id); err != nil {
			resp.Failed[id] = err.Error()
			continue
		}
		resp.Succeeded = append(resp.Succeeded, id)
	}
	return resp, nil
}

func (s *containerManager) GetContainerStatuses(ctx context.Context, req *yarnpb.GetContainerStatusesRequest) (*yarnpb.GetContainerStatusesResponse, error) {
	if len(req.ContainerIds) > maxBatch {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("%d containers in one request, at most %d are allowed", len(req.ContainerIds), maxBatch))
	}
	resp := &yarnpb.GetContainerStatusesResponse{Failed: map[string]string{}}
	for _, id := range req.ContainerIds {
		if err := s.nm.mayTouchContainer(ctx, id); err != nil {
			resp.Failed[id] = err.Error()
			continue
		}
		c := s.nm.exec.get(id)
		if c == nil {
			resp.Failed[id] = "container " + id + " is not on this node"
			continue
		}
		resp.Statuses = append(resp.Statuses, c.status())
	}
	return resp, nil
}

func (s *containerManager) ListContainerLogs(ctx context.Context, req *yarnpb.ListContainerLogsRequest) (*yarnpb.ListContainerLogsResponse, error) {
	if _, _, err := yarnpb.ParseAppID(req.ApplicationId); err != nil {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("%v", err))
	}
	if err := s.nm.mayTouch(ctx, req.ApplicationId, s.nm.appOwner(req.ApplicationId)); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	base := filepath.Join(s.nm.cfg.Dir, "logs", req.ApplicationId)
	dirs, _ := os.ReadDir(base)
	resp := &yarnpb.ListContainerLogsResponse{}
	for _, d := range dirs {
		if !d.IsDir() || (req.ContainerId != "" && d.Name() != req.ContainerId) {
			continue
		}
		files, _ := os.ReadDir(filepath.Join(base, d.Name()))
		for _, f := range files {
			info, err := f.Info()
			if err != nil || f.IsDir() {
				continue
			}
			resp.Files = append(resp.Files, &yarnpb.ContainerLogFile{ContainerId: d.Name(), Name: f.Name(), Size: info.Size()})
		}
	}
	sort.Slice(resp.Files, func(i, j int) bool {
		if resp.Files[i].ContainerId != resp.Files[j].ContainerId {
			return resp.Files[i].ContainerId < resp.Files[j].ContainerId
		}
		return resp.Files[i].Name > resp.Files[j].Name // stdout before stderr
	})
	return resp, nil
}

func (s *containerManager) ReadContainerLog(req *yarnpb.ReadContainerLogRequest, stream yarnpb.ContainerManagerService_ReadContainerLogServer) error {
	appID, err := yarnpb.AppIDOfContainer(req.ContainerId)
	if err != nil {
		return errdefs.ToGRPC(errdefs.InvalidArgument("%v", err))
	}
	if err := s.nm.mayTouchContainer(stream.Context(), req.ContainerId); err != nil {
		return errdefs.ToGRPC(err)
	}
	name := req.Name
	if name == "" {
		name = "stdout"
	}
	if !yarnpb.PlainName(name) {
		return errdefs.ToGRPC(errdefs.InvalidArgument("log name %q is not a plain file name", name))
	}
	f, err := os.Open(filepath.Join(s.nm.cfg.Dir, "logs", appID, req.ContainerId, name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errdefs.ToGRPC(errdefs.NotFound("container %s has no log %q on node %s", req.ContainerId, name, s.nm.NodeID()))
		}
		return errdefs.ToGRPC(err)
	}
	defer f.Close()
	if req.Offset > 0 {
		if _, err := f.Seek(req.Offset, io.SeekStart); err != nil {
			return errdefs.ToGRPC(err)
		}
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if serr := stream.Send(&yarnpb.LogChunk{Data: buf[:n]}); serr != nil {
				return serr
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return errdefs.ToGRPC(err)
		}
		if !req.Follow {
			return nil
		}
		c := s.nm.exec.get(req.ContainerId)
		if c == nil {
			return nil
		}
		select {
		case <-c.done:
			// Drain what was written before the end.
			for {
				n, _ := f.Read(buf)
				if n == 0 {
					return nil
				}
				if err := stream.Send(&yarnpb.LogChunk{Data: buf[:n]}); err != nil {
					return err
				}
			}
		case <-stream.Context().Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}
