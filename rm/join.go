package rm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

// A replica started with --join finds its cluster through the other
// replicas' gRPC addresses (Nomad's retry_join, without a gossip layer:
// the replicas' own API answers who they are). With --bootstrap-expect N
// and no raft state anywhere, the replicas bootstrap together once each
// has found N replicas without state; each computes the same
// configuration from what the others report, so any of them may
// bootstrap first. When one of them already holds a configuration, a
// replica without state asks the leader to add it instead: that is how a
// fourth or fifth replica joins, and how one that lost its data dir comes
// back. A new replica joins as a non-voter, which the leader makes a
// voter once it has caught up (Nomad's autopilot): an empty replica never
// counts toward a commit's quorum while it is still receiving the state.

// inCluster reports whether this replica is in the raft configuration it
// holds: bootstrapped or joined, and not removed since.
func (s *Server) inCluster() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	return slices.ContainsFunc(f.Configuration().Servers, func(srv raft.Server) bool { return string(srv.ID) == s.cfg.AdvertiseAddr })
}

// joinLoop looks for the cluster until this replica is in one, trying
// again with backoff, and says what it waits for now and then.
func (s *Server) joinLoop() {
	backoff := 250 * time.Millisecond
	var lastSaid time.Time
	var lastErr string
	for !s.inCluster() {
		err := s.join()
		if err == nil {
			// The leader replicates to this replica from now on; wait for
			// the configuration to arrive.
			backoff = time.Second
		} else if msg := err.Error(); msg != lastErr || time.Since(lastSaid) > 30*time.Second {
			s.logger.Info("looking for the cluster to join", "join", strings.Join(s.cfg.Join, ","), "bootstrap_expect", s.cfg.BootstrapExpect, "waiting_for", msg)
			lastSaid, lastErr = time.Now(), msg
		}
		select {
		case <-s.shutdown:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	s.logger.Info("joined the cluster", "peers", strings.Join(s.rmAddrs(), ","))
}

// peerInfo is what one --join address answered.
type peerInfo struct {
	addr string
	st   *yarnpb.ServiceStateResponse
}

// join makes one attempt: ask every --join address who it is, then
// bootstrap with them or ask the leader to add this replica.
func (s *Server) join() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var found []peerInfo
	var unreachable []string
	for _, addr := range s.cfg.Join {
		if addr == s.cfg.AdvertiseAddr {
			continue
		}
		st, err := s.askPeer(ctx, addr)
		if err != nil {
			unreachable = append(unreachable, fmt.Sprintf("%s (%v)", addr, err))
			continue
		}
		if st.Id == s.cfg.AdvertiseAddr {
			continue // this replica under another name
		}
		found = append(found, peerInfo{addr, st})
	}
	for _, p := range found {
		if p.st.InCluster {
			return s.askToJoin(ctx, found)
		}
	}
	if s.cfg.BootstrapExpect < 2 {
		if len(found) == 0 {
			return fmt.Errorf("no replica answered: %s", strings.Join(unreachable, "; "))
		}
		return fmt.Errorf("no replica answered as part of a cluster (those that answered have no raft state; start them with --bootstrap-expect to form one)")
	}
	servers := []raft.Server{{ID: raft.ServerID(s.cfg.AdvertiseAddr), Address: s.raftTrans.LocalAddr(), Suffrage: raft.Voter}}
	for _, p := range found {
		if int(p.st.BootstrapExpect) != s.cfg.BootstrapExpect {
			return fmt.Errorf("%s expects %d replicas and this one %d: start every replica with the same --bootstrap-expect", p.st.Id, p.st.BootstrapExpect, s.cfg.BootstrapExpect)
		}
		if !slices.ContainsFunc(servers, func(srv raft.Server) bool { return string(srv.ID) == p.st.Id }) {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.st.Id), Address: raft.ServerAddress(p.st.RaftAddress), Suffrage: raft.Voter})
		}
	}
	if len(servers) < s.cfg.BootstrapExpect {
		msg := fmt.Sprintf("%d of %d replicas found", len(servers), s.cfg.BootstrapExpect)
		if len(unreachable) > 0 {
			msg += "; not answering: " + strings.Join(unreachable, "; ")
		}
		return errors.New(msg)
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("bootstrapping: %w", err)
	}
	ids := make([]string, len(servers))
	for i, srv := range servers {
		ids[i] = string(srv.ID)
	}
	s.logger.Info("bootstrapped the cluster", "voters", strings.Join(ids, ","))
	return nil
}

// askPeer asks one replica who it is, without following leaders.
func (s *Server) askPeer(ctx context.Context, addr string) (*yarnpb.ServiceStateResponse, error) {
	c, err := rmclient.New([]string{addr}, s.cfg.TLS)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.RetryFor = 0
	return c.ServiceState(ctx)
}

// askToJoin asks the leader, through any replica that answered, to add
// this one as a voter.
func (s *Server) askToJoin(ctx context.Context, found []peerInfo) error {
	addrs := make([]string, 0, len(found))
	for _, p := range found {
		if p.st.InCluster {
			addrs = append(addrs, p.addr)
		}
	}
	c, err := rmclient.New(addrs, s.cfg.TLS)
	if err != nil {
		return err
	}
	defer c.Close()
	c.RetryFor = 3 * time.Second
	if err := c.AddRaftPeer(ctx, s.cfg.AdvertiseAddr, string(s.raftTrans.LocalAddr())); err != nil {
		return fmt.Errorf("asking the leader to add this replica: %w", err)
	}
	s.logger.Info("asked the leader to add this replica", "via", strings.Join(addrs, ","))
	return nil
}

// maxPeers bounds a raft configuration: raft clusters are 3 or 5 voters,
// and more replicas only slow every commit down.
const maxPeers = 9

// addPeer makes id (a gRPC address) a voter reached at raftAddr. Adding a
// replica already in the configuration at the same address changes
// nothing, so a replica that lost its data dir may ask again.
func (s *Server) addPeer(id, raftAddr string) error {
	if err := rmclient.CheckAddr(id); err != nil {
		return errdefs.InvalidArgument("peer id %q: %v", id, err)
	}
	if err := rmclient.CheckAddr(raftAddr); err != nil {
		return errdefs.InvalidArgument("peer raft address %q: %v", raftAddr, err)
	}
	servers, err := s.leaderConfiguration()
	if err != nil {
		return err
	}
	for _, srv := range servers {
		switch {
		case string(srv.ID) == id && string(srv.Address) == raftAddr:
			// A voter that lost its data dir stays one and catches up
			// from the others; a non-voter is on its way.
			return nil
		case string(srv.ID) != id && string(srv.Address) == raftAddr:
			return errdefs.AlreadyExists("raft address %s belongs to replica %s; remove it first (`loom admin raft remove-peer %s`)", raftAddr, srv.ID, srv.ID)
		}
	}
	if len(servers) >= maxPeers {
		return errdefs.FailedPrecondition("the cluster has %d replicas, the most it takes", len(servers))
	}
	if err := s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, 30*time.Second).Error(); err != nil {
		return raftChangeError(s, err)
	}
	s.logger.Info("replica added as a non-voter; it becomes a voter once it has caught up", "id", id, "raft_addr", raftAddr)
	return nil
}

// A non-voter is made a voter once it has kept up with the leader for
// promotionChecks checks in a row, promotionInterval apart: each time, it
// had applied at least what the leader had at the check before.
const (
	promotionInterval = time.Second
	promotionChecks   = 2
)

// promoteLoop, on the leader, makes caught-up non-voters voters.
func (s *Server) promoteLoop(ctx context.Context) {
	t := time.NewTicker(promotionInterval)
	defer t.Stop()
	keptUp := map[raft.ServerID]int{}
	var before uint64 // the leader's applied index at the last check
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		servers, err := s.leaderConfiguration()
		if err != nil {
			continue
		}
		now := s.fsm.AppliedIndex()
		joining := map[raft.ServerID]bool{}
		for _, srv := range servers {
			if srv.Suffrage != raft.Nonvoter {
				continue
			}
			joining[srv.ID] = true
			if !s.caughtUp(ctx, srv, before) {
				keptUp[srv.ID] = 0
				continue
			}
			if keptUp[srv.ID]++; keptUp[srv.ID] < promotionChecks {
				continue
			}
			if err := s.raft.AddVoter(srv.ID, srv.Address, 0, 10*time.Second).Error(); err != nil {
				s.logger.Warn("making a replica a voter failed", "id", srv.ID, "error", err)
				continue
			}
			s.logger.Info("replica caught up and is a voter", "id", srv.ID)
		}
		for id := range keptUp {
			if !joining[id] {
				delete(keptUp, id)
			}
		}
		before = now
	}
}

// caughtUp reports whether a joining replica answers that it has applied
// at least index (never true before the first check).
func (s *Server) caughtUp(ctx context.Context, srv raft.Server, index uint64) bool {
	if index == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, promotionInterval)
	defer cancel()
	st, err := s.askPeer(ctx, string(srv.ID))
	return err == nil && st.Id == string(srv.ID) && st.AppliedIndex >= index
}

// removePeer takes id out of the raft configuration.
func (s *Server) removePeer(id string) error {
	servers, err := s.leaderConfiguration()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(servers, func(srv raft.Server) bool { return string(srv.ID) == id })
	if i < 0 {
		ids := make([]string, len(servers))
		for j, srv := range servers {
			ids[j] = string(srv.ID)
		}
		return errdefs.NotFound("no replica %q in the raft configuration (its replicas: %s)", id, strings.Join(ids, ", "))
	}
	if len(servers) == 1 {
		return errdefs.FailedPrecondition("%s is the only replica; removing it would leave no cluster", id)
	}
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, 30*time.Second).Error(); err != nil {
		return raftChangeError(s, err)
	}
	s.logger.Info("replica removed", "id", id)
	return nil
}

// leaderConfiguration is the raft configuration, on the leader only.
func (s *Server) leaderConfiguration() ([]raft.Server, error) {
	if !s.isLeader.Load() {
		return nil, errdefs.NotLeader(s.leaderAddr())
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, errdefs.Unavailable("reading the raft configuration: %v", err)
	}
	return f.Configuration().Servers, nil
}

func raftChangeError(s *Server, err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		return errdefs.NotLeader(s.leaderAddr())
	}
	return errdefs.Unavailable("changing the raft configuration: %v", err)
}
