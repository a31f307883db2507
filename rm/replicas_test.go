package rm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil/tlstest"
)

// replicaSet is a cluster of RM replicas on disk, with real raft over
// mutual TLS on loopback ports picked up front (each replica's --join
// names the others before any of them listens).
type replicaSet struct {
	t       testing.TB
	pki     *tlstest.PKI
	addrs   []string // gRPC addresses, the replicas' ids
	raft    []string
	dirs    []string
	servers []*Server
}

func newReplicaSet(t testing.TB, n int) *replicaSet {
	rs := &replicaSet{t: t, pki: tlstest.New(t)}
	for i := 0; i < n; i++ {
		rs.addrs = append(rs.addrs, freeAddr(t))
		rs.raft = append(rs.raft, freeAddr(t))
		rs.dirs = append(rs.dirs, t.TempDir())
	}
	rs.servers = make([]*Server, n)
	return rs
}

// start starts replica i, joining every other replica of the set.
func (rs *replicaSet) start(i int, mutate func(*Config)) *Server {
	t := rs.t
	t.Helper()
	cfg := DefaultConfig()
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: fmt.Sprintf("rm-%d", i), Level: hclog.Warn, Output: testWriter{t}})
	cfg.Addr, cfg.RaftAddr, cfg.HTTPAddr, cfg.DataDir = rs.addrs[i], rs.raft[i], "", rs.dirs[i]
	cfg.RaftTimeout = 100 * time.Millisecond
	cfg.TLS = rs.pki.Bundle(tlstest.Server(fmt.Sprintf("rm-%d", i)))
	cfg.CA = rs.pki.CA
	cfg.BootstrapExpect = len(rs.addrs)
	cfg.Join = rs.addrs
	if mutate != nil {
		mutate(cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rs.servers[i] = s
	t.Cleanup(s.Shutdown)
	return s
}

// leader waits for exactly one running replica to have established
// leadership and returns its index.
func (rs *replicaSet) leader() int {
	rs.t.Helper()
	idx := -1
	waitUntil(rs.t, "one leader", func() bool {
		idx = -1
		for i, s := range rs.servers {
			if s == nil || s.stopped() {
				continue
			}
			if s.IsLeader() {
				if idx >= 0 {
					return false
				}
				idx = i
			}
		}
		return idx >= 0
	})
	return idx
}

func (rs *replicaSet) client(addrs ...string) *rmclient.Client {
	rs.t.Helper()
	if len(addrs) == 0 {
		addrs = rs.addrs
	}
	c, err := rmclient.New(addrs, rs.pki.Bundle(tlstest.User("alice", AdminGroup)))
	if err != nil {
		rs.t.Fatal(err)
	}
	rs.t.Cleanup(func() { c.Close() })
	return c
}

func peerIDs(st *yarnpb.ServiceStateResponse) []string {
	var ids []string
	for _, p := range st.Peers {
		ids = append(ids, p.Id)
	}
	slices.Sort(ids)
	return ids
}

// Three replicas started with --bootstrap-expect 3 and each other's
// addresses form one cluster; only the leader runs the leader's loops; a
// write through any replica reaches the leader; a read is answered by
// every replica once it has the write; when the leader goes, another
// takes over with the state, and the loops start there.
func TestReplicasFormAClusterAndFailOver(t *testing.T) {
	rs := newReplicaSet(t, 3)
	for i := range rs.servers {
		rs.start(i, nil)
	}
	lead := rs.leader()
	c := rs.client(rs.addrs[lead])
	st, err := c.ServiceState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(rs.addrs)
	slices.Sort(want)
	if got := peerIDs(st); !slices.Equal(got, want) {
		t.Fatalf("peers %v, want %v", got, want)
	}
	for _, p := range st.Peers {
		if !p.Voter || p.Leader != (p.Id == rs.addrs[lead]) {
			t.Fatalf("peer %+v (leader is %s)", p, rs.addrs[lead])
		}
	}
	for i, s := range rs.servers {
		s.leaderMu.Lock()
		running := s.leaderCancel != nil
		s.leaderMu.Unlock()
		if running != (i == lead) {
			t.Fatalf("replica %d runs the leader's loops: %v (leader %d)", i, running, lead)
		}
	}

	// A client that knows only a follower is led to the leader.
	follower := (lead + 1) % 3
	app, err := rs.client(rs.addrs[follower]).NewApplication(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c = rs.client()
	if err := c.Submit(context.Background(), &yarnpb.ApplicationSubmissionContext{ApplicationId: app.ApplicationId, Name: "replicated",
		AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}}}); err != nil {
		t.Fatal(err)
	}
	// Every replica answers a read with the write: a follower waits until
	// it has applied what the leader had.
	for i, addr := range rs.addrs {
		r, err := rs.client(addr).Report(context.Background(), app.ApplicationId, false)
		if err != nil || r.Name != "replicated" {
			t.Fatalf("replica %d's answer right after the submission: %+v, %v", i, r, err)
		}
	}
	for i, s := range rs.servers {
		waitUntil(t, fmt.Sprintf("replica %d has the application", i), func() bool {
			return s.State().Snapshot().App(nil, app.ApplicationId) != nil
		})
	}

	// An id the leader hands out just before it goes is good at the next.
	pending, err := c.NewApplication(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs.servers[lead].Shutdown()
	next := rs.leader()
	if next == lead {
		t.Fatalf("the stopped replica %d still leads", lead)
	}
	r, err := c.Report(context.Background(), app.ApplicationId, false)
	if err != nil || r.Name != "replicated" {
		t.Fatalf("after failover: %+v, %v", r, err)
	}
	if err := c.Submit(context.Background(), &yarnpb.ApplicationSubmissionContext{ApplicationId: pending.ApplicationId,
		AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}}}); err != nil {
		t.Fatalf("submitting an id the failed leader handed out: %v", err)
	}
	if _, err := c.NewApplication(context.Background()); err != nil {
		t.Fatalf("a write after failover: %v", err)
	}
	// A client whose first address is the replica that is down, and whose
	// second is a follower, finds the leader.
	var others []string
	for i, a := range rs.addrs {
		if i != lead && i != next {
			others = append(others, a)
		}
	}
	down := rs.client(append([]string{rs.addrs[lead]}, others...)...)
	if _, err := down.NewApplication(context.Background()); err != nil {
		t.Fatalf("a client whose first replica is down: %v", err)
	}
}

// A replica that lost its data dir comes back by asking the leader to add
// it again, and gets the state; a fourth replica joins a running cluster
// without --bootstrap-expect; remove-peer takes a replica out.
func TestReplicasJoinRejoinAndLeave(t *testing.T) {
	rs := newReplicaSet(t, 4)
	rs.addrs, rs.raft, rs.dirs = rs.addrs[:3], rs.raft[:3], rs.dirs[:3]
	four, fourRaft, fourDir := freeAddr(t), freeAddr(t), t.TempDir()
	rs.servers = rs.servers[:3]
	for i := range rs.servers {
		rs.start(i, nil)
	}
	lead := rs.leader()
	c := rs.client()
	app, err := c.NewApplication(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Submit(context.Background(), &yarnpb.ApplicationSubmissionContext{ApplicationId: app.ApplicationId,
		AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}}}); err != nil {
		t.Fatal(err)
	}

	// A follower loses its data dir.
	lost := (lead + 1) % 3
	rs.servers[lost].Shutdown()
	if err := os.RemoveAll(rs.dirs[lost]); err != nil {
		t.Fatal(err)
	}
	back := rs.start(lost, nil)
	waitUntil(t, "the replica without its data dir has the state again", func() bool {
		return back.inCluster() && back.State().Snapshot().App(nil, app.ApplicationId) != nil
	})

	// A fourth joins; it only joins (no --bootstrap-expect).
	rs.addrs, rs.raft, rs.dirs = append(rs.addrs, four), append(rs.raft, fourRaft), append(rs.dirs, fourDir)
	rs.servers = append(rs.servers, nil)
	fourth := rs.start(3, func(cfg *Config) { cfg.BootstrapExpect, cfg.Join = 0, rs.addrs[:3] })
	waitUntil(t, "the fourth replica has joined", func() bool {
		return fourth.inCluster() && fourth.State().Snapshot().App(nil, app.ApplicationId) != nil
	})
	waitUntil(t, "the fourth replica caught up and made a voter", func() bool {
		st, err := c.ServiceState(context.Background())
		if err != nil || len(st.Peers) != 4 {
			return false
		}
		for _, p := range st.Peers {
			if !p.Voter {
				return false
			}
		}
		return true
	})
	// The leader's raft log says how: first a non-voter, then a voter.
	if got := suffrages(t, rs.servers[rs.leader()], four); !slices.Equal(got, []string{"Nonvoter", "Voter"}) {
		t.Errorf("the fourth replica's suffrage in the leader's configuration entries: %v, want [Nonvoter Voter]", got)
	}

	// Removing it leaves three; removing one that is not there says so.
	if err := c.RemoveRaftPeer(context.Background(), four); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "three peers", func() bool {
		st, err := c.ServiceState(context.Background())
		return err == nil && len(st.Peers) == 3 && !slices.Contains(peerIDs(st), four)
	})
	waitUntil(t, "the removed replica knows it is out", func() bool { return !fourth.inCluster() })
	if err := c.RemoveRaftPeer(context.Background(), "127.0.0.1:1"); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "no replica") {
		t.Fatalf("removing a replica that is not there: %v", err)
	}
}

// suffrages reads s's raft log for the configuration entries that name
// id, and returns its suffrage in each, in order (repeats dropped).
func suffrages(t *testing.T, s *Server, id string) []string {
	t.Helper()
	first, _ := s.raftLogs.FirstIndex()
	last, _ := s.raftLogs.LastIndex()
	var got []string
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		if s.raftLogs.GetLog(i, &l) != nil || l.Type != raft.LogConfiguration {
			continue
		}
		for _, srv := range raft.DecodeConfiguration(l.Data).Servers {
			if string(srv.ID) == id && (len(got) == 0 || got[len(got)-1] != srv.Suffrage.String()) {
				got = append(got, srv.Suffrage.String())
			}
		}
	}
	return got
}

// Only admins change the raft configuration, and only replicas add
// themselves.
func TestRaftChangesNeedTheirIdentity(t *testing.T) {
	rs := newReplicaSet(t, 1)
	rs.start(0, func(cfg *Config) { cfg.BootstrapExpect, cfg.Join = 1, nil })
	rs.leader()
	bob, err := rmclient.New(rs.addrs, rs.pki.Bundle(tlstest.User("bob")))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if err := bob.RemoveRaftPeer(context.Background(), rs.addrs[0]); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("a user who is no admin removing a peer: %v", err)
	}
	if err := rs.client().AddRaftPeer(context.Background(), "127.0.0.1:9", "127.0.0.1:10"); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("a user adding a peer: %v", err)
	}
	if err := rs.client().RemoveRaftPeer(context.Background(), rs.addrs[0]); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("removing the only replica: %v", err)
	}
	// Bad flags are refused before anything starts.
	for _, bad := range []func(*Config){
		func(cfg *Config) { cfg.BootstrapExpect, cfg.Join = 3, nil },
		func(cfg *Config) { cfg.BootstrapExpect, cfg.Join = 1, []string{"127.0.0.1:1"} },
		func(cfg *Config) { cfg.BootstrapExpect, cfg.Join = 0, nil },
		func(cfg *Config) { cfg.Join = []string{"nohost"} },
	} {
		cfg := DefaultConfig()
		cfg.TLS, cfg.DataDir, cfg.Addr = rs.pki.Bundle(tlstest.Server("x")), filepath.Join(t.TempDir(), "d"), "127.0.0.1:0"
		bad(cfg)
		if s, err := New(cfg); err == nil {
			s.Shutdown()
			t.Fatalf("config %+v/%v was accepted", cfg.BootstrapExpect, cfg.Join)
		}
	}
}

// A file a user stages on one replica is on every replica when the upload
// is answered: an application submitted with it starts after its leader
// fails.
func TestStagedFilesAreOnEveryReplica(t *testing.T) {
	rs := newReplicaSet(t, 3)
	for i := range rs.servers {
		rs.start(i, func(cfg *Config) { cfg.HTTPAddr = "127.0.0.1:0" })
	}
	lead := rs.leader()
	waitUntil(t, "every replica in the cluster", func() bool {
		for _, s := range rs.servers {
			if !s.inCluster() {
				return false
			}
		}
		return true
	})
	c := rs.client()
	file := []byte("a job program, staged once")
	sum := sha256.Sum256(file)
	digest := hex.EncodeToString(sum[:])
	hc := rmclient.HTTPClient(c.TLS())
	if code, body := put(t, hc, rs.servers[lead].stagingURL()+digest, file); code != http.StatusCreated {
		t.Fatalf("upload: %d %s", code, body)
	}
	for i, s := range rs.servers {
		got, err := os.ReadFile(filepath.Join(s.staging.dir, digest))
		if err != nil || !bytes.Equal(got, file) {
			t.Fatalf("replica %d after the upload: %q, %v", i, got, err)
		}
	}
	// A node certificate cannot stage (only users, and replicas copying).
	node, err := rmclient.New(rs.addrs, rs.pki.Bundle(tlstest.Node("n1")))
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if code, _ := put(t, rmclient.HTTPClient(node.TLS()), rs.servers[lead].stagingURL()+digest, file); code != http.StatusForbidden {
		t.Fatalf("a node staging a file: %d", code)
	}
}

// Reads wait for every command a replica raft has elected holds in its
// log: until it has established its leadership it tells the followers
// its newest command as the index to read at, and once it has, what it
// has applied. Its log holds every committed command, its state maybe
// not all of them yet.
func TestAnElectedReplicaReadsAtItsNewestCommand(t *testing.T) {
	rs := newReplicaSet(t, 3)
	var hold atomic.Bool
	for i := range rs.servers {
		rs.start(i, func(cfg *Config) {
			cfg.establishFault = func() error {
				if hold.Load() {
					return errors.New("held (injected)")
				}
				return nil
			}
		})
	}
	lead := rs.leader()
	c := rs.client()
	app, err := c.NewApplication(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Submit(context.Background(), &yarnpb.ApplicationSubmissionContext{ApplicationId: app.ApplicationId, Name: "committed",
		AmContainer: &yarnpb.ContainerLaunchContext{Command: []string{"am"}}}); err != nil {
		t.Fatal(err)
	}
	st, err := rs.client(rs.addrs[lead]).ServiceState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.ReadIndex == 0 || st.ReadIndex != st.AppliedIndex {
		t.Fatalf("an established leader reads at %d, has applied %d", st.ReadIndex, st.AppliedIndex)
	}
	committed := st.ReadIndex
	hold.Store(true)
	rs.servers[lead].Shutdown()
	elected := -1
	waitUntil(t, "a replica elected", func() bool {
		for i, s := range rs.servers {
			if i != lead && s.raft.State() == raft.Leader {
				elected = i
				return true
			}
		}
		return false
	})
	s := rs.servers[elected]
	st, err = rs.client(rs.addrs[elected]).ServiceState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.IsLeader() || st.State != "leader" || st.ReadIndex < committed || st.ReadIndex < st.AppliedIndex {
		t.Fatalf("an elected replica not established: serving %v, %s, reads at %d (the submission committed by %d), applied %d",
			s.IsLeader(), st.State, st.ReadIndex, committed, st.AppliedIndex)
	}
	// Both replicas answer the read with the committed submission.
	for i, addr := range rs.addrs {
		if i == lead {
			continue
		}
		r, err := rs.client(addr).Report(context.Background(), app.ApplicationId, false)
		if err != nil || r.Name != "committed" {
			t.Fatalf("replica %d's answer with the leader not yet established: %+v, %v", i, r, err)
		}
	}
}
