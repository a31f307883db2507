package rm

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"loom/proto/yarnpb"
	"loom/rpc"
	"loom/tlsutil"
)

// nmPool holds one gRPC connection per NodeManager the RM talks to (the AM
// launcher, prompt container stops).
type nmPool struct {
	logger hclog.Logger
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	tls    *tlsutil.Bundle
	wg     sync.WaitGroup
	closed bool
}

func newNMPool(logger hclog.Logger, tls *tlsutil.Bundle) *nmPool {
	return &nmPool{logger: logger.Named("nmclient"), conns: map[string]*grpc.ClientConn{}, tls: tls}
}

func (p *nmPool) client(addr string) (yarnpb.ContainerManagerServiceClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conns[addr]; c != nil {
		return yarnpb.NewContainerManagerServiceClient(c), nil
	}
	c, err := grpc.NewClient(addr, rpc.DialOptions(p.tls.ClientConfig(tlsutil.NodeName))...)
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return yarnpb.NewContainerManagerServiceClient(c), nil
}

// stopAsync asks an NM to stop containers, without waiting.
func (p *nmPool) stopAsync(addr string, ids []string) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		c, err := p.client(addr)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.StopContainers(ctx, &yarnpb.StopContainersRequest{ContainerIds: ids}); err != nil {
			p.logger.Debug("stopping containers failed; the node's heartbeat will clean them up", "node_id", addr, "error", err)
		}
	}()
}

func (p *nmPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = map[string]*grpc.ClientConn{}
}
