package rmclient

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

// fakeClock is a clock a test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// A call dropped late in a long poll (the RM restarting under it) is
// retried for RetryFor from the failure, not from the call's start; a
// cluster that stays away that long fails the call.
func TestRetryForCountsFromTheFailure(t *testing.T) {
	c, err := New([]string{"127.0.0.1:1"}, tlstest.New(t).Bundle(tlstest.User("alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	c.now, c.RetryFor = clock.now, 15*time.Second
	calls := 0
	err = c.call(context.Background(), func(context.Context, *grpc.ClientConn) error {
		calls++
		if calls == 1 {
			clock.advance(29 * time.Second) // a long poll, then the RM goes
			return errdefs.ToGRPC(errdefs.Unavailable("the ResourceManager is restarting"))
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("a poll dropped after 29 s: %v after %d calls, want a retry that succeeds", err, calls)
	}
	calls = 0
	err = c.call(context.Background(), func(context.Context, *grpc.ClientConn) error {
		calls++
		clock.advance(4 * time.Second)
		return errdefs.ToGRPC(errdefs.Unavailable("still restarting"))
	})
	if err == nil || calls < 4 || calls > 6 {
		t.Fatalf("a cluster away for good: %v after %d calls, want a failure after about 15 s of retries", err, calls)
	}
}

// The AM's memory of completions it handed on is bounded: the oldest go.
func TestRecentSetIsBounded(t *testing.T) {
	r := newRecentSet(3)
	for _, s := range []string{"a", "b", "a", "c", "d"} {
		r.add(s)
	}
	if r.len() != 3 || r.add("d") || !r.add("a") {
		t.Fatalf("after a,b,a,c,d: %d held, d new %v", r.len(), r.add("d"))
	}
}

// callsOnly is a ResourceManager from before heartbeat streams: it
// answers NodeHeartbeat calls and nothing else.
type callsOnly struct {
	yarnpb.UnimplementedResourceTrackerServiceServer
	mu    sync.Mutex
	calls int
}

func (f *callsOnly) NodeHeartbeat(context.Context, *yarnpb.NodeHeartbeatRequest) (*yarnpb.NodeHeartbeatResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return &yarnpb.NodeHeartbeatResponse{ResponseId: int32(f.calls)}, nil
}

// A NodeManager whose ResourceManager has no heartbeat stream sends its
// heartbeats as calls.
func TestHeartbeatsFallBackToCalls(t *testing.T) {
	pki := tlstest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rm := &callsOnly{}
	srv := grpc.NewServer(pki.Bundle(tlstest.Server("rm")).ServerOption())
	yarnpb.RegisterResourceTrackerServiceServer(srv, rm)
	go srv.Serve(ln)
	defer srv.Stop()
	c, err := New([]string{ln.Addr().String()}, pki.Bundle(tlstest.Node("n1")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hb := c.Heartbeats()
	defer hb.Close()
	for i := 1; i <= 3; i++ {
		resp, err := hb.Send(context.Background(), &yarnpb.NodeHeartbeatRequest{NodeId: "n1:1"})
		if err != nil || resp.ResponseId != int32(i) {
			t.Fatalf("heartbeat %d to an RM without the stream: %+v, %v; want call %d answered", i, resp, err, i)
		}
	}
}
