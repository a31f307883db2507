package rm

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

// blockingNM holds every StopContainers call until release is closed.
type blockingNM struct {
	yarnpb.UnimplementedContainerManagerServiceServer
	mu       sync.Mutex
	inFlight int
	calls    int
	release  chan struct{}
}

func (b *blockingNM) StopContainers(ctx context.Context, _ *yarnpb.StopContainersRequest) (*yarnpb.StopContainersResponse, error) {
	b.mu.Lock()
	b.inFlight++
	b.calls++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inFlight--
		b.mu.Unlock()
	}()
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return &yarnpb.StopContainersResponse{}, nil
}

// Prompt stops are bounded in flight, the rest left to heartbeats, and a
// stop on a node the launcher holds no connection to keeps none.
func TestPromptStopsAreBoundedAndKeepNoConnection(t *testing.T) {
	s, _ := testServer(t, nil)
	nm := &blockingNM{release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(bundleFor(t, s, tlstest.Node("blocking")).ServerOption())
	yarnpb.RegisterContainerManagerServiceServer(g, nm)
	go g.Serve(ln)
	t.Cleanup(g.Stop)

	for range maxPromptStops + 36 {
		s.nms.stopAsync(ln.Addr().String(), []string{"c"})
	}
	waitUntil(t, "the stops to reach the node", func() bool {
		nm.mu.Lock()
		defer nm.mu.Unlock()
		return nm.inFlight == maxPromptStops
	})
	close(nm.release)
	waitUntil(t, "the stops to end", func() bool {
		nm.mu.Lock()
		defer nm.mu.Unlock()
		return nm.inFlight == 0 && len(s.nms.stops) == 0
	})
	if nm.calls != maxPromptStops {
		t.Errorf("%d stop calls reached the node; want %d, the rest left to heartbeats", nm.calls, maxPromptStops)
	}
	if n := s.nms.conns.Len(); n != 0 {
		t.Errorf("the RM keeps %d connections after stops alone; want 0", n)
	}
}
