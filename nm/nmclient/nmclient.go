// Package nmclient starts, stops and inspects containers on NodeManagers,
// and reads their logs. It keeps one connection per node.
package nmclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"

	"loom/errdefs"
	"loom/proto/yarnpb"
	"loom/rpc"
	"loom/tlsutil"
)

// Client talks to NodeManagers by node id (host:port).
type Client struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	tls   *tlsutil.Bundle
}

// New returns a client with no connections yet that presents the
// identity in tls and takes only NodeManagers of its cluster.
func New(tls *tlsutil.Bundle) *Client {
	return &Client{conns: map[string]*grpc.ClientConn{}, tls: tls}
}

// DialOptions are the gRPC options of a connection to a NodeManager.
func DialOptions(tls *tlsutil.Bundle) []grpc.DialOption {
	return rpc.DialOptions(tls.ClientConfig(tlsutil.NodeName))
}

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cc := range c.conns {
		_ = cc.Close()
	}
	c.conns = map[string]*grpc.ClientConn{}
	return nil
}

func (c *Client) node(addr string) (yarnpb.ContainerManagerServiceClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc := c.conns[addr]; cc != nil {
		return yarnpb.NewContainerManagerServiceClient(cc), nil
	}
	cc, err := grpc.NewClient(addr, DialOptions(c.tls)...)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return yarnpb.NewContainerManagerServiceClient(cc), nil
}

// Start starts one container on a node.
func (c *Client) Start(ctx context.Context, node string, req *yarnpb.StartContainerRequest) error {
	nm, err := c.node(node)
	if err != nil {
		return err
	}
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
	nm, err := c.node(node)
	if err != nil {
		return err
	}
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
	nm, err := c.node(node)
	if err != nil {
		return nil, err
	}
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
	nm, err := c.node(node)
	if err != nil {
		return nil, err
	}
	resp, err := nm.ListContainerLogs(ctx, &yarnpb.ListContainerLogsRequest{ApplicationId: appID, ContainerId: containerID})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp.Files, nil
}

// ReadLog copies a container's log to w; with follow it goes on until the
// container completes.
func (c *Client) ReadLog(ctx context.Context, node, containerID, name string, follow bool, w io.Writer) error {
	nm, err := c.node(node)
	if err != nil {
		return err
	}
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
