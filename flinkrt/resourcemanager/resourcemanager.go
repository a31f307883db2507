// Package resourcemanager is Flink's ResourceManager: the registry of
// TaskManagers and their slots, and the SlotManager that gives free slots
// to the jobs that declared a need for them. How TaskManagers come to
// exist is the Driver's business: the standalone driver waits for them to
// register; the cluster driver (am/flink) asks the cluster for containers.
package resourcemanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/rpc"
)

// Driver turns slot needs into TaskManagers. The ResourceManager calls
// it with its lock held: a Driver must not block nor call back into the
// ResourceManager before returning.
type Driver interface {
	// SlotsWanted says how many slots the jobs need beyond what the
	// registered TaskManagers have free; 0 when nothing is missing. It is
	// called whenever the figure may have changed.
	SlotsWanted(n int)
	// TaskManagerRegistered says a TaskManager registered; it is called
	// before its slots count in SlotsWanted.
	TaskManagerRegistered(id string)
	// TaskManagerLost says a registered TaskManager is gone (heartbeat
	// timeout, unregistered, or removed by RemoveTaskManager).
	TaskManagerLost(id, cause string)
}

// SlotCap is a Driver whose TaskManagers may have at most MaxSlots slots
// together (a session's --max-slots): a job that needs more can never
// run, and is refused when it is submitted.
type SlotCap interface {
	MaxSlots() int
}

// MaxSlots is the most slots the driver lets the TaskManagers have
// together, 0 for no cap.
func (rm *ResourceManager) MaxSlots() int {
	if c, ok := rm.cfg.Driver.(SlotCap); ok {
		return c.MaxSlots()
	}
	return 0
}

// Standalone is the driver of a standalone cluster: TaskManagers are
// started by hand, so it only says what is missing.
type Standalone struct {
	Log  hclog.Logger
	last int
	mu   sync.Mutex
}

// SlotsWanted implements Driver.
func (s *Standalone) SlotsWanted(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n != s.last && n > 0 {
		s.Log.Info("waiting for TaskManagers to register", "slots_missing", n)
	}
	s.last = n
}

// TaskManagerRegistered implements Driver.
func (s *Standalone) TaskManagerRegistered(string) {}

// TaskManagerLost implements Driver.
func (s *Standalone) TaskManagerLost(string, string) {}

// JobMaster is what the ResourceManager tells a job's JobMaster.
type JobMaster interface {
	// TaskManagerLost says a TaskManager holding the job's slots is gone.
	TaskManagerLost(tmID, cause string)
}

// Config configures a ResourceManager.
type Config struct {
	Log    hclog.Logger
	Driver Driver
	// Conns are the connections to TaskManagers, shared with the
	// JobMasters.
	Conns *rpc.Pool
	// HeartbeatInterval is how often TaskManagers heartbeat; one silent
	// for HeartbeatTimeout is lost.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
}

// ResourceManager is the Flink ResourceManager.
type ResourceManager struct {
	flinkpb.UnimplementedResourceManagerServer
	cfg Config
	id  string
	log hclog.Logger

	mu    sync.Mutex
	tms   map[string]*taskManager
	jobs  map[string]*jobNeed
	order []string // jobs by declaration
	wg    sync.WaitGroup
	ctx   context.Context
}

// TaskManagerInfo describes a registered TaskManager.
type TaskManagerInfo struct {
	ID            string
	Address       string
	DataHost      string
	Slots         int
	FreeSlots     int
	MemoryMB      int64
	CPUCores      int
	LastHeartbeat time.Time
	Registered    time.Time
	// IdleSince is when its last slot was freed; zero while a job holds
	// one.
	IdleSince time.Time
	// Jobs holding its slots.
	SlotJobs []string
	// Stats are its processes' runtime figures, from its last heartbeat.
	Stats *flinkpb.ProcessStats
}

type taskManager struct {
	info    TaskManagerInfo
	slots   []slotState
	release func() // the pooled connection behind client
	client  flinkpb.TaskExecutorClient
}

type slotState struct {
	job, alloc string
}

type jobNeed struct {
	id     string
	slots  int
	jmAddr string
	jm     JobMaster
}

// New makes a ResourceManager; Run starts its liveness monitor.
func New(cfg Config) *ResourceManager {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = 5 * cfg.HeartbeatInterval
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Driver == nil {
		cfg.Driver = &Standalone{Log: cfg.Log}
	}
	return &ResourceManager{cfg: cfg, id: newID(), log: cfg.Log, tms: map[string]*taskManager{}, jobs: map[string]*jobNeed{}, ctx: context.Background()}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Run watches TaskManager heartbeats until ctx ends, then closes every
// connection.
func (rm *ResourceManager) Run(ctx context.Context) {
	rm.mu.Lock()
	rm.ctx = ctx
	rm.mu.Unlock()
	t := time.NewTicker(rm.cfg.HeartbeatInterval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			rm.wg.Wait()
			rm.mu.Lock()
			for id, tm := range rm.tms {
				tm.release()
				delete(rm.tms, id)
			}
			rm.mu.Unlock()
			return
		case now := <-t.C:
			rm.expire(now)
		}
	}
}

func (rm *ResourceManager) expire(now time.Time) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	for id, tm := range rm.tms {
		if now.Sub(tm.info.LastHeartbeat) > rm.cfg.HeartbeatTimeout {
			rm.removeLocked(id, fmt.Sprintf("TaskManager %s at %s timed out: no heartbeat for %s", id, tm.info.Address, rm.cfg.HeartbeatTimeout))
		}
	}
}

// removeLocked forgets a TaskManager and tells the jobs that held its
// slots.
func (rm *ResourceManager) removeLocked(id, cause string) {
	tm := rm.tms[id]
	if tm == nil {
		return
	}
	rm.log.Warn("TaskManager lost", "tm", id, "cause", cause)
	delete(rm.tms, id)
	tm.release()
	rm.cfg.Driver.TaskManagerLost(id, cause)
	told := map[string]bool{}
	for _, s := range tm.slots {
		if j := rm.jobs[s.job]; j != nil && !told[s.job] {
			told[s.job] = true
			go j.jm.TaskManagerLost(id, cause)
		}
	}
	rm.matchLocked()
}

// RemoveIdle forgets the TaskManagers whose slots have all been free for
// longer than idle, and returns their ids; the Driver, which asked,
// stops them. Nothing can be given their slots meanwhile.
func (rm *ResourceManager) RemoveIdle(idle time.Duration) []string {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	var out []string
	now := time.Now()
	for id, tm := range rm.tms {
		if tm.info.IdleSince.IsZero() || now.Sub(tm.info.IdleSince) < idle {
			continue
		}
		rm.log.Info("releasing an idle TaskManager", "tm", id, "idle_for", now.Sub(tm.info.IdleSince).Round(time.Second))
		delete(rm.tms, id)
		tm.release()
		out = append(out, id)
	}
	return out
}

// RegisterTaskExecutor implements flinkpb.ResourceManagerServer.
func (rm *ResourceManager) RegisterTaskExecutor(_ context.Context, req *flinkpb.RegisterTaskExecutorRequest) (*flinkpb.RegisterTaskExecutorResponse, error) {
	if req.TaskManagerId == "" || req.Address == "" {
		return nil, status.Error(codes.InvalidArgument, "a TaskManager registers with its id and address")
	}
	if req.Slots < 1 || req.Slots > 1024 {
		return nil, status.Errorf(codes.InvalidArgument, "%d slots: want 1..1024", req.Slots)
	}
	conn, release, err := rm.cfg.Conns.Get(req.Address)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "TaskManager address %q: %v", req.Address, err)
	}
	now := time.Now()
	tm := &taskManager{
		info: TaskManagerInfo{
			ID: req.TaskManagerId, Address: req.Address, DataHost: req.DataHost, Slots: int(req.Slots),
			MemoryMB: req.MemoryMb, CPUCores: int(req.CpuCores), LastHeartbeat: now, Registered: now,
		},
		slots:   make([]slotState, req.Slots),
		release: release,
		client:  flinkpb.NewTaskExecutorClient(conn),
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if old := rm.tms[req.TaskManagerId]; old != nil {
		old.release()
		tm.info.Registered = old.info.Registered
	}
	for _, s := range req.SlotReport {
		if s.Index >= 0 && int(s.Index) < len(tm.slots) && s.JobId != "" {
			tm.slots[s.Index] = slotState{job: s.JobId, alloc: s.AllocationId}
		}
	}
	rm.tms[req.TaskManagerId] = tm
	rm.cfg.Driver.TaskManagerRegistered(req.TaskManagerId)
	rm.log.Info("TaskManager registered", "tm", req.TaskManagerId, "addr", req.Address, "slots", req.Slots)
	rm.matchLocked()
	return &flinkpb.RegisterTaskExecutorResponse{
		HeartbeatIntervalMs: rm.cfg.HeartbeatInterval.Milliseconds(),
		HeartbeatTimeoutMs:  rm.cfg.HeartbeatTimeout.Milliseconds(),
		ResourceManagerId:   rm.id,
	}, nil
}

// Heartbeat implements flinkpb.ResourceManagerServer.
func (rm *ResourceManager) Heartbeat(_ context.Context, req *flinkpb.TaskExecutorHeartbeat) (*flinkpb.ResourceManagerHeartbeatResponse, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	tm := rm.tms[req.TaskManagerId]
	if tm == nil {
		return &flinkpb.ResourceManagerHeartbeatResponse{Registered: false}, nil
	}
	tm.info.LastHeartbeat = time.Now()
	if req.Stats != nil {
		tm.info.Stats = req.Stats
	}
	// A slot the TaskManager reports free, allocated to a job that ended,
	// is free. Matching runs on every heartbeat, so a slot request that
	// failed is retried at the heartbeat's pace.
	for _, s := range req.SlotReport {
		if s.Index < 0 || int(s.Index) >= len(tm.slots) {
			continue
		}
		cur := &tm.slots[s.Index]
		if s.JobId == "" && cur.job != "" && rm.jobs[cur.job] == nil {
			*cur = slotState{}
		}
	}
	rm.matchLocked()
	return &flinkpb.ResourceManagerHeartbeatResponse{Registered: true}, nil
}

// UnregisterTaskExecutor implements flinkpb.ResourceManagerServer.
func (rm *ResourceManager) UnregisterTaskExecutor(_ context.Context, req *flinkpb.UnregisterTaskExecutorRequest) (*flinkpb.Empty, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	reason := req.Reason
	if reason == "" {
		reason = "it shut down"
	}
	if tm := rm.tms[req.TaskManagerId]; tm != nil {
		rm.removeLocked(req.TaskManagerId, fmt.Sprintf("TaskManager %s at %s unregistered: %s", req.TaskManagerId, tm.info.Address, reason))
	}
	return &flinkpb.Empty{}, nil
}

// RemoveTaskManager forgets a TaskManager known to be gone (its
// container exited), at once rather than after its heartbeat timeout.
func (rm *ResourceManager) RemoveTaskManager(id, cause string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.removeLocked(id, cause)
}

// DeclareResourceRequirements says job needs slots slots; its JobMaster
// serves at jmAddr and hears of lost TaskManagers through jm.
func (rm *ResourceManager) DeclareResourceRequirements(job, jmAddr string, slots int, jm JobMaster) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if _, ok := rm.jobs[job]; !ok {
		rm.order = append(rm.order, job)
	}
	rm.jobs[job] = &jobNeed{id: job, slots: slots, jmAddr: jmAddr, jm: jm}
	rm.matchLocked()
}

// ReleaseJob forgets a job that ended, and frees its slots.
func (rm *ResourceManager) ReleaseJob(job string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	delete(rm.jobs, job)
	for i, id := range rm.order {
		if id == job {
			rm.order = append(rm.order[:i], rm.order[i+1:]...)
			break
		}
	}
	for _, tm := range rm.tms {
		for i := range tm.slots {
			if tm.slots[i].job == job {
				tm.slots[i] = slotState{}
			}
		}
	}
	rm.matchLocked()
}

// SlotsFreed frees the slots TaskManager tmID held for job, which the
// TaskManager freed itself (the job's worker ended), and gives out free
// slots again.
func (rm *ResourceManager) SlotsFreed(job, tmID string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	tm := rm.tms[tmID]
	if tm == nil {
		return
	}
	for i := range tm.slots {
		if tm.slots[i].job == job {
			tm.slots[i] = slotState{}
		}
	}
	rm.matchLocked()
}

// TaskManagers lists the registered TaskManagers by id.
func (rm *ResourceManager) TaskManagers() []TaskManagerInfo {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	var out []TaskManagerInfo
	for _, tm := range rm.tms {
		info := tm.info
		seen := map[string]bool{}
		for _, s := range tm.slots {
			if s.job == "" {
				info.FreeSlots++
			} else if !seen[s.job] {
				seen[s.job] = true
				info.SlotJobs = append(info.SlotJobs, s.job)
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// matchLocked gives free slots to jobs short of their need, oldest job
// first, tells the driver what is still missing, and notes which
// TaskManagers are idle.
func (rm *ResourceManager) matchLocked() {
	defer rm.noteIdleLocked()
	held := map[string]int{}
	for _, tm := range rm.tms {
		for _, s := range tm.slots {
			if s.job != "" {
				held[s.job]++
			}
		}
	}
	tmIDs := make([]string, 0, len(rm.tms))
	for id := range rm.tms {
		tmIDs = append(tmIDs, id)
	}
	sort.Strings(tmIDs)
	missing := 0
	for _, jobID := range rm.order {
		j := rm.jobs[jobID]
		need := j.slots - held[jobID]
		// Fill TaskManagers that already hold the job's slots first, so a
		// job's tasks stay in few workers.
		sort.SliceStable(tmIDs, func(a, b int) bool {
			return rm.holds(tmIDs[a], jobID) && !rm.holds(tmIDs[b], jobID)
		})
		for _, id := range tmIDs {
			tm := rm.tms[id]
			for i := range tm.slots {
				if need <= 0 {
					break
				}
				if tm.slots[i].job != "" {
					continue
				}
				alloc := newID()
				tm.slots[i] = slotState{job: jobID, alloc: alloc}
				need--
				rm.requestSlot(tm, i, j, alloc)
			}
		}
		if need > 0 {
			missing += need
		}
	}
	rm.cfg.Driver.SlotsWanted(missing)
}

func (rm *ResourceManager) noteIdleLocked() {
	now := time.Now()
	for _, tm := range rm.tms {
		busy := false
		for _, sl := range tm.slots {
			busy = busy || sl.job != ""
		}
		switch {
		case busy:
			tm.info.IdleSince = time.Time{}
		case tm.info.IdleSince.IsZero():
			tm.info.IdleSince = now
		}
	}
}

func (rm *ResourceManager) holds(tmID, job string) bool {
	for _, s := range rm.tms[tmID].slots {
		if s.job == job {
			return true
		}
	}
	return false
}

// requestSlot asks a TaskManager to give slot index to a job. A refusal
// frees the slot again.
func (rm *ResourceManager) requestSlot(tm *taskManager, index int, j *jobNeed, alloc string) {
	ctx := rm.ctx
	rm.wg.Add(1)
	go func() {
		defer rm.wg.Done()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := tm.client.RequestSlot(cctx, &flinkpb.RequestSlotRequest{JobId: j.id, AllocationId: alloc, SlotIndex: int32(index), JobMasterAddress: j.jmAddr})
		if err == nil {
			return
		}
		rm.log.Warn("slot request refused", "tm", tm.info.ID, "slot", index, "job", j.id, "error", err)
		rm.mu.Lock()
		defer rm.mu.Unlock()
		if cur := rm.tms[tm.info.ID]; cur == tm && tm.slots[index].alloc == alloc {
			tm.slots[index] = slotState{}
		}
	}()
}
