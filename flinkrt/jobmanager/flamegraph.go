package jobmanager

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/loom-project/loom/proto/flinkpb"
)

// Flame graphs, as Flink's: a vertex's tasks' stacks are sampled on the
// TaskManagers that run them (their workers' goroutines, by the labels
// each task's goroutine carries), with Flink's defaults for
// rest.flamegraph.*: 100 samples 50 ms apart, 100 frames deep, sampled
// again when a view is a minute old, forgotten when no one asked for 10
// minutes.
const (
	flameSamples     = 100
	flameDelay       = 50 * time.Millisecond
	flameDepth       = 100
	flameRefresh     = time.Minute
	flameCleanup     = 10 * time.Minute
	maxFlameEntries  = 64
	flameTaskManager = 30 * time.Second // how long one TaskManager's sample may take
)

// Flink's answers for a flame graph without data.
const (
	flameTerminated = -1
	flameWaiting    = -3
)

type flameKey struct {
	job, vertex string
	subtask     int // -1: every subtask
}

type flameEntry struct {
	// at is when the sample ended (0 before the first); stacks are its.
	at       time.Time
	stacks   []*flinkpb.StackSample
	sampling bool
	used     time.Time
}

// flameGraphs holds the latest sample of each vertex (or subtask) a
// flame graph was asked for.
type flameGraphs struct {
	mu sync.Mutex
	m  map[flameKey]*flameEntry
}

// get is the key's sample, and whether a new one should be taken (none
// is, or it is older than flameRefresh); it marks the key sampling then.
func (f *flameGraphs) get(k flameKey, now time.Time) (e flameEntry, start bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for key, e := range f.m {
		if now.Sub(e.used) > flameCleanup && !e.sampling {
			delete(f.m, key)
		}
	}
	cur, ok := f.m[k]
	if !ok {
		if len(f.m) >= maxFlameEntries {
			f.evictOldestLocked()
		}
		if f.m == nil {
			f.m = map[flameKey]*flameEntry{}
		}
		cur = &flameEntry{}
		f.m[k] = cur
	}
	cur.used = now
	if !cur.sampling && (cur.at.IsZero() || now.Sub(cur.at) > flameRefresh) {
		cur.sampling, start = true, true
	}
	return *cur, start
}

func (f *flameGraphs) evictOldestLocked() {
	var oldest flameKey
	var at time.Time
	for k, e := range f.m {
		if !e.sampling && (at.IsZero() || e.used.Before(at)) {
			oldest, at = k, e.used
		}
	}
	delete(f.m, oldest)
}

// put records a finished sample.
func (f *flameGraphs) put(k flameKey, stacks []*flinkpb.StackSample, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.m[k]; ok {
		e.sampling = false
		if stacks != nil {
			e.at, e.stacks = now, stacks
		}
	}
}

// flameNode is a node of Flink's flame graph.
type flameNode struct {
	Name     string       `json:"name"`
	Value    int64        `json:"value"`
	Children []*flameNode `json:"children"`
	index    map[string]*flameNode
}

func (n *flameNode) child(name string) *flameNode {
	if c, ok := n.index[name]; ok {
		return c
	}
	c := &flameNode{Name: name, Children: []*flameNode{}}
	if n.index == nil {
		n.index = map[string]*flameNode{}
	}
	n.index[name] = c
	n.Children = append(n.Children, c)
	return c
}

// flameTree builds Flink's tree of stacks of one type: "full" every one,
// "on_cpu" those of running goroutines, "off_cpu" those of parked ones.
func flameTree(stacks []*flinkpb.StackSample, typ string) *flameNode {
	root := &flameNode{Name: "root", Children: []*flameNode{}}
	for _, s := range stacks {
		if typ == "on_cpu" && s.Parked || typ == "off_cpu" && !s.Parked {
			continue
		}
		root.Value += s.Count
		n := root
		for _, f := range s.Frames {
			n = n.child(f)
			n.Value += s.Count
		}
	}
	return root
}

// restFlameGraph answers Flink's flame graph of a vertex, or of one of
// its subtasks with ?subtaskindex=: the latest sample, taking a new one
// in the background when it is missing or a minute old (Flink's
// "waiting", endTimestamp -3, until the first is in); -1 once the tasks
// ended.
func (jm *JobManager) restFlameGraph(w http.ResponseWriter, r *http.Request, d *flinkpb.JobDetails, v *flinkpb.VertexDetails) {
	typ := r.URL.Query().Get("type")
	switch typ {
	case "":
		typ = "full"
	case "full", "on_cpu", "off_cpu":
	default:
		restError(w, http.StatusBadRequest, "Unknown Flame Graph type "+typ+".")
		return
	}
	subtask := -1
	subtasks := v.Subtasks
	if s := r.URL.Query().Get("subtaskindex"); s != "" {
		i, err := strconv.Atoi(s)
		if err != nil || i < 0 || i >= len(v.Subtasks) {
			restError(w, http.StatusNotFound, "Invalid subtask index for vertex "+v.Id)
			return
		}
		subtask, subtasks = i, v.Subtasks[i:i+1]
	}
	if !slices.ContainsFunc(subtasks, func(t *flinkpb.SubtaskDetails) bool { return !taskTerminal(t.State) }) {
		writeJSON(w, http.StatusOK, obj{"endTimestamp": flameTerminated})
		return
	}
	k := flameKey{d.JobId, v.Id, subtask}
	e, start := jm.flames.get(k, time.Now())
	if start {
		jm.sampleInBackground(k, d, v, subtasks)
	}
	if e.at.IsZero() {
		writeJSON(w, http.StatusOK, obj{"endTimestamp": flameWaiting})
		return
	}
	writeJSON(w, http.StatusOK, obj{"endTimestamp": e.at.UnixMilli(), "data": flameTree(e.stacks, typ)})
}

// sampleInBackground samples the running subtasks' stacks on each
// TaskManager that runs some, at once, and records the merged sample.
func (jm *JobManager) sampleInBackground(k flameKey, d *flinkpb.JobDetails, v *flinkpb.VertexDetails, subtasks []*flinkpb.SubtaskDetails) {
	vertex := slices.IndexFunc(d.Vertices, func(x *flinkpb.VertexDetails) bool { return x.Id == v.Id })
	byTM := map[string][]int32{}
	for _, t := range subtasks {
		if t.State == "RUNNING" || t.State == "INITIALIZING" {
			byTM[t.TaskManagerId] = append(byTM[t.TaskManagerId], t.Index)
		}
	}
	addrs := map[string]string{}
	for _, tm := range jm.rm.TaskManagers() {
		addrs[tm.ID] = tm.Address
	}
	jm.mu.Lock()
	ctx := jm.ctx
	jm.wg.Add(1)
	jm.mu.Unlock()
	go func() {
		defer jm.wg.Done()
		if ctx == nil {
			ctx = context.Background()
		}
		var mu sync.Mutex
		var all []*flinkpb.StackSample
		var wg sync.WaitGroup
		for tm, idx := range byTM {
			addr, ok := addrs[tm]
			if !ok {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				stacks, err := jm.sampleOn(ctx, addr, &flinkpb.SampleTasksRequest{
					JobId: d.JobId, Vertex: int32(vertex), Subtasks: idx,
					Samples: flameSamples, DelayMs: int32(flameDelay / time.Millisecond), MaxDepth: flameDepth,
				})
				if err != nil {
					jm.log.Debug("flame graph sample failed", "job", d.JobId, "vertex", v.Id, "tm", tm, "err", err)
					return
				}
				mu.Lock()
				all = append(all, stacks...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		if all == nil {
			all = []*flinkpb.StackSample{}
		}
		jm.flames.put(k, all, time.Now())
	}()
}

func (jm *JobManager) sampleOn(ctx context.Context, addr string, req *flinkpb.SampleTasksRequest) ([]*flinkpb.StackSample, error) {
	cc, release, err := jm.conns.Get(addr)
	if err != nil {
		return nil, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, flameTaskManager)
	defer cancel()
	resp, err := flinkpb.NewTaskExecutorClient(cc).SampleTasks(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.Stacks, nil
}
