// Package taskmanager is Flink's TaskExecutor: it owns a number of slots,
// registers them with the ResourceManager, and runs the tasks JobMasters
// deploy into them. The tasks of one job on one TaskManager run in a
// worker process of their own, started from the job's artifact (its
// program, fetched from the JobManager's blob service and checked against
// its digest) in worker role.
package taskmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/procstats"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/rpc"
)

// Config configures a TaskManager.
type Config struct {
	// Addr is where the TaskExecutor service listens ("host:0" for any
	// port); Advertise, when set, is the address others dial.
	Addr      string
	Advertise string
	// JobManager is the address of the ResourceManager, Dispatcher and
	// JobMasters.
	JobManager string
	// Trust is the deployment's: the TaskManager serves only its members
	// (its JobManager and its job workers) and dials only them.
	Trust    *auth.Trust
	Slots    int
	MemoryMB int64
	// DataHost is the host workers publish their data ports on.
	DataHost string
	// Dir holds fetched artifacts.
	Dir string
	// ID names the TaskManager; a random one when empty.
	ID  string
	Log hclog.Logger
	// JobMasterTimeout is how long a job's slots are kept without a
	// heartbeat from its JobMaster.
	JobMasterTimeout time.Duration
	// Launcher starts job workers; processes of the job's artifact when
	// nil.
	Launcher Launcher
	// Artifacts are job artifacts already on this machine, by SHA-256
	// (checked by whoever put them there): a job whose artifact is one of
	// them starts without fetching it.
	Artifacts map[string]string
	// ResourceManagerTimeout, when set, ends the TaskManager once it has
	// not reached the ResourceManager for this long: a TaskManager in a
	// container does not outlive its ApplicationMaster.
	ResourceManagerTimeout time.Duration
	// FindJobManager, when set, says where the JobManager is now. A
	// TaskManager that cannot reach its JobManager asks it, and on a new
	// address (a new ApplicationMaster attempt) it frees every slot, stops
	// its workers and registers there.
	FindJobManager func(ctx context.Context) (string, error)
	// LogDir, when set, holds the TaskManager's log files, which it
	// serves to its JobManager: LogName its log (the dashboard's "log"),
	// OutName its workers' standard output ("stdout").
	LogDir, LogName, OutName string
	// Stdout and Stderr take the workers' output; the process's when nil.
	Stdout, Stderr io.Writer
	// MetricsAddr, when set, is where the TaskManager serves Prometheus's
	// /metrics ("host:0" for any port).
	MetricsAddr string
}

// TaskManager is a running TaskExecutor.
type TaskManager struct {
	flinkpb.UnimplementedTaskExecutorServer
	cfg  Config
	id   string
	addr string
	log  hclog.Logger
	ln   net.Listener
	srv  *grpc.Server
	// metricsL is the Prometheus listener, nil without one.
	metricsL net.Listener
	jmConn   *grpc.ClientConn
	// jmResolver points jmConn at the JobManager's current address.
	jmResolver *manual.Resolver
	jmAddr     string
	rm         flinkpb.ResourceManagerClient
	jm         flinkpb.JobMasterClient
	blobs      flinkpb.DispatcherClient
	launcher   Launcher
	// jms are the connections to the JobMasters of the jobs here, shared
	// by the jobs of one JobManager.
	jms *rpc.Pool

	mu    sync.Mutex
	slots []slot
	jobs  map[string]*job
	ctx   context.Context
	wg    sync.WaitGroup
}

type slot struct {
	job, alloc string
}

// New listens on cfg.Addr; Run registers and serves.
func New(cfg Config) (*TaskManager, error) {
	if cfg.Slots < 1 {
		return nil, fmt.Errorf("%d slots: a TaskManager needs at least one", cfg.Slots)
	}
	if cfg.JobManager == "" {
		return nil, errors.New("a TaskManager needs the JobManager's address (--jobmanager host:port)")
	}
	if cfg.Trust == nil {
		return nil, errors.New("a TaskManager needs its deployment's credentials")
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.ID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%s", host, hex.EncodeToString(b[:]))
	}
	if cfg.JobMasterTimeout <= 0 {
		cfg.JobMasterTimeout = 10 * time.Second
	}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "loom-tm-")
		if err != nil {
			return nil, err
		}
		cfg.Dir = d
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("TaskManager listen: %w", err)
	}
	addr := cfg.Advertise
	if addr == "" {
		addr = rpc.Advertised(ln.Addr().String(), cfg.DataHost)
	}
	if cfg.DataHost == "" {
		cfg.DataHost, _, _ = net.SplitHostPort(addr)
	}
	if _, _, err := net.SplitHostPort(cfg.JobManager); err != nil {
		ln.Close()
		return nil, fmt.Errorf("JobManager address %q: want host:port", cfg.JobManager)
	}
	res := manual.NewBuilderWithScheme("loom-jobmanager")
	res.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: cfg.JobManager}}})
	conn, err := grpc.NewClient(res.Scheme()+":///jobmanager", append(cfg.Trust.DialOptions(), grpc.WithResolvers(res))...)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("JobManager address %q: %w", cfg.JobManager, err)
	}
	tm := &TaskManager{
		cfg: cfg, id: cfg.ID, addr: addr, log: cfg.Log.Named("taskmanager"), ln: ln,
		jms: rpc.NewPool(rpc.Linger, cfg.Trust.DialOptions()...),
		srv: grpc.NewServer(cfg.Trust.ServerOptions(auth.MembersOnly)...), jmConn: conn, jmResolver: res, jmAddr: cfg.JobManager,
		rm: flinkpb.NewResourceManagerClient(conn), jm: flinkpb.NewJobMasterClient(conn), blobs: flinkpb.NewDispatcherClient(conn),
		slots: make([]slot, cfg.Slots), jobs: map[string]*job{}, ctx: context.Background(),
	}
	if cfg.MetricsAddr != "" {
		if tm.metricsL, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			ln.Close()
			conn.Close()
			return nil, fmt.Errorf("TaskManager metrics listen: %w", err)
		}
	}
	tm.launcher = cfg.Launcher
	if tm.launcher == nil {
		tm.launcher = &ProcessLauncher{Dir: cfg.Dir, Blobs: tm.blobs, Local: cfg.Artifacts, Stdout: cfg.Stdout, Stderr: cfg.Stderr}
	}
	flinkpb.RegisterTaskExecutorServer(tm.srv, tm)
	return tm, nil
}

// ID is the TaskManager's id.
func (tm *TaskManager) ID() string { return tm.id }

// Addr is the TaskExecutor service's address.
func (tm *TaskManager) Addr() string { return tm.addr }

// Run serves, registers with the ResourceManager and heartbeats until ctx
// ends; then it stops every worker and unregisters.
func (tm *TaskManager) Run(ctx context.Context) error {
	tm.mu.Lock()
	tm.ctx = ctx
	tm.mu.Unlock()
	serveErr := make(chan error, 1)
	go func() { serveErr <- tm.srv.Serve(tm.ln) }()
	tm.log.Info("TaskManager started", "id", tm.id, "addr", tm.addr, "slots", tm.cfg.Slots, "jobmanager", tm.cfg.JobManager)
	var msrv *http.Server
	if tm.metricsL != nil {
		msrv = tm.serveMetrics(tm.metricsL)
		tm.log.Info("Prometheus metrics", "url", "http://"+tm.metricsL.Addr().String()+"/metrics")
	}

	rmLost := make(chan error, 1)
	tm.wg.Add(1)
	go func() {
		defer tm.wg.Done()
		rmLost <- tm.heartbeatRM(ctx)
	}()
	tm.wg.Add(1)
	go func() {
		defer tm.wg.Done()
		tm.watchJobMasters(ctx)
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	case err = <-rmLost:
		tm.log.Error("shutting down", "error", err)
	}
	tm.releaseAll("the TaskManager is shutting down")
	uctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, _ = tm.rm.UnregisterTaskExecutor(uctx, &flinkpb.UnregisterTaskExecutorRequest{TaskManagerId: tm.id, Reason: "it shut down"})
	cancel()
	tm.srv.Stop()
	if msrv != nil {
		msrv.Close()
	}
	tm.wg.Wait()
	tm.jmConn.Close()
	tm.jms.Close()
	if err != nil {
		tm.log.Error("TaskManager stopped", "id", tm.id, "error", err)
	} else {
		tm.log.Info("TaskManager stopped", "id", tm.id)
	}
	return err
}

// heartbeatRM registers with the ResourceManager and heartbeats, and
// registers again whenever the ResourceManager has forgotten it. It
// returns an error when the ResourceManager has been out of reach for
// longer than the configured timeout.
func (tm *TaskManager) heartbeatRM(ctx context.Context) error {
	interval := time.Second
	registered := false
	refusedBy := "" // the last refusal said
	lastOK := time.Now()
	var lastLookup time.Time
	// A connection to the JobManager that breaks wakes the loop, so a
	// JobManager that died is noticed at once, not at the next heartbeat.
	broken := make(chan struct{}, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	watching := make(chan struct{})
	defer func() {
		stopWatch()
		<-watching
	}()
	go func() {
		defer close(watching)
		for st := tm.jmConn.GetState(); tm.jmConn.WaitForStateChange(wctx, st); {
			prev := st
			st = tm.jmConn.GetState()
			if prev == connectivity.Ready {
				select {
				case broken <- struct{}{}:
				default:
				}
			}
		}
	}()
	for {
		var err error
		if !registered {
			var resp *flinkpb.RegisterTaskExecutorResponse
			resp, err = tm.rm.RegisterTaskExecutor(ctx, &flinkpb.RegisterTaskExecutorRequest{
				TaskManagerId: tm.id, Address: tm.addr, Slots: int32(tm.cfg.Slots), MemoryMb: tm.cfg.MemoryMB,
				CpuCores: int32(runtime.NumCPU()), SlotReport: tm.slotReport(), DataHost: tm.cfg.DataHost,
			})
			if err == nil {
				registered, lastOK = true, time.Now()
				interval = time.Duration(resp.HeartbeatIntervalMs) * time.Millisecond
				tm.log.Info("registered with the ResourceManager", "addr", tm.jobManager())
			} else if ctx.Err() == nil {
				// A JobManager that is not up yet is normal; one that
				// does not trust this TaskManager is said once.
				if msg := status.Convert(err).Message(); strings.Contains(msg, "authentication handshake failed") && msg != refusedBy {
					refusedBy = msg
					tm.log.Warn("the JobManager and this TaskManager do not trust each other: is its --secret-file the JobManager's?", "jobmanager", tm.jobManager(), "error", msg)
				} else {
					tm.log.Debug("registering with the ResourceManager", "error", err)
				}
			}
		} else {
			var resp *flinkpb.ResourceManagerHeartbeatResponse
			resp, err = tm.rm.Heartbeat(ctx, &flinkpb.TaskExecutorHeartbeat{TaskManagerId: tm.id, SlotReport: tm.slotReport(), Stats: tm.processStats()})
			if err == nil {
				lastOK = time.Now()
				if !resp.Registered {
					registered = false
					continue
				}
			}
		}
		reached := err == nil
		if !reached && tm.cfg.FindJobManager != nil && time.Since(lastLookup) >= lookupEvery {
			lastLookup = time.Now()
			if addr, err := tm.cfg.FindJobManager(ctx); err == nil && addr != tm.jobManager() {
				tm.moveJobManager(addr)
				registered, lastOK = false, time.Now()
				continue
			}
		}
		if limit := tm.cfg.ResourceManagerTimeout; limit > 0 && time.Since(lastOK) > limit {
			return fmt.Errorf("the ResourceManager at %s has been out of reach for %s", tm.jobManager(), limit)
		}
		wait := interval
		if !registered || !reached {
			wait = lookupEvery
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		case <-broken:
		}
	}
}

// lookupEvery is how often a TaskManager that cannot reach its
// JobManager asks where it is now (and retries it).
const lookupEvery = 200 * time.Millisecond

func (tm *TaskManager) jobManager() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.jmAddr
}

// moveJobManager follows the JobManager to addr: the jobs of the old one
// end (their JobMaster is gone), their slots are free, and the
// TaskManager's connection dials addr from now on.
func (tm *TaskManager) moveJobManager(addr string) {
	tm.mu.Lock()
	old := tm.jmAddr
	tm.jmAddr = addr
	tm.mu.Unlock()
	tm.log.Warn("the JobManager moved; following it", "from", old, "to", addr)
	tm.releaseAll("its JobManager at " + old + " is gone; a new one is at " + addr)
	tm.jmResolver.UpdateState(resolver.State{Addresses: []resolver.Address{{Addr: addr}}})
}

func (tm *TaskManager) slotReport() []*flinkpb.SlotStatus {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	out := make([]*flinkpb.SlotStatus, len(tm.slots))
	for i, s := range tm.slots {
		out[i] = &flinkpb.SlotStatus{Index: int32(i), JobId: s.job, AllocationId: s.alloc}
	}
	return out
}

// watchJobMasters frees the slots of jobs whose JobMaster went silent.
func (tm *TaskManager) watchJobMasters(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			tm.mu.Lock()
			var silent []*job
			for _, j := range tm.jobs {
				if now.Sub(j.lastJM) > tm.cfg.JobMasterTimeout {
					silent = append(silent, j)
				}
			}
			tm.mu.Unlock()
			for _, j := range silent {
				tm.releaseJob(j, fmt.Sprintf("no heartbeat from its JobMaster for %s", tm.cfg.JobMasterTimeout))
			}
		}
	}
}

// RequestSlot implements flinkpb.TaskExecutorServer.
func (tm *TaskManager) RequestSlot(_ context.Context, req *flinkpb.RequestSlotRequest) (*flinkpb.Empty, error) {
	if req.JobId == "" || req.JobMasterAddress == "" {
		return nil, status.Error(codes.InvalidArgument, "a slot request names its job and JobMaster")
	}
	tm.mu.Lock()
	defer tm.mu.Unlock()
	i := int(req.SlotIndex)
	if i < 0 || i >= len(tm.slots) {
		return nil, status.Errorf(codes.InvalidArgument, "slot %d: this TaskManager has %d", i, len(tm.slots))
	}
	if s := tm.slots[i]; s.job != "" && s.alloc != req.AllocationId {
		return nil, status.Errorf(codes.FailedPrecondition, "slot %d is allocated to job %s", i, s.job)
	}
	tm.slots[i] = slot{job: req.JobId, alloc: req.AllocationId}
	j := tm.jobs[req.JobId]
	if j == nil {
		j = newJob(req.JobId, req.JobMasterAddress)
		tm.jobs[req.JobId] = j
		tm.wg.Add(1)
		go func() {
			defer tm.wg.Done()
			tm.startWorker(tm.ctx, j)
		}()
	}
	j.pending = append(j.pending, int32(i))
	j.kick()
	return &flinkpb.Empty{}, nil
}

// SubmitTasks implements flinkpb.TaskExecutorServer.
func (tm *TaskManager) SubmitTasks(_ context.Context, req *flinkpb.SubmitTasksRequest) (*flinkpb.Empty, error) {
	j := tm.job(req.JobId)
	if j == nil {
		return nil, status.Errorf(codes.NotFound, "job %s holds no slot on TaskManager %s", req.JobId, tm.id)
	}
	if err := j.command(&flinkpb.WorkerCommand{Cmd: &flinkpb.WorkerCommand_Deploy{Deploy: req}}); err != nil {
		return nil, status.Errorf(codes.Unavailable, "deploying to the worker of job %s: %v", req.JobId, err)
	}
	j.named(req)
	return &flinkpb.Empty{}, nil
}

// CancelJob implements flinkpb.TaskExecutorServer.
func (tm *TaskManager) CancelJob(_ context.Context, req *flinkpb.CancelTasksRequest) (*flinkpb.Empty, error) {
	if j := tm.job(req.JobId); j != nil {
		_ = j.command(&flinkpb.WorkerCommand{Cmd: &flinkpb.WorkerCommand_Cancel{Cancel: req}})
	}
	return &flinkpb.Empty{}, nil
}

// FreeSlots implements flinkpb.TaskExecutorServer: the job's worker is
// let go (killed if it does not leave) and its slots freed.
func (tm *TaskManager) FreeSlots(_ context.Context, req *flinkpb.FreeSlotsRequest) (*flinkpb.Empty, error) {
	if j := tm.job(req.JobId); j != nil {
		reason := req.Reason
		if reason == "" {
			reason = "its JobMaster freed them"
		}
		go tm.releaseJob(j, reason)
	}
	return &flinkpb.Empty{}, nil
}

// TriggerCheckpoint implements flinkpb.TaskExecutorServer.
func (tm *TaskManager) TriggerCheckpoint(_ context.Context, req *flinkpb.CheckpointTrigger) (*flinkpb.Empty, error) {
	return tm.toWorker(req.JobId, &flinkpb.WorkerCommand{Cmd: &flinkpb.WorkerCommand_Trigger{Trigger: req}})
}

// NotifyCheckpointComplete implements flinkpb.TaskExecutorServer.
func (tm *TaskManager) NotifyCheckpointComplete(_ context.Context, req *flinkpb.CheckpointNotification) (*flinkpb.Empty, error) {
	return tm.toWorker(req.JobId, &flinkpb.WorkerCommand{Cmd: &flinkpb.WorkerCommand_Notify{Notify: req}})
}

// toWorker passes a command to the worker of a job.
func (tm *TaskManager) toWorker(jobID string, c *flinkpb.WorkerCommand) (*flinkpb.Empty, error) {
	j := tm.job(jobID)
	if j == nil {
		return nil, status.Errorf(codes.NotFound, "job %s holds no slot on TaskManager %s", jobID, tm.id)
	}
	if err := j.command(c); err != nil {
		return nil, status.Errorf(codes.Unavailable, "the worker of job %s: %v", jobID, err)
	}
	return &flinkpb.Empty{}, nil
}

// Heartbeat implements flinkpb.TaskExecutorServer.
func (tm *TaskManager) Heartbeat(_ context.Context, req *flinkpb.JobMasterHeartbeat) (*flinkpb.TaskExecutorHeartbeatResponse, error) {
	tm.mu.Lock()
	resp := &flinkpb.TaskExecutorHeartbeatResponse{}
	j := tm.jobs[req.JobId]
	if j != nil {
		j.lastJM = time.Now()
	}
	for i, s := range tm.slots {
		if s.job == req.JobId {
			resp.Slots = append(resp.Slots, &flinkpb.SlotStatus{Index: int32(i), JobId: s.job, AllocationId: s.alloc})
		}
	}
	tm.mu.Unlock()
	if j != nil {
		j.mu.Lock()
		resp.Metrics = j.metrics
		j.mu.Unlock()
	}
	return resp, nil
}

// processStats are the runtime figures of the TaskManager's process and
// of its job workers', as they last reported theirs.
func (tm *TaskManager) processStats() *flinkpb.ProcessStats {
	st := procstats.Read()
	tm.mu.Lock()
	jobs := make([]*job, 0, len(tm.jobs))
	for _, j := range tm.jobs {
		jobs = append(jobs, j)
	}
	tm.mu.Unlock()
	for _, j := range jobs {
		j.mu.Lock()
		st = procstats.Add(st, j.stats)
		j.mu.Unlock()
	}
	return st
}

func (tm *TaskManager) job(id string) *job {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.jobs[id]
}

// releaseAll releases every job the TaskManager holds slots for.
func (tm *TaskManager) releaseAll(reason string) {
	tm.mu.Lock()
	var jobs []*job
	for _, j := range tm.jobs {
		jobs = append(jobs, j)
	}
	tm.mu.Unlock()
	for _, j := range jobs {
		tm.releaseJob(j, reason)
	}
}

// releaseJob stops a job's worker and frees its slots.
func (tm *TaskManager) releaseJob(j *job, reason string) {
	tm.mu.Lock()
	if tm.jobs[j.id] != j {
		tm.mu.Unlock()
		return
	}
	delete(tm.jobs, j.id)
	for i, s := range tm.slots {
		if s.job == j.id {
			tm.slots[i] = slot{}
		}
	}
	tm.mu.Unlock()
	tm.log.Info("freeing the slots of a job", "job", j.id, "reason", reason)
	j.release()
}
