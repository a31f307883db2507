// Package rm is loom's cluster ResourceManager: the node registry,
// applications and their attempts, the capacity scheduler and the AM
// launcher. Its state (package state) is changed only by commands
// applied through a hashicorp/raft FSM.
package rm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/grpc"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/rm/scheduler"
	"github.com/loom-project/loom/rm/state"
	"github.com/loom-project/loom/rpc"
	"github.com/loom-project/loom/tlsutil"
)

// Config holds every setting of a ResourceManager.
type Config struct {
	Logger hclog.Logger
	// DataDir holds the raft log, snapshots and the staging store.
	DataDir string
	// Addr is the gRPC listen address; AdvertiseAddr is what others dial
	// (defaults to the listener's address). It is also the raft server id.
	Addr          string
	AdvertiseAddr string
	HTTPAddr      string
	RaftAddr      string
	// BootstrapExpect is how many replicas form a new cluster. With 1 and
	// no Join, a replica without raft state bootstraps itself as the only
	// voter; with N > 1 it waits until it has found N replicas without
	// state through Join and bootstraps with them; with 0 it never
	// bootstraps and only joins a cluster that exists.
	BootstrapExpect int
	// Join lists other replicas' gRPC addresses, to find the cluster
	// through (join.go).
	Join []string
	// InMemory keeps raft in memory (tests only).
	InMemory bool

	NMHeartbeat time.Duration // interval NMs heartbeat at
	NodeExpiry  time.Duration // a node silent this long is LOST
	AMExpiry    time.Duration // an AM silent this long has failed
	// AMRegisterTimeout is how long a launched AM has to register.
	AMRegisterTimeout time.Duration
	AllocExpiry       time.Duration // an allocated container not started this long is reclaimed
	MaxAttempts       int32
	MaxAllocation     state.Resource
	// QueueFile is the queue file (HCL) this replica commits when it
	// becomes the leader and on refresh-queues; none keeps the tree in
	// raft, at first the built-in root.default.
	QueueFile string
	// Preemption takes containers back from queues over their guarantee
	// for queues below it; PreemptionGrace is how long an AM is warned
	// before its container is killed; PreemptionPerRound is the most of
	// the cluster one round (a second) newly takes back, a fraction.
	Preemption         bool
	PreemptionGrace    time.Duration
	PreemptionPerRound float64
	// EnableDebug serves Go's profiles at /debug/pprof/ of the HTTP
	// address, to admins.
	EnableDebug bool
	// NodeLocalityDelay and RackLocalityDelay are the scheduler's delay
	// scheduling: missed opportunities before an ask relaxes to its
	// preferred racks, then to any node.
	NodeLocalityDelay, RackLocalityDelay int
	// RaftTimeout is raft's heartbeat and election timeout.
	RaftTimeout time.Duration
	// MaxBatch bounds the allocations committed in one raft entry: a
	// few hundred, as maxBatchStatuses says why.
	MaxBatch int
	// KillGrace is how long after an application ends its AM container is
	// left to exit by itself before NMs are told to stop it.
	KillGrace time.Duration
	// KeyRotation is how often the leader makes a new master key for the
	// tokens it signs; a key retires after keysKept rotations.
	KeyRotation time.Duration
	// ContainerTokenLife is how long a container token lets its
	// container be started.
	ContainerTokenLife time.Duration
	// StagingQuota bounds the bytes one user keeps in the staging store
	// (DefaultStagingQuota when 0).
	StagingQuota int64
	// MaxCompletedApps and CompletedAppTTL bound the ended applications
	// the state keeps; NodeTTL how long a node that left is remembered.
	// The leader forgets the rest every GCInterval.
	MaxCompletedApps int
	CompletedAppTTL  time.Duration
	// KeepContainersOf is how many of the newest ended applications keep
	// their containers in the state.
	KeepContainersOf int
	// KeepEndedContainers bounds the containers of ended applications the
	// state keeps, newest applications first.
	KeepEndedContainers int
	// KeepCompletedOfRunning is how many completed containers a running
	// application keeps in the state once its AM has heard of them,
	// newest first (its AM containers are all kept).
	KeepCompletedOfRunning int
	NodeTTL                time.Duration
	GCInterval             time.Duration
	// GCPileUp is how many containers may complete after a collection
	// before the leader collects again, GCInterval or not: at thousands
	// of completions a second a minute's would be most of the state.
	GCPileUp int

	// TLS is this replica's identity (a server certificate of the
	// cluster CA): every listener takes only peers of that CA.
	TLS *tlsutil.Bundle
	// CA, with its key, signs the certificates of applications'
	// containers; without it the RM cannot launch AMs.
	CA *tlsutil.CA
	// Admins lists the users, and groups as "group:NAME", that may change
	// the cluster and act on any application.
	Admins []string

	// Clock is the time liveness, expiry, grace and retention work by;
	// the machine's when nil.
	Clock Clock

	// establishFault, when set, fails a step of establishing
	// leadership: tests make the steps' failures with it.
	establishFault func() error
}

// DefaultConfig returns every default in one place.
func DefaultConfig() *Config {
	return &Config{
		Logger:                 hclog.NewNullLogger(),
		Addr:                   "127.0.0.1:8032",
		HTTPAddr:               "127.0.0.1:8088",
		RaftAddr:               "127.0.0.1:8034",
		BootstrapExpect:        1,
		NMHeartbeat:            1 * time.Second,
		NodeExpiry:             10 * time.Second,
		AMExpiry:               30 * time.Second,
		AMRegisterTimeout:      5 * time.Minute,
		AllocExpiry:            60 * time.Second,
		MaxAttempts:            2,
		MaxAllocation:          state.Resource{MemoryMB: 8192, VCores: 4},
		Preemption:             true,
		PreemptionGrace:        15 * time.Second,
		PreemptionPerRound:     0.1,
		NodeLocalityDelay:      scheduler.DefaultNodeLocalityDelay,
		RackLocalityDelay:      scheduler.DefaultRackLocalityDelay,
		RaftTimeout:            300 * time.Millisecond,
		MaxBatch:               256,
		KillGrace:              5 * time.Second,
		KeyRotation:            24 * time.Hour,
		MaxCompletedApps:       DefaultMaxCompletedApps,
		KeepContainersOf:       100,
		KeepEndedContainers:    10000,
		KeepCompletedOfRunning: 20,
		CompletedAppTTL:        7 * 24 * time.Hour,
		NodeTTL:                24 * time.Hour,
		GCInterval:             time.Minute,
		GCPileUp:               20000,
		ContainerTokenLife:     10 * time.Minute,
		Admins:                 []string{"group:" + AdminGroup},
	}
}

// AdminGroup is the group whose members are the cluster's admins unless
// --admins says otherwise.
const AdminGroup = "admins"

// Server is a ResourceManager replica.
type Server struct {
	cfg    *Config
	logger hclog.Logger

	fsm       *FSM
	raft      *raft.Raft
	raftTrans raft.Transport
	closers   []func() error // raft stores, closed last
	leaderCh  chan bool

	grpc     *grpc.Server
	listener net.Listener
	http     *http.Server
	httpLn   net.Listener
	staging  *staging

	// Leader-only parts; nil when not the leader.
	leaderMu      sync.Mutex
	leaderCancel  context.CancelFunc
	leaderWG      sync.WaitGroup
	raftLogs      raft.LogStore
	raftSnaps     raft.SnapshotStore
	metrics       *metrics
	isLeader      atomic.Bool
	leaderReady   chan struct{} // closed once leadership is established
	clusterTS     atomic.Int64
	epoch         atomic.Int64
	appSeq        atomic.Uint64
	schedulerKick chan struct{}
	// room caches the cluster's free room for Allocate answers.
	room atomic.Pointer[roomView]
	// statusQ carries heartbeats' container changes to the status loop.
	statusQ chan containerStatusesCmd

	soft *softState
	nms  *nmPool
	// stagingPeers caches the other replicas' staging URLs.
	stagingPeers stagingPeers
	// leaderConn is a follower's connection to the leader, for reads.
	leaderConnMu   sync.Mutex
	leaderConn     *rmclient.Client
	leaderConnAddr string
	// clock is Config.Clock, or the real one.
	clock Clock
	// bootIndex is the index of the last command on disk at start (above
	// the snapshot the FSM restored): reads wait until it is applied, so a
	// restarted RM never answers from a partial state.
	bootIndex uint64

	wg       sync.WaitGroup
	shutdown chan struct{}
	once     sync.Once
	calls    atomic.Int64 // unary calls in progress
}

// New starts a ResourceManager: raft, the gRPC and HTTP servers.
func New(cfg *Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.TLS == nil {
		return nil, errors.New("the ResourceManager needs its TLS certificate: pass --tls-ca, --tls-cert and --tls-key (`loom tls` makes them)")
	}
	if id := cfg.TLS.Identity; id.Kind != tlsutil.KindServer {
		return nil, fmt.Errorf("the ResourceManager's certificate is for %s; it needs a server certificate (`loom tls cert create --server`)", id)
	}
	switch n := cfg.BootstrapExpect; {
	case n < 0 || n > maxPeers:
		return nil, fmt.Errorf("--bootstrap-expect %d: want 1 to %d (3 or 5 for a replicated cluster), or 0 to only join one", n, maxPeers)
	case n > 1 && len(cfg.Join) == 0:
		return nil, fmt.Errorf("--bootstrap-expect %d needs --join: the other replicas' addresses", n)
	case n == 1 && len(cfg.Join) > 0:
		return nil, errors.New("--bootstrap-expect 1 makes a cluster of this replica alone; with --join, leave it out to join a cluster, or give the new cluster's size")
	case n == 0 && len(cfg.Join) == 0:
		return nil, errors.New("a replica that never bootstraps needs --join: the addresses of replicas of the cluster to join")
	case cfg.InMemory && len(cfg.Join) > 0:
		return nil, errors.New("an in-memory ResourceManager cannot join others")
	}
	for _, a := range cfg.Join {
		if err := rmclient.CheckAddr(a); err != nil {
			return nil, fmt.Errorf("--join %q: %w", a, err)
		}
	}
	if cfg.CA != nil && !cfg.CA.Cert.Equal(cfg.TLS.CA) {
		return nil, errors.New("--tls-ca-key is not the key of the CA in --tls-ca")
	}
	if cfg.PreemptionGrace < 0 {
		return nil, fmt.Errorf("--preemption-grace %s: want 0 or more", cfg.PreemptionGrace)
	}
	if !(cfg.PreemptionPerRound > 0 && cfg.PreemptionPerRound <= 1) {
		return nil, fmt.Errorf("--preemption-per-round %g: want a fraction of the cluster above 0 and at most 1", cfg.PreemptionPerRound)
	}
	s := &Server{
		cfg:           cfg,
		clock:         cfg.Clock,
		logger:        cfg.Logger.Named("rm"),
		leaderCh:      make(chan bool, 8),
		schedulerKick: make(chan struct{}, 1),
		statusQ:       make(chan containerStatusesCmd, statusQueueLen),
		shutdown:      make(chan struct{}),
		leaderReady:   make(chan struct{}),
		soft:          newSoftState(),
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	s.nms = newNMPool(s.logger, cfg.TLS)
	s.metrics = newMetrics(s)
	fsm, err := NewFSM(s.logger)
	if err != nil {
		return nil, err
	}
	s.fsm = fsm
	fsm.applied = s.onApplied
	if cfg.QueueFile != "" {
		// A replica never starts on a queue file it could not commit.
		if _, err := s.readQueueFile(); err != nil {
			return nil, fmt.Errorf("--queues: %w", err)
		}
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w (is another ResourceManager running? choose another with --addr)", cfg.Addr, err)
	}
	s.listener = ln
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = ln.Addr().String()
	}
	if !cfg.InMemory {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			ln.Close()
			return nil, fmt.Errorf("creating data dir: %w", err)
		}
	}
	if cfg.HTTPAddr != "" {
		hl, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("listening on %s: %w (choose another with --http-addr)", cfg.HTTPAddr, err)
		}
		s.httpLn = tls.NewListener(hl, cfg.TLS.ServerConfig())
		dir := filepath.Join(cfg.DataDir, "staging")
		if cfg.DataDir == "" {
			dir = filepath.Join(os.TempDir(), "loom-rm-staging-"+strings.ReplaceAll(hl.Addr().String(), ":", "-"))
		}
		if s.staging, err = newStaging(dir, cfg.StagingQuota, s.logger.Named("staging")); err != nil {
			ln.Close()
			hl.Close()
			return nil, err
		}
		s.staging.replicate = s.replicateStaged
	}
	if err := s.setupRaft(); err != nil {
		s.listener.Close()
		if s.httpLn != nil {
			s.httpLn.Close()
		}
		return nil, err
	}

	opts := append(rpc.AuthOptions(s.authorize), manyClientOptions()...)
	opts = append(opts, cfg.TLS.ServerOption(), grpc.ChainUnaryInterceptor(s.countCall))
	s.grpc = grpc.NewServer(opts...)
	yarnpb.RegisterClientServiceServer(s.grpc, &clientEndpoint{s: s})
	yarnpb.RegisterApplicationMasterServiceServer(s.grpc, &amEndpoint{s: s})
	yarnpb.RegisterResourceTrackerServiceServer(s.grpc, &trackerEndpoint{s: s})
	yarnpb.RegisterAdminServiceServer(s.grpc, &adminEndpoint{s: s})
	s.goOwned(func() {
		if err := s.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.logger.Error("grpc server stopped", "error", err)
		}
	})
	if s.httpLn != nil {
		s.goOwned(s.collectStaging)
		s.http = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		s.goOwned(func() {
			if err := s.http.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logger.Error("http server stopped", "error", err)
			}
		})
	}
	s.goOwned(s.monitorLeadership)
	if len(cfg.Join) > 0 {
		s.goOwned(s.joinLoop)
	}
	s.logger.Info("resource manager started", "addr", cfg.AdvertiseAddr, "listen", ln.Addr().String(), "raft", string(s.raftTrans.LocalAddr()), "http", s.HTTPAddr(), "data_dir", cfg.DataDir)
	return s, nil
}

// collectStaging removes staged files no running application needs, once
// a minute, until shutdown.
func (s *Server) collectStaging() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.shutdown:
			return
		case now := <-t.C:
			s.staging.collect(referenced(s.State().Snapshot()), now)
		}
	}
}

func (s *Server) goOwned(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Addr is the gRPC address clients dial.
func (s *Server) Addr() string { return s.cfg.AdvertiseAddr }

// HTTPAddr is the HTTP address, or "" when disabled.
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// stagingURL is the base URL clients stage files at and NodeManagers
// fetch them from: the HTTP address, on the advertised host when the
// listener is on every interface.
func (s *Server) stagingURL() string {
	addr := s.HTTPAddr()
	if addr == "" {
		return ""
	}
	host, _, _ := net.SplitHostPort(s.cfg.AdvertiseAddr)
	return "https://" + rpc.Advertised(addr, host) + "/staging/"
}

// webURL is the base URL of the web UI and REST API, on the advertised
// host as stagingURL is.
func (s *Server) webURL() string {
	if u := s.stagingURL(); u != "" {
		return strings.TrimSuffix(u, "staging/")
	}
	return ""
}

// State returns the current state store.
func (s *Server) State() *state.Store { return s.fsm.State() }

// stopped reports whether Shutdown has begun.
func (s *Server) stopped() bool {
	select {
	case <-s.shutdown:
		return true
	default:
		return false
	}
}

// IsLeader reports whether this replica leads.
func (s *Server) IsLeader() bool { return s.isLeader.Load() }

func (s *Server) setupRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.AdvertiseAddr)
	// Raft's own chatter at warnings and above. A sub-logger shares its
	// parent's level unless the parent has independent levels (the CLI's
	// do); with a shared one, the RM's own lines stay at its level.
	rc.Logger = s.cfg.Logger.Named("raft")
	if level := s.cfg.Logger.GetLevel(); level < hclog.Warn {
		rc.Logger.SetLevel(hclog.Warn)
		s.cfg.Logger.SetLevel(level) // a shared level stays the RM's
	}
	if t := s.cfg.RaftTimeout; t > 0 {
		rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = t, t, t/2
	}
	rc.NotifyCh = s.leaderCh
	// Retention keeps the state, and so a snapshot, small: a follower that
	// falls behind the trailing log installs one cheaply, and the shorter
	// log keeps the bolt file, whose pages the RM maps, small too.
	rc.SnapshotThreshold = 1024
	rc.TrailingLogs = 512
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
		trans  raft.Transport
	)
	if s.cfg.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
		_, t := raft.NewInmemTransport(raft.ServerAddress(s.cfg.AdvertiseAddr))
		trans = t
	} else {
		dir := filepath.Join(s.cfg.DataDir, "raft")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating raft dir: %w", err)
		}
		bolt, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
		if err != nil {
			return fmt.Errorf("opening raft log in %s: %w", dir, err)
		}
		s.closers = append(s.closers, bolt.Close)
		logs, stable = bolt, bolt
		fs, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, rc.Logger)
		if err != nil {
			return fmt.Errorf("opening raft snapshots: %w", err)
		}
		snaps = fs
		stream, err := newTLSStreamLayer(s.cfg.RaftAddr, s.cfg.TLS)
		if err != nil {
			return fmt.Errorf("raft transport on %s: %w (choose another with --raft-addr)", s.cfg.RaftAddr, err)
		}
		t := raft.NewNetworkTransportWithLogger(stream, 3, 10*time.Second, rc.Logger)
		s.closers = append(s.closers, t.Close)
		trans = t
	}
	s.raftTrans, s.raftLogs, s.raftSnaps = trans, logs, snaps
	if s.cfg.BootstrapExpect == 1 && len(s.cfg.Join) == 0 {
		has, err := raft.HasExistingState(logs, stable, snaps)
		if err != nil {
			return fmt.Errorf("reading raft state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr()}}}
			if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, conf); err != nil {
				return fmt.Errorf("bootstrapping raft: %w", err)
			}
		}
	}
	r, err := raft.NewRaft(rc, s.fsm, logs, stable, snaps, trans)
	if err != nil {
		return fmt.Errorf("starting raft: %w", err)
	}
	s.raft = r
	s.bootIndex, err = lastCommandIndex(logs, snaps)
	if err != nil {
		return fmt.Errorf("reading the raft log: %w", err)
	}
	return nil
}

// lastCommandIndex finds the newest command entry in the log above the
// latest snapshot; 0 when the snapshot covers every command.
func lastCommandIndex(logs raft.LogStore, snaps raft.SnapshotStore) (uint64, error) {
	var floor uint64
	metas, err := snaps.List()
	if err != nil {
		return 0, err
	}
	if len(metas) > 0 {
		floor = metas[0].Index
	}
	last, err := logs.LastIndex()
	if err != nil {
		return 0, err
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return 0, err
	}
	for i := last; i > floor && i >= first; i-- {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return 0, err
		}
		if l.Type == raft.LogCommand && len(l.Data) > 0 {
			return i, nil
		}
	}
	return 0, nil
}

// waitReadable holds a read until this replica's state holds every write
// the cluster had acknowledged when the read arrived: the leader's at once
// (once it has replayed its log); a follower's once it has applied what
// the leader has (raft's read index, asked of the leader over the API),
// so a client that submitted through the leader and reads from a follower
// finds its application. With no leader among several replicas a
// follower cannot know and says so; the client tries again.
func (s *Server) waitReadable(ctx context.Context) error {
	if s.isLeader.Load() {
		return nil
	}
	target := s.bootIndex
	if leader := s.leaderAddr(); leader != "" && leader != s.cfg.AdvertiseAddr {
		idx, err := s.leaderReadIndex(ctx, leader)
		if err != nil {
			return errdefs.Unavailable("this replica cannot tell whether it is up to date: the leader %s did not answer (%v); try again", leader, err)
		}
		target = max(target, idx)
	} else if leader == "" && len(s.rmAddrs()) > 1 {
		return errdefs.Unavailable("the ResourceManager replicas are electing a leader; try again")
	} else if leader != "" {
		// Elected and not yet established: the log holds every
		// committed command, the state maybe not all of them yet.
		target = max(target, s.readIndex())
	}
	if s.fsm.AppliedIndex() >= target {
		return nil
	}
	deadline := time.Now().Add(10 * s.cfg.RaftTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
		if s.fsm.AppliedIndex() >= target || s.isLeader.Load() {
			return nil
		}
	}
	return errdefs.Unavailable("the ResourceManager is still applying its raft log (at %d of %d); try again", s.fsm.AppliedIndex(), target)
}

// leaderReadIndex asks the leader at addr what a replica must have
// applied to answer reads (its readIndex), over one connection kept
// while it leads.
func (s *Server) leaderReadIndex(ctx context.Context, addr string) (uint64, error) {
	s.leaderConnMu.Lock()
	if s.leaderConn == nil || s.leaderConnAddr != addr {
		if s.leaderConn != nil {
			_ = s.leaderConn.Close()
		}
		c, err := rmclient.New([]string{addr}, s.cfg.TLS)
		if err != nil {
			s.leaderConnMu.Unlock()
			return 0, err
		}
		c.RetryFor, c.CallTimeout = 0, 2*time.Second
		s.leaderConn, s.leaderConnAddr = c, addr
	}
	c := s.leaderConn
	s.leaderConnMu.Unlock()
	st, err := c.ServiceState(ctx)
	if err != nil {
		return 0, err
	}
	if st.Id != addr || st.State != "leader" {
		return 0, fmt.Errorf("%s does not lead (it is %s)", addr, st.State)
	}
	if st.ReadIndex == 0 {
		return st.AppliedIndex, nil // a leader of a release before read_index
	}
	return st.ReadIndex, nil
}

// readIndex is the index a replica must have applied to answer reads as
// of now, on the leader: what it has applied once it has established
// its leadership, and before that its newest command. Raft elects only
// a replica whose log holds every committed command, and one elected
// applies them as it establishes its leadership (its barrier).
func (s *Server) readIndex() uint64 {
	if s.isLeader.Load() {
		return s.fsm.AppliedIndex()
	}
	if s.raft.State() != raft.Leader {
		return 0
	}
	// The newest command in the log: the entries after it (raft's no-op
	// of the new term) never reach the FSM's index.
	idx, err := lastCommandIndex(s.raftLogs, s.raftSnaps)
	if err != nil {
		s.logger.Warn("reading the raft log for the read index", "error", err)
		return s.raft.LastIndex()
	}
	return max(idx, s.fsm.AppliedIndex())
}

// raftApply commits a command and returns its result.
func (s *Server) raftApply(t CommandType, payload any) (any, uint64, error) {
	if !s.isLeader.Load() {
		return nil, 0, errdefs.NotLeader(s.leaderAddr())
	}
	return s.commit(t, payload)
}

// commit is raftApply without asking whether leadership is established:
// for establishing it.
func (s *Server) commit(t CommandType, payload any) (any, uint64, error) {
	buf, err := encodeCommand(t, payload)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	f := s.raft.Apply(buf, 10*time.Second)
	err = f.Error()
	s.metrics.observeCommit(start)
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, 0, errdefs.NotLeader(s.leaderAddr())
		}
		return nil, 0, errdefs.Unavailable("committing to the raft log: %v", err)
	}
	res, _ := f.Response().(*fsmResult)
	if res == nil {
		return nil, f.Index(), nil
	}
	return res.Value, f.Index(), res.Err
}

// raftApplyAsync appends a command without waiting for it to commit.
func (s *Server) raftApplyAsync(t CommandType, payload any) (raft.ApplyFuture, error) {
	if !s.isLeader.Load() {
		return nil, errdefs.NotLeader(s.leaderAddr())
	}
	buf, err := encodeCommand(t, payload)
	if err != nil {
		return nil, err
	}
	return s.raft.Apply(buf, 10*time.Second), nil
}

func (s *Server) leaderAddr() string {
	_, id := s.raft.LeaderWithID()
	return string(id)
}

// requireLeader fails with NotLeader on a follower, after waiting briefly
// for a leadership being established.
func (s *Server) requireLeader(ctx context.Context) error {
	if s.isLeader.Load() {
		return nil
	}
	if s.raft.State() == raft.Leader || s.raft.State() == raft.Candidate || s.leaderAddr() == "" {
		t := time.NewTimer(3 * s.cfg.RaftTimeout)
		defer t.Stop()
		s.leaderMu.Lock()
		ready := s.leaderReady
		s.leaderMu.Unlock()
		select {
		case <-ready:
			if s.isLeader.Load() {
				return nil
			}
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errdefs.NotLeader(s.leaderAddr())
}

func (s *Server) monitorLeadership() {
	for {
		select {
		case <-s.shutdown:
			s.revokeLeadership()
			return
		case isLeader := <-s.leaderCh:
			if isLeader && !s.stopped() {
				s.leadWithRetries()
			} else {
				s.revokeLeadership()
			}
		}
	}
}

// leadWithRetries establishes leadership, and when a step of it fails,
// tries again with backoff for as long as raft says this replica leads
// (Nomad's leader loop): a failure never leaves a leader that answers
// NotLeader naming itself.
func (s *Server) leadWithRetries() {
	backoff := 50 * time.Millisecond
	for {
		err := s.establishLeadership()
		if err == nil {
			return
		}
		s.logger.Error("establishing leadership failed; trying again", "error", err, "in", backoff)
		select {
		case <-s.shutdown:
			return
		case isLeader := <-s.leaderCh:
			if !isLeader {
				s.revokeLeadership()
				return
			}
		case <-time.After(backoff):
		}
		if s.raft.State() != raft.Leader {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Server) establishLeadership() error {
	if s.cfg.establishFault != nil {
		if err := s.cfg.establishFault(); err != nil {
			return err
		}
	}
	if err := s.raft.Barrier(10 * time.Second).Error(); err != nil {
		return fmt.Errorf("raft barrier: %w", err)
	}
	ts := time.Now().UnixMilli()
	buf, _ := encodeCommand(CmdBumpEpoch, bumpEpochCmd{ClusterTS: ts})
	if err := s.raft.Apply(buf, 10*time.Second).Error(); err != nil {
		return fmt.Errorf("recording the new epoch: %w", err)
	}
	// Tokens are signed from the first call on: the leader has a
	// master key before it serves.
	if err := s.rotateKeysIfDue(s.clock.Now()); err != nil {
		return fmt.Errorf("making a master key: %w", err)
	}
	// The leader schedules by its own queue file. One that no longer
	// fits the state (it drops a queue with live applications) leaves
	// the tree in raft, and says why.
	if s.cfg.QueueFile != "" {
		if _, err := s.commitQueueFile(); err != nil {
			if !errors.Is(err, errdefs.ErrFailedPrecondition) && !errors.Is(err, errdefs.ErrInvalidArgument) {
				return fmt.Errorf("committing the queue file: %w", err)
			}
			s.logger.Error("keeping the queue tree in raft", "error", err)
		}
	}
	meta := s.State().Snapshot().Meta()
	s.clusterTS.Store(meta.Cluster)
	s.epoch.Store(meta.Epoch)
	s.appSeq.Store(0)

	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.leaderCancel != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.leaderCancel = cancel
	s.soft.reset(s.clock.Now(), s.State().Snapshot())
	s.isLeader.Store(true)
	for _, loop := range []func(context.Context){s.schedulerLoop, s.nodeLivenessLoop, s.amLivenessLoop, s.launcherLoop, s.cleanupLoop, s.keyRotationLoop, s.gcLoop, s.promoteLoop, s.preemptionLoop, s.statusLoop} {
		s.leaderWG.Add(1)
		go func() {
			defer s.leaderWG.Done()
			loop(ctx)
		}()
	}
	close(s.leaderReady)
	s.kickScheduler()
	s.logger.Info("leadership established", "epoch", meta.Epoch, "cluster_timestamp", meta.Cluster)
	return nil
}

func (s *Server) revokeLeadership() {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.leaderCancel == nil {
		return
	}
	s.isLeader.Store(false)
	s.leaderCancel()
	s.leaderWG.Wait()
	s.leaderCancel = nil
	s.leaderReady = make(chan struct{})
	s.logger.Info("leadership lost")
}

// onApplied runs after each FSM apply: state changes that may free or
// need resources wake the scheduler.
func (s *Server) onApplied(t CommandType) {
	if !s.isLeader.Load() {
		return
	}
	switch t {
	case CmdAcquireContainers, CmdRegisterAttempt, CmdAppProgress:
		return
	}
	s.kickScheduler()
}

func (s *Server) kickScheduler() {
	select {
	case s.schedulerKick <- struct{}{}:
	default:
	}
}

// Shutdown stops the server: no new work, leader loops stopped, servers
// stopped, raft shut down, stores closed. It is idempotent.
func (s *Server) Shutdown() {
	s.once.Do(func() {
		close(s.shutdown)
		s.stopGRPC(2 * time.Second)
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.http.Shutdown(ctx)
			cancel()
		}
		// The leader's loops stop while raft still runs: raft drops the
		// commands it has handed its FSM and not applied when it shuts
		// down, and never answers their futures, so a loop waiting on
		// one past raft's shutdown would wait forever.
		s.wg.Wait()
		s.revokeLeadership()
		if err := s.raft.Shutdown().Error(); err != nil {
			s.logger.Warn("raft shutdown", "error", err)
		}
		s.nms.close()
		s.leaderConnMu.Lock()
		if s.leaderConn != nil {
			_ = s.leaderConn.Close()
		}
		s.leaderConnMu.Unlock()
		for i := len(s.closers) - 1; i >= 0; i-- {
			_ = s.closers[i]()
		}
		s.logger.Info("resource manager stopped")
	})
}

// countCall counts the calls in progress, for stopGRPC.
func (s *Server) countCall(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	s.calls.Add(1)
	defer s.calls.Add(-1)
	return handler(ctx, req)
}

// stopGRPC lets the calls in progress finish, for at most grace, and
// then stops the gRPC server. NodeManagers' heartbeat streams, open for
// as long as the RM runs, are not waited for: a NodeManager opens its
// next one elsewhere.
func (s *Server) stopGRPC(grace time.Duration) {
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(grace)
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if s.calls.Load() > 0 {
				continue
			}
		case <-deadline:
		}
		s.grpc.Stop()
		<-done
		return
	}
}

// manyClientOptions fit the RM's gRPC server to thousands of connections,
// one a NodeManager and one an AM, each mostly idle between small calls:
// 8 KiB read and 16 KiB write buffers a connection where grpc-go's are
// 32 KiB each (its write buffers come from a shared pool while a
// connection writes). At 10,000 NodeManagers this took the RM from 971
// to 623 MiB of RSS (docs/BENCHMARKS.md). A connection may hold at most
// maxStreamsPerConn streams and calls at once, each a goroutine of the
// RM's: a NodeManager's needs one heartbeat stream and a few calls.
func manyClientOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ReadBufferSize(8 << 10), grpc.WriteBufferSize(16 << 10), grpc.MaxConcurrentStreams(maxStreamsPerConn)}
}

// maxStreamsPerConn bounds the streams of one connection; the load
// simulator's connections carry 100 NodeManagers' each.
const maxStreamsPerConn = 1024
