// Package nmclient starts, stops and inspects containers on NodeManagers,
// and reads their logs. It shares one connection per node among its
// calls, kept a little after the last (rpc.Pool).
package nmclient

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rpc"
	"github.com/loom-project/loom/tlsutil"
)

// Client talks to NodeManagers by node id (host:port).
type Client struct {
	conns *rpc.Pool
}

// New returns a client with no connections yet that presents the
// identity in tls and takes only NodeManagers of its cluster.
func New(tls *tlsutil.Bundle) *Client {
	return &Client{conns: rpc.NewPool(rpc.Linger, DialOptions(tls)...)}
}

// DialOptions are the gRPC options of a connection to a NodeManager.
func DialOptions(tls *tlsutil.Bundle) []grpc.DialOption {
	return rpc.DialOptions(tls.ClientConfig(tlsutil.NodeName))
}

// Close closes every connection.
func (c *Client) Close() error {
	c.conns.Close()
	return nil
}

// node is a client of the NM at addr, and the function that releases its
// connection.
func (c *Client) node(addr string) (yarnpb.ContainerManagerServiceClient, func(), error) {
	cc, release, err := c.conns.Get(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", addr, err)
	}
	return yarnpb.NewContainerManagerServiceClient(cc), release, nil
}

// Start starts one container on a node.
func (c *Client) Start(ctx context.Context, node string, req *yarnpb.StartContainerRequest) error {
	nm, release, err := c.node(node)
	if err != nil {
		return err
	}
	defer release()
	resp, err := nm.StartContainers(ctx, &yarnpb.StartContainersRequest{Containers: []*yarnpb.StartContainerRequest{req}})
	if err != nil {
		return fmt.Errorf("starting container %s on node %s: %w", req.ContainerId, node, errdefs.FromGRPC(err))
	}
	if msg, ok := resp.Failed[req.ContainerId]; ok {
		return fmt.Errorf("starting container %s on node %s: %s", req.ContainerId, node, msg)
	}
	return nil
}

// Stop stops containers on a node.
func (c *Client) Stop(ctx context.Context, node string, ids ...string) error {
	nm, release, err := c.node(node)
	if err != nil {
		return err
	}
	defer release()
	resp, err := nm.StopContainers(ctx, &yarnpb.StopContainersRequest{ContainerIds: ids})
	if err != nil {
		return fmt.Errorf("stopping containers on node %s: %w", node, errdefs.FromGRPC(err))
	}
	for id, msg := range resp.Failed {
		return fmt.Errorf("stopping container %s on node %s: %s", id, node, msg)
	}
	return nil
}

// Status returns a container's status on its node.
func (c *Client) Status(ctx context.Context, node, id string) (*yarnpb.ContainerStatus, error) {
	nm, release, err := c.node(node)
	if err != nil {
		return nil, err
	}
	defer release()
	resp, err := nm.GetContainerStatuses(ctx, &yarnpb.GetContainerStatusesRequest{ContainerIds: []string{id}})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	if msg, ok := resp.Failed[id]; ok {
		return nil, errdefs.NotFound("%s", msg)
	}
	return resp.Statuses[0], nil
}

// ListLogs lists the log files of an application's containers on a node.
func (c *Client) ListLogs(ctx context.Context, node, appID, containerID string) ([]*yarnpb.ContainerLogFile, error) {
	nm, release, err := c.node(node)
	if err != nil {
		return nil, err
	}
	defer release()
	resp, err := nm.ListContainerLogs(ctx, &yarnpb.ListContainerLogsRequest{ApplicationId: appID, ContainerId: containerID})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp.Files, nil
}

// ReadLog copies a container's log to w; with follow it goes on until the
// container completes.
func (c *Client) ReadLog(ctx context.Context, node, containerID, name string, follow bool, w io.Writer) error {
	nm, release, err := c.node(node)
	if err != nil {
		return err
	}
	defer release()
	stream, err := nm.ReadContainerLog(ctx, &yarnpb.ReadContainerLogRequest{ContainerId: containerID, Name: name, Follow: follow})
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errdefs.FromGRPC(err)
		}
		if _, err := w.Write(chunk.Data); err != nil {
			return err
		}
	}
}
