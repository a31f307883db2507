// Package jobmanager is Flink's JobManager: a Dispatcher that takes jobs
// and keeps their record, a blob service for job artifacts, a JobMaster per
// job, and the Flink ResourceManager, all served by one gRPC server, with
// Flink's REST API beside it. It does not know how TaskManagers come to
// exist: that is the ResourceManager's Driver.
package jobmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/resourcemanager"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/rpc"
)

// Config configures a JobManager.
type Config struct {
	// Addr is the gRPC listen address; Advertise, when set, the address
	// TaskManagers and clients dial.
	Addr      string
	Advertise string
	// RestAddr is the REST API's listen address; empty disables it.
	RestAddr string
	// WebDir, when set, is a dashboard build served at /.
	WebDir string
	// LogDir, when set, holds the JobManager's log files (its container's
	// stdout and stderr), which the REST API serves: LogName is its log
	// ("stderr" when empty), OutName its standard output ("stdout").
	LogDir, LogName, OutName string
	// Dir keeps uploaded artifacts; a temporary directory when empty.
	Dir string
	// Trust is the deployment's: the gRPC port takes its members and its
	// users (the Dispatcher's clients), and the REST API asks its web
	// token (see restAuth).
	Trust  *auth.Trust
	Log    hclog.Logger
	Driver resourcemanager.Driver
	Timing Timing
	// TMHeartbeatInterval and TMHeartbeatTimeout are the
	// ResourceManager's.
	TMHeartbeatInterval time.Duration
	TMHeartbeatTimeout  time.Duration
	// Local is set for a JobManager inside the job's own program (the
	// MiniCluster): jobs come without an artifact, as their workers run
	// in the same process.
	Local bool
	// MaxArchivedJobs and ArchiveTTL bound the ended jobs the Dispatcher
	// keeps (Flink's jobstore.max-capacity and jobstore.expiration-time);
	// zero takes the defaults.
	MaxArchivedJobs int
	ArchiveTTL      time.Duration
}

// Defaults of the Dispatcher's archive of ended jobs.
const (
	DefaultMaxArchivedJobs = 1000
	DefaultArchiveTTL      = time.Hour
	// blobGrace keeps an artifact no running job uses for a while: it
	// may have been uploaded for a job about to be submitted.
	blobGrace = 10 * time.Minute
)

// DefaultTiming is a JobMaster's timing unless configured.
var DefaultTiming = Timing{
	HeartbeatInterval: time.Second,
	HeartbeatTimeout:  5 * time.Second,
	SlotTimeout:       5 * time.Minute,
	CancelTimeout:     30 * time.Second,
}

// JobManager is a running JobManager.
type JobManager struct {
	flinkpb.UnimplementedDispatcherServer
	flinkpb.UnimplementedJobMasterServer
	cfg   Config
	log   hclog.Logger
	addr  string
	ln    net.Listener
	srv   *grpc.Server
	rest  *http.Server
	restL net.Listener
	rm    *resourcemanager.ResourceManager
	// tmpDir, when set, is the temporary Dir New made: Run removes it.
	tmpDir string
	// conns are the connections to TaskManagers, one per TaskManager
	// for the ResourceManager and every JobMaster.
	conns *rpc.Pool
	blobs *blobStore
	// flames are the flame graphs' latest samples.
	flames flameGraphs
	start  time.Time
	// shutdown carries the reason of the first shutdown request.
	shutdown chan string

	mu    sync.Mutex
	jobs  map[string]*JobMaster
	order []string
	// savepointOps are the savepoints asked for over REST, by trigger id,
	// oldest first in savepointOrder.
	savepointOps   map[string]*savepointOp
	savepointOrder []string
	ctx            context.Context
	wg             sync.WaitGroup
}

// New listens on the configured addresses; Run serves.
func New(cfg Config) (_ *JobManager, retErr error) {
	// tmpDir is the directory made here, which Run removes at its end.
	var tmpDir string
	if cfg.Trust == nil {
		return nil, errors.New("a JobManager needs its deployment's credentials")
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = DefaultTiming
	}
	if cfg.MaxArchivedJobs <= 0 {
		cfg.MaxArchivedJobs = DefaultMaxArchivedJobs
	}
	if cfg.ArchiveTTL <= 0 {
		cfg.ArchiveTTL = DefaultArchiveTTL
	}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "loom-jm-")
		if err != nil {
			return nil, err
		}
		cfg.Dir, tmpDir = d, d
		defer func() {
			if retErr != nil {
				os.RemoveAll(d)
			}
		}()
	}
	blobs, err := newBlobStore(cfg.Dir)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("JobManager listen: %w", err)
	}
	addr := cfg.Advertise
	if addr == "" {
		addr = rpc.Advertised(ln.Addr().String(), "")
	}
	log := cfg.Log.Named("jobmanager")
	conns := rpc.NewPool(rpc.Linger, cfg.Trust.DialOptions()...)
	jm := &JobManager{
		cfg: cfg, log: log, addr: addr, ln: ln, srv: grpc.NewServer(append(cfg.Trust.ServerOptions(allowCall), grpc.MaxRecvMsgSize(64<<20))...),
		blobs: blobs, conns: conns, tmpDir: tmpDir, start: time.Now(), jobs: map[string]*JobMaster{}, savepointOps: map[string]*savepointOp{}, ctx: context.Background(), shutdown: make(chan string, 1),
		rm: resourcemanager.New(resourcemanager.Config{
			Log: cfg.Log.Named("resourcemanager"), Driver: cfg.Driver, Conns: conns,
			HeartbeatInterval: cfg.TMHeartbeatInterval, HeartbeatTimeout: cfg.TMHeartbeatTimeout,
		}),
	}
	flinkpb.RegisterDispatcherServer(jm.srv, jm)
	flinkpb.RegisterJobMasterServer(jm.srv, jm)
	flinkpb.RegisterResourceManagerServer(jm.srv, jm.rm)
	if cfg.RestAddr != "" {
		if jm.restL, err = net.Listen("tcp", cfg.RestAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("REST listen: %w", err)
		}
		jm.rest = &http.Server{Handler: jm.restAuth(jm.restHandler()), ReadHeaderTimeout: 10 * time.Second}
	}
	return jm, nil
}

// allowCall is who may call what on the JobManager's gRPC port: its
// TaskManagers and workers anything; a user the Dispatcher, reading any
// job (as anyone may read an application's report), and changing jobs,
// uploading or fetching programs only as the owner or an admin.
func allowCall(p auth.Peer, method string) error {
	if p.Member {
		return nil
	}
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if svc != "loom.flink.Dispatcher" || p.User == "" {
		return auth.MembersOnly(p, method)
	}
	switch name {
	case "ListJobs", "GetJob":
		return nil
	}
	if p.MayChange() {
		return nil
	}
	return errdefs.PermissionDenied("%s may not call %s: only the owner of this application or an admin may", p, name)
}

// Addr is the gRPC address of the Dispatcher, JobMasters and
// ResourceManager.
func (jm *JobManager) Addr() string { return jm.addr }

// RestAddr is the REST API's address, empty when it is off.
func (jm *JobManager) RestAddr() string {
	if jm.restL == nil {
		return ""
	}
	return rpc.Advertised(jm.restL.Addr().String(), "")
}

// Trust is the deployment's trust the JobManager serves with.
func (jm *JobManager) Trust() *auth.Trust { return jm.cfg.Trust }

// ResourceManager is the JobManager's Flink ResourceManager.
func (jm *JobManager) ResourceManager() *resourcemanager.ResourceManager { return jm.rm }

// Run serves until ctx ends; then it fails running jobs, frees their slots
// and stops.
func (jm *JobManager) Run(ctx context.Context) error {
	jm.mu.Lock()
	jm.ctx = ctx
	jm.mu.Unlock()
	rmCtx, stopRM := context.WithCancel(context.Background())
	rmDone := make(chan struct{})
	go func() {
		defer close(rmDone)
		jm.rm.Run(rmCtx)
	}()
	errc := make(chan error, 2)
	go func() { errc <- jm.srv.Serve(jm.ln) }()
	if jm.rest != nil {
		go func() {
			if err := jm.rest.Serve(jm.restL); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	jm.wg.Add(1)
	go func() {
		// Archived jobs expire without a new job ending.
		defer jm.wg.Done()
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				jm.retire(now)
			}
		}
	}()
	jm.log.Info("JobManager started", "addr", jm.addr, "rest", jm.RestAddr())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	jm.wg.Wait() // job masters end with ctx
	if jm.rest != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = jm.rest.Shutdown(sctx)
		cancel()
	}
	stopRM()
	<-rmDone
	jm.srv.Stop()
	jm.conns.Close()
	if jm.tmpDir != "" {
		_ = os.RemoveAll(jm.tmpDir)
	}
	if err != nil {
		jm.log.Error("JobManager stopped", "addr", jm.addr, "error", err)
	} else {
		jm.log.Info("JobManager stopped", "addr", jm.addr)
	}
	return err
}

// NewJobID makes a Flink-style job id: 32 hex digits.
func NewJobID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Job returns a job's JobMaster.
func (jm *JobManager) Job(id string) (*JobMaster, error) { return jm.job(id) }

func (jm *JobManager) job(id string) (*JobMaster, error) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	j := jm.jobs[id]
	if j == nil {
		return nil, status.Errorf(codes.NotFound, "job %s not found", id)
	}
	return j, nil
}

// Jobs lists the jobs, newest first.
func (jm *JobManager) Jobs() []*JobMaster {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	out := make([]*JobMaster, 0, len(jm.order))
	for i := len(jm.order) - 1; i >= 0; i-- {
		out = append(out, jm.jobs[jm.order[i]])
	}
	return out
}

// AddArtifact makes a job artifact already on this machine (its digest
// checked, as a container's localized file is) available as key, as an
// upload would.
func (jm *JobManager) AddArtifact(key *flinkpb.BlobKey, path string) error {
	return jm.blobs.adopt(key, path)
}

// ShutdownRequested delivers the reason when a client asks the cluster to
// shut down (ShutDownCluster, or DELETE /cluster); whoever runs the
// JobManager decides what that means.
func (jm *JobManager) ShutdownRequested() <-chan string { return jm.shutdown }

func (jm *JobManager) requestShutdown(reason string) {
	jm.log.Info("cluster shutdown requested", "reason", reason)
	select {
	case jm.shutdown <- reason:
	default:
	}
}

// ShutDownCluster implements flinkpb.DispatcherServer.
func (jm *JobManager) ShutDownCluster(_ context.Context, req *flinkpb.ShutDownClusterRequest) (*flinkpb.Empty, error) {
	reason := req.Reason
	if reason == "" {
		reason = "a client asked"
	}
	jm.requestShutdown(reason)
	return &flinkpb.Empty{}, nil
}

// CancelAll cancels every job that has not ended, for reason, and waits
// up to timeout for them to end.
func (jm *JobManager) CancelAll(ctx context.Context, reason string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, j := range jm.Jobs() {
		j.Cancel(reason)
	}
	for _, j := range jm.Jobs() {
		for d := j.Details(false); !JobTerminal(d.State) && time.Now().Before(deadline) && ctx.Err() == nil; d = j.Details(false) {
			j.Wait(ctx, d.Version+1, time.Until(deadline))
		}
	}
}

// NoteWaiting adds note (what is being done about missing slots) to the
// diagnostic of every job waiting for slots.
func (jm *JobManager) NoteWaiting(note string) {
	for _, j := range jm.Jobs() {
		j.noteWaiting(note)
	}
}

// SubmitJob implements flinkpb.DispatcherServer.
func (jm *JobManager) SubmitJob(_ context.Context, req *flinkpb.SubmitJobRequest) (*flinkpb.SubmitJobResponse, error) {
	if err := graph.Validate(req.JobGraph); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "the job graph is malformed: %v", err)
	}
	if !jm.cfg.Local && (req.Artifact == nil || !jm.blobs.has(req.Artifact.Sha256)) {
		return nil, status.Error(codes.FailedPrecondition, "the job's artifact was not uploaded: upload it with UploadBlob first")
	}
	id := req.JobId
	if id == "" {
		id = NewJobID()
	} else if _, err := hex.DecodeString(id); err != nil || len(id) != 32 {
		return nil, status.Errorf(codes.InvalidArgument, "job id %q: want 32 hex digits", id)
	}
	if max := jm.rm.MaxSlots(); max > 0 && int(req.JobGraph.Slots) > max {
		return nil, status.Errorf(codes.FailedPrecondition, "job %s needs %d slots, and this session's TaskManagers may have at most %d (--max-slots): lower its parallelism to need %d or fewer, or run it in a session with a larger --max-slots",
			req.JobGraph.Name, req.JobGraph.Slots, max, max)
	}
	art := &flinkpb.JobArtifact{Artifact: req.Artifact, Args: req.Args, Env: req.Env, Fingerprint: req.JobGraph.Fingerprint, JobName: req.JobGraph.Name}
	jm.mu.Lock()
	if _, dup := jm.jobs[id]; dup {
		jm.mu.Unlock()
		return nil, status.Errorf(codes.AlreadyExists, "job %s exists", id)
	}
	j, err := newJobMaster(id, req.JobGraph, art, jm.rm, jm.addr, jm.cfg.Timing, jm.log)
	if err != nil {
		jm.mu.Unlock()
		return nil, status.Errorf(codes.InvalidArgument, "job %s: %v", id, err)
	}
	j.conns = jm.conns
	// A job resubmitted by a new AM attempt started when its client
	// submitted it; a time from the future or older than a month is not
	// taken.
	if at := time.UnixMilli(req.SubmittedMs); req.SubmittedMs > 0 && at.Before(j.start) && time.Since(at) < 30*24*time.Hour {
		j.start = at
		j.timestamps[JobCreated] = req.SubmittedMs
	}
	jm.jobs[id] = j
	jm.order = append(jm.order, id)
	ctx := jm.ctx
	jm.wg.Add(1)
	jm.mu.Unlock()
	jm.log.Info("job submitted", "job", id, "name", req.JobGraph.Name, "slots", req.JobGraph.Slots)
	go func() {
		defer jm.wg.Done()
		j.run(ctx)
		jm.retire(time.Now())
	}()
	return &flinkpb.SubmitJobResponse{JobId: id}, nil
}

// retire forgets the ended jobs beyond MaxArchivedJobs, oldest first, and
// those that ended ArchiveTTL ago, and removes the artifacts no running
// job uses once they are blobGrace old: a session that runs jobs for
// months holds the running ones and a bounded archive.
func (jm *JobManager) retire(now time.Time) {
	jm.mu.Lock()
	ended := 0
	for _, id := range jm.order {
		if JobTerminal(jm.jobs[id].Details(false).State) {
			ended++
		}
	}
	keep := jm.order[:0]
	inUse := map[string]bool{}
	for _, id := range jm.order {
		j := jm.jobs[id]
		d := j.Details(false)
		if !JobTerminal(d.State) {
			keep = append(keep, id)
			if j.artifact.GetArtifact() != nil {
				inUse[j.artifact.Artifact.Sha256] = true
			}
			continue
		}
		if ended > jm.cfg.MaxArchivedJobs || now.Sub(time.UnixMilli(d.EndTimeMs)) > jm.cfg.ArchiveTTL {
			ended--
			delete(jm.jobs, id)
			continue
		}
		keep = append(keep, id)
	}
	clear(jm.order[len(keep):])
	jm.order = keep
	jm.mu.Unlock()
	if !jm.cfg.Local {
		jm.blobs.collect(inUse, now.Add(-blobGrace))
	}
}

// ListJobs implements flinkpb.DispatcherServer.
func (jm *JobManager) ListJobs(context.Context, *flinkpb.ListJobsRequest) (*flinkpb.ListJobsResponse, error) {
	resp := &flinkpb.ListJobsResponse{}
	for _, j := range jm.Jobs() {
		resp.Jobs = append(resp.Jobs, j.Details(false))
	}
	return resp, nil
}

// GetJob implements flinkpb.DispatcherServer.
func (jm *JobManager) GetJob(ctx context.Context, req *flinkpb.GetJobRequest) (*flinkpb.JobDetails, error) {
	j, err := jm.job(req.JobId)
	if err != nil {
		return nil, err
	}
	if req.MinVersion > 0 {
		j.wait(ctx, req.MinVersion, min(time.Duration(req.WaitMs)*time.Millisecond, time.Minute))
	}
	return j.Details(true), nil
}

// boundReason is a reason a client gave, cut to 512 bytes of one line.
func boundReason(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 512 {
		s = strings.ToValidUTF8(s[:512], "") + "…"
	}
	return s
}

// CancelJob implements flinkpb.DispatcherServer.
func (jm *JobManager) CancelJob(_ context.Context, req *flinkpb.CancelJobRequest) (*flinkpb.CancelJobResponse, error) {
	j, err := jm.job(req.JobId)
	if err != nil {
		return nil, err
	}
	return &flinkpb.CancelJobResponse{State: j.Cancel(boundReason(req.Reason))}, nil
}

// TriggerSavepoint implements flinkpb.DispatcherServer.
func (jm *JobManager) TriggerSavepoint(ctx context.Context, req *flinkpb.TriggerSavepointRequest) (*flinkpb.TriggerSavepointResponse, error) {
	j, err := jm.job(req.JobId)
	if err != nil {
		return nil, err
	}
	path, err := j.TriggerSavepoint(ctx, req.TargetDirectory, req.Stop)
	if err != nil {
		return nil, err
	}
	return &flinkpb.TriggerSavepointResponse{Path: path}, nil
}

// UploadBlob implements flinkpb.DispatcherServer.
func (jm *JobManager) UploadBlob(s flinkpb.Dispatcher_UploadBlobServer) error {
	key, err := jm.blobs.put(s)
	if err != nil {
		return err
	}
	return s.SendAndClose(key)
}

// DownloadBlob implements flinkpb.DispatcherServer.
func (jm *JobManager) DownloadBlob(key *flinkpb.BlobKey, s flinkpb.Dispatcher_DownloadBlobServer) error {
	return jm.blobs.get(key, s)
}

// GetJobArtifact implements flinkpb.JobMasterServer.
func (jm *JobManager) GetJobArtifact(_ context.Context, req *flinkpb.GetJobArtifactRequest) (*flinkpb.JobArtifact, error) {
	j, err := jm.job(req.JobId)
	if err != nil {
		return nil, err
	}
	return j.artifact, nil
}

// OfferSlots implements flinkpb.JobMasterServer.
func (jm *JobManager) OfferSlots(_ context.Context, req *flinkpb.OfferSlotsRequest) (*flinkpb.OfferSlotsResponse, error) {
	j, err := jm.job(req.JobId)
	if err != nil {
		return nil, err
	}
	if req.TaskManagerId == "" || req.TaskManagerAddress == "" || req.DataAddress == "" {
		return nil, status.Error(codes.InvalidArgument, "a slot offer names its TaskManager, its address and the worker's data address")
	}
	accepted, err := j.offerSlots(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &flinkpb.OfferSlotsResponse{Accepted: accepted}, nil
}

// UpdateTaskExecutionState implements flinkpb.JobMasterServer.
func (jm *JobManager) UpdateTaskExecutionState(_ context.Context, req *flinkpb.TaskStateUpdates) (*flinkpb.Empty, error) {
	j, err := jm.job(req.JobId)
	if err != nil {
		return nil, err
	}
	for _, u := range req.Updates {
		if !validTaskState(u.State) {
			return nil, status.Errorf(codes.InvalidArgument, "task state %q", u.State)
		}
	}
	if err := j.updateTasks(req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &flinkpb.Empty{}, nil
}

func validTaskState(s string) bool {
	for _, t := range TaskStates {
		if s == t {
			return true
		}
	}
	return false
}

// AcknowledgeCheckpoint implements flinkpb.JobMasterServer.
func (jm *JobManager) AcknowledgeCheckpoint(_ context.Context, req *flinkpb.CheckpointAcks) (*flinkpb.Empty, error) {
	return jm.acknowledge(req, false)
}

// DeclineCheckpoint implements flinkpb.JobMasterServer.
func (jm *JobManager) DeclineCheckpoint(_ context.Context, req *flinkpb.CheckpointAcks) (*flinkpb.Empty, error) {
	return jm.acknowledge(req, true)
}

func (jm *JobManager) acknowledge(req *flinkpb.CheckpointAcks, decline bool) (*flinkpb.Empty, error) {
	j, err := jm.job(req.JobId)
	if err != nil {
		return nil, err
	}
	for _, a := range req.Acks {
		if decline && a.DeclineReason == "" {
			a.DeclineReason = "a subtask declined it"
		}
		if !decline && a.DeclineReason != "" {
			return nil, status.Error(codes.InvalidArgument, "an acknowledgement with a decline reason: send it with DeclineCheckpoint")
		}
	}
	if err := j.acknowledge(req.TaskManagerId, req.Acks); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &flinkpb.Empty{}, nil
}

// WorkerFailed implements flinkpb.JobMasterServer.
func (jm *JobManager) WorkerFailed(_ context.Context, req *flinkpb.WorkerFailedRequest) (*flinkpb.Empty, error) {
	j, err := jm.job(req.JobId)
	if err != nil {
		return nil, err
	}
	j.workerFailed(req.TaskManagerId, req.Message)
	return &flinkpb.Empty{}, nil
}
