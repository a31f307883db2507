package rm

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rpc"
	"github.com/loom-project/loom/tlsutil"
)

// nmPool holds the RM's connections to NodeManagers (the AM launcher,
// prompt container stops): one per node while it is used, and a little
// after (rpc.Pool), so that nodes that leave leave nothing behind.
type nmPool struct {
	logger hclog.Logger
	conns  *rpc.Pool
	mu     sync.Mutex
	wg     sync.WaitGroup
	closed bool
}

func newNMPool(logger hclog.Logger, tls *tlsutil.Bundle) *nmPool {
	return &nmPool{logger: logger.Named("nmclient"), conns: rpc.NewPool(rpc.Linger, rpc.DialOptions(tls.ClientConfig(tlsutil.NodeName))...)}
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
		c, release, err := p.client(addr)
		if err != nil {
			return
		}
		defer release()
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
	p.conns.Close()
}
