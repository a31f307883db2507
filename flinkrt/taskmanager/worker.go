package taskmanager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/worker"
	"github.com/loom-project/loom/proto/flinkpb"
)

// Launcher starts job workers.
type Launcher interface {
	Launch(ctx context.Context, spec WorkerSpec) (Worker, error)
}

// WorkerSpec is what a worker needs to start: the job's artifact and
// where to attach.
type WorkerSpec struct {
	JobID       string
	Artifact    *flinkpb.JobArtifact
	TaskManager string
	DataHost    string
	// MemoryMB is the TaskManager's memory: the worker's soft limit.
	MemoryMB int64
	// Trust is the deployment's, which the worker uses too.
	Trust *auth.Trust
}

// Worker is a started job worker.
type Worker interface {
	// Done is closed when the worker has exited; Err then says how.
	Done() <-chan struct{}
	Err() error
	// Kill stops the worker at once.
	Kill()
}

// ProcessLauncher starts workers as processes of the job's artifact,
// fetched from the blob service into Dir and checked against its digest,
// unless Local has it.
type ProcessLauncher struct {
	Dir   string
	Blobs flinkpb.DispatcherClient
	// Local are artifacts on this machine by digest.
	Local map[string]string
	// Stdout and Stderr take the workers' output; the process's when nil.
	Stdout, Stderr io.Writer
	mu             sync.Mutex // one fetch at a time
}

// Launch implements Launcher.
func (l *ProcessLauncher) Launch(ctx context.Context, spec WorkerSpec) (Worker, error) {
	path, err := l.fetch(ctx, spec.Artifact.Artifact)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, spec.Artifact.Args...)
	cmd.Env = os.Environ()
	for k, v := range spec.Artifact.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if os.Getenv("GOMEMLIMIT") == "" && spec.MemoryMB > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("GOMEMLIMIT=%dMiB", spec.MemoryMB))
	}
	// The job's own environment comes first: what the TaskManager sets
	// wins over it.
	for k, v := range spec.Trust.Env() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env,
		worker.EnvRole+"="+worker.RoleWorker,
		worker.EnvTaskManager+"="+spec.TaskManager,
		worker.EnvJobID+"="+spec.JobID,
		worker.EnvDataHost+"="+spec.DataHost,
	)
	tail := &tailBuffer{max: 4096}
	stdout, stderr := l.Stdout, l.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	cmd.Stdout = stdout
	cmd.Stderr = io.MultiWriter(stderr, tail)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the worker from %s: %w", path, err)
	}
	p := &process{cmd: cmd, tail: tail, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// fetch returns the path of the artifact in the cache, downloading it
// first when it is not there.
func (l *ProcessLauncher) fetch(ctx context.Context, key *flinkpb.BlobKey) (string, error) {
	if key == nil || len(key.Sha256) != 64 {
		return "", errors.New("the job names no artifact")
	}
	if p, ok := l.Local[key.Sha256]; ok {
		return filepath.Abs(p)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	dir := filepath.Join(l.Dir, "blobs")
	path := filepath.Join(dir, key.Sha256)
	if _, err := os.Stat(path); err == nil {
		now := time.Now()
		_ = os.Chtimes(path, now, now) // recently used
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	defer evictArtifacts(dir, key.Sha256)
	stream, err := l.Blobs.DownloadBlob(ctx, key)
	if err != nil {
		return "", fmt.Errorf("fetching the artifact %s: %w", key.Sha256, err)
	}
	f, err := os.CreateTemp(dir, "fetch-")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("fetching the artifact %s: %w", key.Sha256, err)
		}
		h.Write(chunk.Data)
		if _, err := f.Write(chunk.Data); err != nil {
			return "", err
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != key.Sha256 {
		return "", fmt.Errorf("the artifact fetched has digest %s, want %s", got, key.Sha256)
	}
	if err := f.Chmod(0o755); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(f.Name(), path)
}

// maxArtifacts bounds the programs a TaskManager keeps: a session's
// TaskManager that runs jobs of many programs keeps the latest ones.
const maxArtifacts = 8

// evictArtifacts removes the least recently used artifacts in dir beyond
// maxArtifacts, never keep. A worker running one keeps its file open.
func evictArtifacts(dir, keep string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type artifact struct {
		name string
		used time.Time
	}
	var all []artifact
	for _, e := range entries {
		if info, err := e.Info(); err == nil && len(e.Name()) == 64 && e.Name() != keep {
			all = append(all, artifact{e.Name(), info.ModTime()})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used.After(all[j].used) })
	for _, a := range all[min(len(all), maxArtifacts-1):] {
		_ = os.Remove(filepath.Join(dir, a.name))
	}
}

type process struct {
	cmd  *exec.Cmd
	tail *tailBuffer
	done chan struct{}
	err  error
}

func (p *process) Done() <-chan struct{} { return p.done }

func (p *process) Err() error {
	err := p.err
	if err == nil {
		return nil
	}
	if out := strings.TrimSpace(p.tail.String()); out != "" {
		return fmt.Errorf("%w; its last output:\n%s", err, out)
	}
	return err
}

func (p *process) Kill() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

// peakRSS is the worker's peak resident memory in bytes, once it exited.
func (p *process) peakRSS() int64 {
	if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10
	}
	return 0
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// job is a job holding slots on this TaskManager, and its worker.
type job struct {
	id, jmAddr string
	lastJM     time.Time // under tm.mu
	pending    []int32   // slots to offer, under tm.mu
	kickCh     chan struct{}
	released   chan struct{}
	once       sync.Once

	mu          sync.Mutex
	fingerprint string
	stream      flinkpb.TaskExecutor_AttachWorkerServer
	dataAddr    string
	attached    chan struct{} // closed when a verified worker attached
	attachErr   error         // set, with attached closed, when it was refused
	// metrics are the worker's latest report of its subtasks' counts,
	// which the JobMaster's heartbeat takes, and stats its process's
	// runtime figures.
	metrics []*flinkpb.SubtaskMetrics
	stats   *flinkpb.ProcessStats
	// name and vertices are the job's name and its vertices' ids and
	// names, as its last deployment gave them, for the metrics' labels.
	name     string
	vertices [][2]string
	// dumps are the thread dumps asked of the worker and not yet
	// answered, by request id.
	dumps map[uint64]chan *flinkpb.WorkerDump
}

// maxReportedSubtasks bounds a worker's metrics report.
const maxReportedSubtasks = 4096

func newJob(id, jmAddr string) *job {
	return &job{id: id, jmAddr: jmAddr, lastJM: time.Now(), kickCh: make(chan struct{}, 1), released: make(chan struct{}), attached: make(chan struct{})}
}

func (j *job) kick() {
	select {
	case j.kickCh <- struct{}{}:
	default:
	}
}

func (j *job) release() { j.once.Do(func() { close(j.released) }) }

func (j *job) command(c *flinkpb.WorkerCommand) error {
	select {
	case <-j.attached:
	default:
		return errors.New("the job's worker has not attached")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.attachErr != nil {
		return j.attachErr
	}
	return j.stream.Send(c)
}

// attach records the worker's stream, or why it was refused.
func (j *job) attach(s flinkpb.TaskExecutor_AttachWorkerServer, dataAddr string, err error) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	select {
	case <-j.attached:
		return false // a second worker for the job
	default:
	}
	j.stream, j.dataAddr, j.attachErr = s, dataAddr, err
	close(j.attached)
	return true
}

// startWorker launches the job's worker, waits for it to attach, offers
// the job's slots to its JobMaster as they are allocated, and reports the
// worker's end if it comes before the job lets it go.
func (tm *TaskManager) startWorker(ctx context.Context, j *job) {
	conn, release, err := tm.jms.Get(j.jmAddr)
	if err != nil {
		tm.releaseJob(j, err.Error())
		return
	}
	defer release()
	jm := flinkpb.NewJobMasterClient(conn)
	fail := func(msg string) {
		tm.log.Error("job worker failed", "job", j.id, "error", msg)
		// The slots are free before the JobMaster hears of it, so that a
		// restart's slot request finds them free rather than held by the
		// job's old worker.
		tm.releaseJob(j, msg)
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = jm.WorkerFailed(rctx, &flinkpb.WorkerFailedRequest{JobId: j.id, TaskManagerId: tm.id, Message: msg})
		cancel()
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	art, err := jm.GetJobArtifact(actx, &flinkpb.GetJobArtifactRequest{JobId: j.id})
	cancel()
	if err != nil {
		fail(fmt.Sprintf("TaskManager %s could not get the artifact of job %s: %v", tm.id, j.id, status.Convert(err).Message()))
		return
	}
	j.mu.Lock()
	j.fingerprint = art.Fingerprint
	j.mu.Unlock()
	l := tm.launcher
	if pl, ok := l.(*ProcessLauncher); ok && j.jmAddr != tm.jobManager() {
		l = &ProcessLauncher{Dir: pl.Dir, Blobs: flinkpb.NewDispatcherClient(conn), Stdout: pl.Stdout, Stderr: pl.Stderr}
	}
	w, err := l.Launch(ctx, WorkerSpec{JobID: j.id, Artifact: art, TaskManager: tm.addr, DataHost: tm.cfg.DataHost, MemoryMB: tm.cfg.MemoryMB, Trust: tm.cfg.Trust})
	if err != nil {
		fail(fmt.Sprintf("TaskManager %s could not start the worker of job %s: %v", tm.id, j.id, err))
		return
	}
	defer func() {
		select {
		case <-w.Done():
		case <-time.After(5 * time.Second):
			w.Kill()
			<-w.Done()
		}
		if p, ok := w.(*process); ok {
			tm.log.Info("job worker exited", "job", j.id, "pid", p.cmd.Process.Pid, "peak_rss_mib", p.peakRSS()>>20)
		}
	}()
	defer j.release()

	select {
	case <-j.attached:
	case <-w.Done():
		fail(fmt.Sprintf("the worker of job %s on TaskManager %s exited before it attached: %v", j.id, tm.id, w.Err()))
		return
	case <-time.After(60 * time.Second):
		fail(fmt.Sprintf("the worker of job %s on TaskManager %s did not attach within 60s", j.id, tm.id))
		w.Kill()
		return
	case <-j.released:
		w.Kill()
		return
	}
	if j.attachErr != nil {
		fail(j.attachErr.Error())
		return
	}
	for {
		select {
		case <-j.kickCh:
			tm.offer(ctx, jm, j)
		case <-w.Done():
			select {
			case <-j.released:
				return
			default:
			}
			err := w.Err()
			if err == nil {
				err = errors.New("exit status 0")
			}
			fail(fmt.Sprintf("the worker of job %s on TaskManager %s exited: %v", j.id, tm.id, err))
			return
		case <-j.released:
			return
		}
	}
}

// offer offers the job's newly allocated slots to its JobMaster; those it
// does not take are freed.
func (tm *TaskManager) offer(ctx context.Context, jm flinkpb.JobMasterClient, j *job) {
	tm.mu.Lock()
	pending := j.pending
	j.pending = nil
	req := &flinkpb.OfferSlotsRequest{JobId: j.id, TaskManagerId: tm.id, TaskManagerAddress: tm.addr, DataAddress: j.dataAddr}
	for _, i := range pending {
		if tm.slots[i].job == j.id {
			req.Slots = append(req.Slots, &flinkpb.SlotStatus{Index: i, JobId: j.id, AllocationId: tm.slots[i].alloc})
		}
	}
	tm.mu.Unlock()
	if len(req.Slots) == 0 {
		return
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := jm.OfferSlots(octx, req)
	cancel()
	accepted := map[int32]bool{}
	if err == nil {
		for _, i := range resp.Accepted {
			accepted[i] = true
		}
	} else {
		tm.log.Warn("offering slots", "job", j.id, "error", err)
	}
	tm.mu.Lock()
	held := 0
	for _, s := range req.Slots {
		if !accepted[s.Index] && tm.slots[s.Index].alloc == s.AllocationId {
			tm.slots[s.Index] = slot{}
		}
	}
	for _, s := range tm.slots {
		if s.job == j.id {
			held++
		}
	}
	tm.mu.Unlock()
	if held == 0 {
		// The JobMaster took none: the job ended or has all it needs.
		go tm.releaseJob(j, "its JobMaster took none of the slots offered")
	}
}

// AttachWorker implements flinkpb.TaskExecutorServer: a job's worker says
// hello, the graph it built is checked against the submitted one, and its
// task states are passed on to the JobMaster until the job lets it go.
func (tm *TaskManager) AttachWorker(s flinkpb.TaskExecutor_AttachWorkerServer) error {
	m, err := s.Recv()
	if err != nil {
		return err
	}
	hello := m.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "a worker starts with hello")
	}
	j := tm.job(hello.JobId)
	if j == nil {
		return status.Errorf(codes.NotFound, "job %s holds no slot on this TaskManager", hello.JobId)
	}
	j.mu.Lock()
	want := j.fingerprint
	j.mu.Unlock()
	var refused error
	switch {
	case hello.Error != "":
		refused = fmt.Errorf("the job's program could not build its graph on TaskManager %s: %s", tm.id, hello.Error)
	case hello.Fingerprint != want:
		refused = fmt.Errorf("the job's program built a different job graph on TaskManager %s than the one submitted (fingerprint %.12s, submitted %.12s): "+
			"a job program must build the same graph every time it runs, with the same arguments and no side effects before Execute", tm.id, hello.Fingerprint, want)
	}
	if !j.attach(s, hello.DataAddress, refused) {
		return status.Errorf(codes.AlreadyExists, "job %s already has a worker on this TaskManager", hello.JobId)
	}
	if refused != nil {
		return nil
	}
	conn, release, err := tm.jms.Get(j.jmAddr)
	if err != nil {
		return err
	}
	defer release()
	jm := flinkpb.NewJobMasterClient(conn)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			if u := m.GetUpdate(); u != nil {
				uctx, cancel := context.WithTimeout(s.Context(), 10*time.Second)
				_, err := jm.UpdateTaskExecutionState(uctx, &flinkpb.TaskStateUpdates{JobId: j.id, TaskManagerId: tm.id, Updates: []*flinkpb.TaskStateUpdate{u}})
				cancel()
				if err != nil {
					tm.log.Warn("reporting a task state", "job", j.id, "error", err)
				}
			}
			if mm := m.GetMetrics(); mm != nil && len(mm.Subtasks) <= maxReportedSubtasks {
				j.mu.Lock()
				j.metrics, j.stats = mm.Subtasks, mm.Stats
				j.mu.Unlock()
			}
			if d := m.GetDump(); d != nil {
				j.gotDump(d)
			}
			if a := m.GetAck(); a != nil {
				acks := &flinkpb.CheckpointAcks{JobId: j.id, TaskManagerId: tm.id, Acks: []*flinkpb.CheckpointAck{a}}
				actx, cancel := context.WithTimeout(s.Context(), 10*time.Second)
				var err error
				if a.DeclineReason != "" {
					_, err = jm.DeclineCheckpoint(actx, acks)
				} else {
					_, err = jm.AcknowledgeCheckpoint(actx, acks)
				}
				cancel()
				if err != nil {
					tm.log.Warn("acknowledging a checkpoint", "job", j.id, "checkpoint", a.CheckpointId, "error", err)
				}
			}
		}
	}()
	select {
	case <-j.released:
	case <-ended:
	}
	return nil
}
