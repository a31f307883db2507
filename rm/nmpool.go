package rm

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rpc"
	"github.com/loom-project/loom/tlsutil"
)

// nmPool holds the RM's connections to NodeManagers: one per node while
// the AM launcher uses it, and nmLinger after (rpc.Pool), so that nodes
// that leave leave nothing behind. Each keeps an 8 KiB read buffer
// (grpc-go's default is 32 KiB) and writes through 8 KiB ones taken from
// a shared pool while it writes.
//
// Prompt container stops (an application ending or killed, containers
// released or preempted) use the launcher's connection where there is
// one and otherwise one of their own, closed after the call, and at most
// maxPromptStops are in flight: the node's next heartbeat stops what is
// not stopped this way. An ending application stops its containers on
// every node it ran on, so at 10,000 nodes with 1,000 applications stops
// that kept their connections for a minute held thousands of them, 120
// MiB of the RM's heap after 85 s (docs/BENCHMARKS.md).
type nmPool struct {
	logger hclog.Logger
	opts   []grpc.DialOption
	conns  *rpc.Pool
	stops  chan struct{} // a token for each stop in flight
	mu     sync.Mutex
	wg     sync.WaitGroup
	closed bool
}

// nmLinger is how long the RM keeps a connection to a NodeManager after
// its last use: long enough for an AM launch and the stops that follow.
const nmLinger = 10 * time.Second

// maxPromptStops bounds the stop calls to NodeManagers in flight.
const maxPromptStops = 64

func newNMPool(logger hclog.Logger, tls *tlsutil.Bundle) *nmPool {
	opts := append(rpc.DialOptions(tls.ClientConfig(tlsutil.NodeName)),
		grpc.WithReadBufferSize(8<<10), grpc.WithWriteBufferSize(8<<10))
	return &nmPool{logger: logger.Named("nmclient"), opts: opts, conns: rpc.NewPool(nmLinger, opts...), stops: make(chan struct{}, maxPromptStops)}
}

// client is a client of the NM at addr, and the function that releases
// its connection.
func (p *nmPool) client(addr string) (yarnpb.ContainerManagerServiceClient, func(), error) {
	cc, release, err := p.conns.Get(addr)
	if err != nil {
		return nil, nil, err
	}
	return yarnpb.NewContainerManagerServiceClient(cc), release, nil
}

// stopAsync asks an NM to stop containers, without waiting; with
// maxPromptStops in flight it leaves them to the node's next heartbeat.
func (p *nmPool) stopAsync(addr string, ids []string) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	select {
	case p.stops <- struct{}{}:
	default:
		p.mu.Unlock()
		p.logger.Debug("many stops in flight; the node's heartbeat stops these containers", "node_id", addr, "containers", len(ids))
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer func() { <-p.stops }()
		cc, release, ok := p.conns.GetOpen(addr)
		if !ok {
			var err error
			if cc, err = grpc.NewClient(addr, p.opts...); err != nil {
				return
			}
			release = func() { _ = cc.Close() }
		}
		defer release()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := yarnpb.NewContainerManagerServiceClient(cc).StopContainers(ctx, &yarnpb.StopContainersRequest{ContainerIds: ids}); err != nil {
			p.logger.Debug("stopping containers failed; the node's heartbeat will clean them up", "node_id", addr, "error", err)
		}
	}()
}

func (p *nmPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
	p.conns.Close()
}
