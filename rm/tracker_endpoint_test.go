package rm

import (
	"context"
	"errors"
	"testing"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

// A NodeManager's heartbeats on one stream are answered in turn as calls
// are; an error ends the stream with the call's error, and the next
// heartbeat opens another.
func TestHeartbeatsOnAStream(t *testing.T) {
	s, _ := testServer(t, nil)
	nm := startFakeNM(t, s, 4096)
	hb := nm.rm.Heartbeats()
	defer hb.Close()
	ctx := context.Background()

	var last int32
	for i := range 3 {
		resp, err := hb.Send(ctx, &yarnpb.NodeHeartbeatRequest{NodeId: nm.addr, LastResponseId: last, Healthy: true})
		if err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
		if resp.Action != yarnpb.NodeAction_NORMAL || resp.ResponseId != last+1 || len(resp.ContainerKeys) == 0 {
			t.Fatalf("heartbeat %d answered %+v; want NORMAL, response %d and the container keys", i, resp, last+1)
		}
		last = resp.ResponseId
	}

	// A node the RM does not know is told to register; another node's
	// heartbeat is refused, as a call of it is.
	resp, err := hb.Send(ctx, &yarnpb.NodeHeartbeatRequest{NodeId: "10.9.9.9:1", Healthy: true})
	if err != nil || resp.Action != yarnpb.NodeAction_RESYNC {
		t.Fatalf("a heartbeat for a node nobody registered: %+v, %v; want RESYNC", resp, err)
	}
	other := startFakeNM(t, s, 4096)
	_, err = hb.Send(ctx, &yarnpb.NodeHeartbeatRequest{NodeId: other.addr, Healthy: true})
	if !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("a heartbeat for a node registered by another certificate: %v; want permission denied", err)
	}
	// The next heartbeat opens a new stream and is answered.
	resp, err = hb.Send(ctx, &yarnpb.NodeHeartbeatRequest{NodeId: nm.addr, LastResponseId: last, Healthy: true})
	if err != nil || resp.ResponseId != last+1 {
		t.Fatalf("the heartbeat after a refusal: %+v, %v; want response %d", resp, err, last+1)
	}

	// Only NodeManagers may open the stream.
	user := clientAs(t, s, tlstest.User("mallory"))
	_, err = user.Heartbeats().Send(ctx, &yarnpb.NodeHeartbeatRequest{NodeId: nm.addr, Healthy: true})
	if !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("a user's heartbeat stream: %v; want permission denied", err)
	}

	// A stream open when the server shuts down ends at its next
	// heartbeat, with an error a NodeManager retries.
	s.Shutdown()
	nm.rm.RetryFor = 0
	if _, err := hb.Send(ctx, &yarnpb.NodeHeartbeatRequest{NodeId: nm.addr, Healthy: true}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("a heartbeat after the server shut down: %v; want unavailable", err)
	}
}

// A stream opened on a follower is led to the leader, and when the
// leader goes the heartbeats follow to the next.
func TestHeartbeatStreamsFollowTheLeader(t *testing.T) {
	rs := newReplicaSet(t, 3)
	for i := range rs.servers {
		rs.start(i, nil)
	}
	lead := rs.leader()
	follower := (lead + 1) % 3
	id := rs.pki.Bundle(tlstest.Node("n1"))
	nm, err := rmclient.New([]string{rs.addrs[follower], rs.addrs[lead], rs.addrs[(lead+2)%3]}, id)
	if err != nil {
		t.Fatal(err)
	}
	defer nm.Close()
	ctx := context.Background()
	if _, err := nm.RegisterNode(ctx, &yarnpb.RegisterNodeManagerRequest{NodeId: "n1:8041", Total: &yarnpb.Resource{MemoryMb: 4096, Vcores: 4}}); err != nil {
		t.Fatal(err)
	}
	hb := nm.Heartbeats()
	defer hb.Close()
	resp, err := hb.Send(ctx, &yarnpb.NodeHeartbeatRequest{NodeId: "n1:8041", Healthy: true})
	if err != nil || resp.Action != yarnpb.NodeAction_NORMAL {
		t.Fatalf("a heartbeat stream that began at a follower: %+v, %v", resp, err)
	}
	rs.servers[lead].Shutdown()
	rs.leader()
	waitUntil(t, "a heartbeat answered after the failover", func() bool {
		resp, err := hb.Send(ctx, &yarnpb.NodeHeartbeatRequest{NodeId: "n1:8041", Healthy: true})
		return err == nil && (resp.Action == yarnpb.NodeAction_NORMAL || resp.Action == yarnpb.NodeAction_RESYNC)
	})
}
