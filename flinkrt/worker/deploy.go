package worker

import (
	"context"
	"fmt"
	"runtime/pprof"

	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/network"
	"github.com/loom-project/loom/flinkrt/procstats"
	"github.com/loom-project/loom/flinkrt/task"
	"github.com/loom-project/loom/proto/flinkpb"
)

// Deployment is the part of a job one worker runs: its subtasks, and the
// data address of the worker that runs each subtask of the job, so that
// channels to other workers can be opened.
type Deployment struct {
	JobID string
	// Tasks are the subtasks deployed, each with its execution attempt
	// and region.
	Tasks []Subtask
	// Locations[v][s] is the data address of subtask s of vertex v.
	Locations [][]string
	// Checkpointing says the job takes checkpoints; Checkpoints then routes
	// their commands and acknowledgements.
	Checkpointing bool
	Checkpoints   *Checkpoints
	// Restore is the state each subtask starts from, by vertex and
	// subtask.
	Restore map[[2]int]*flinkpb.SubtaskState
	// Stops, if set, cancels deployed subtasks one by one.
	Stops *Stops
	// Live, if set, holds the running subtasks, whose counts the worker
	// reports.
	Live *Live
}

// RunDeployment runs the deployed subtasks of job. Channels between two of
// them stay in the process; a channel to a subtask elsewhere goes over TCP:
// producers here connect to their consumers' workers, and srv, this
// worker's data server, takes the connections of producers elsewhere.
// It returns as RunLocal does.
func RunDeployment(ctx context.Context, job *Job, d Deployment, srv *network.Server, report func(Update)) error {
	w, err := newWiring(job)
	if err != nil {
		return err
	}
	if len(d.Locations) != len(job.Plan.Vertices) {
		return fmt.Errorf("the deployment locates %d vertices, the job has %d", len(d.Locations), len(job.Plan.Vertices))
	}
	for vi, v := range job.Plan.Vertices {
		if len(d.Locations[vi]) != int(v.Parallelism) {
			return fmt.Errorf("the deployment locates %d subtasks of %s, which has %d", len(d.Locations[vi]), v.Name, v.Parallelism)
		}
	}
	for _, id := range d.Tasks {
		if id.Vertex < 0 || id.Vertex >= len(job.Plan.Vertices) || id.Index < 0 || id.Index >= int(job.Plan.Vertices[id.Vertex].Parallelism) {
			return fmt.Errorf("the deployment names subtask %s, which the job does not have", id)
		}
	}
	w.checkpointing, w.restore, w.checkpoints, w.live = d.Checkpointing, d.Restore, d.Checkpoints, d.Live
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ex := &remoteExchange{w: w, d: d, self: srv.Addr(), dial: srv.Dial, gates: map[[2]int]any{}, attempts: map[[2]int]int{}}
	for _, id := range d.Tasks {
		ex.attempts[[2]int{id.Vertex, id.Index}] = id.Attempt
	}
	defer func() { srv.Unregister(ex.keys...) }()
	for _, id := range d.Tasks {
		if err := ex.addGate(ctx, id, srv); err != nil {
			return err
		}
	}
	// The job's tasks' goroutines carry its id, for samples of their
	// stacks.
	ctx = pprof.WithLabels(ctx, pprof.Labels(procstats.LabelJob, d.JobID))
	return w.runSubtasks(ctx, d.Tasks, ex, report, d.Stops)
}

// remoteExchange connects subtasks of a job spread over several workers.
type remoteExchange struct {
	w     *wiring
	d     Deployment
	self  string
	dial  network.Dialer
	gates map[[2]int]any
	keys  []string // receivers registered with the data server
	// attempts are the deployed subtasks' execution attempts.
	attempts map[[2]int]int
}

// channelKey names a channel between workers by the attempt of the
// subtasks it joins, which is one: both are in one region, and a region
// restarts as a whole. An attempt's channels never meet those of an
// attempt before it.
func channelKey(job string, attempt, edge, producer, consumer int) string {
	return fmt.Sprintf("%s/%d/%d/%d/%d", job, attempt, edge, producer, consumer)
}

// addGate makes the gate of a deployed subtask and registers a receiver
// for each of its channels whose producer runs in another worker.
func (ex *remoteExchange) addGate(ctx context.Context, id Subtask, srv *network.Server) (err error) {
	jg, sg := ex.w.job.Plan, ex.w.job.Graph
	v := jg.Vertices[id.Vertex]
	head := sg.Node(int(v.Operators[0].Node))
	if head == nil {
		return fmt.Errorf("the job graph names operator %d, which this program does not build", v.Operators[0].Node)
	}
	if head.IsSource() {
		return nil
	}
	defer task.Recover(&err, "connecting "+v.Name)
	gate := head.In.NewGate(ex.w.channels[id.Vertex][id.Index], ex.w.settings.credits)
	ex.gates[[2]int{id.Vertex, id.Index}] = gate
	for ei, e := range ex.w.edges {
		if e.target != id.Vertex {
			continue
		}
		np := int(jg.Vertices[e.source].Parallelism)
		for _, p := range graph.ProducersOf(e.partitioning.Kind, np, int(v.Parallelism), id.Index) {
			addr := ex.d.Locations[e.source][p]
			if addr == ex.self {
				continue
			}
			from := fmt.Sprintf("%s (%d/%d) at %s", jg.Vertices[e.source].Name, p+1, np, addr)
			r, err := head.In.NewReceiver(ctx, gate, ex.w.channelIndex(e, p, id.Index), ex.w.settings.credits, ex.w.settings.batchSize, from)
			if err != nil {
				return err
			}
			key := channelKey(ex.d.JobID, id.Attempt, ei, p, id.Index)
			srv.Register(key, r)
			ex.keys = append(ex.keys, key)
		}
	}
	return nil
}

func (ex *remoteExchange) gate(vertex, subtask int) any { return ex.gates[[2]int{vertex, subtask}] }

func (ex *remoteExchange) channel(e *edgeInfo, producer, consumer int) (ch any, err error) {
	node := ex.w.job.Graph.Node(int(e.plan.SourceNode))
	defer task.Recover(&err, "connecting "+node.Name)
	addr := ex.d.Locations[e.target][consumer]
	if addr != ex.self {
		for ei, other := range ex.w.edges {
			if other == e {
				return e.typ.NewRemoteChannel(ex.dial, addr, channelKey(ex.d.JobID, ex.attempts[[2]int{e.source, producer}], ei, producer, consumer), ex.w.settings.batchSize)
			}
		}
	}
	gate := ex.gate(e.target, consumer)
	if gate == nil {
		return nil, fmt.Errorf("subtask %d of %s is located here but not deployed", consumer, ex.w.job.Plan.Vertices[e.target].Name)
	}
	idx := ex.w.channelIndex(e, producer, consumer)
	if idx < 0 {
		return nil, fmt.Errorf("subtask %d does not feed subtask %d over edge %d -> %d", producer, consumer, e.plan.SourceNode, e.plan.TargetNode)
	}
	return e.typ.NewLocalChannel(gate, idx, ex.w.settings.credits, ex.w.settings.batchSize), nil
}
