// Package worker runs a job's subtasks in one process: the job's own
// program, either started directly (a local run) or spawned by a
// TaskManager. It rebuilds each subtask's operator chain from the program's
// StreamGraph, guided by the JobGraph, connects the chains with channels
// and runs each subtask in a goroutine of its own.
package worker

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/network"
	"github.com/loom-project/loom/flinkrt/task"
	"github.com/loom-project/loom/proto/flinkpb"
)

// Job is a job as a worker runs it: the program's StreamGraph (operators
// and their code) and the JobGraph built from it.
type Job struct {
	Graph *graph.StreamGraph
	Plan  *flinkpb.JobGraph
	// InProcess is true when the program that built the job runs it.
	InProcess bool
}

// Subtask names one parallel instance of a vertex.
type Subtask struct {
	Vertex  int // index into Plan.Vertices
	Index   int
	Attempt int
	// Region is the subtask's pipelined region: a failure cancels the
	// subtasks of its region, not those of others.
	Region int
}

func (s Subtask) String() string { return fmt.Sprintf("%d.%d#%d", s.Vertex, s.Index, s.Attempt) }

// settings are the job's runtime settings, from the JobGraph's config.
type settings struct {
	bufferTimeout time.Duration
	batchSize     int
	credits       int
}

func settingsOf(jg *flinkpb.JobGraph) (settings, error) {
	s := settings{bufferTimeout: 100 * time.Millisecond, batchSize: network.DefaultBatchSize, credits: network.DefaultCredits}
	if v, ok := jg.Config["pipeline.buffer-timeout"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return s, fmt.Errorf("pipeline.buffer-timeout %q: want a positive duration", v)
		}
		s.bufferTimeout = d
	}
	if v, ok := jg.Config["taskmanager.network.batch-size"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return s, fmt.Errorf("taskmanager.network.batch-size %q: want a positive number", v)
		}
		s.batchSize = n
	}
	return s, nil
}

// edgeInfo is a JobGraph edge with what wiring it needs.
type edgeInfo struct {
	plan         *flinkpb.JobEdge
	source       int // producer vertex index
	target       int // consumer vertex index
	partitioning task.Partitioning
	// typ is the type of the records the edge carries: the source's
	// output, or the side output it carries.
	typ task.TypeOps
	// gateOffset is where this edge's channels start in the target's gate.
	gateOffset []int // by consumer subtask
}

// wiring is the job's topology, computed once per worker.
type wiring struct {
	job      *Job
	settings settings
	edges    []*edgeInfo
	// channels is each vertex's gate size, by subtask.
	channels [][]int
	// checkpointing, restore and checkpoints are the deployment's: whether
	// the job takes checkpoints, the state files each subtask starts from
	// (by vertex and subtask, then operator id) and the router of its
	// checkpoint commands.
	checkpointing bool
	restore       map[[2]int]*flinkpb.SubtaskState
	checkpoints   *Checkpoints
	// live, when set, holds the running subtasks for their metrics.
	live *Live
}

func newWiring(job *Job) (*wiring, error) {
	jg, sg := job.Plan, job.Graph
	st, err := settingsOf(jg)
	if err != nil {
		return nil, err
	}
	w := &wiring{job: job, settings: st, channels: make([][]int, len(jg.Vertices))}
	for i, v := range jg.Vertices {
		w.channels[i] = make([]int, v.Parallelism)
	}
	sgEdges := map[[2]int]*graph.Edge{}
	for _, e := range sg.Edges {
		sgEdges[[2]int{e.Source, e.Target}] = e
	}
	for _, e := range jg.Edges {
		se, ok := sgEdges[[2]int{int(e.SourceNode), int(e.TargetNode)}]
		if !ok {
			return nil, fmt.Errorf("the job graph has an edge %d -> %d that this program's graph lacks", e.SourceNode, e.TargetNode)
		}
		info := &edgeInfo{
			plan:         e,
			source:       graph.VertexOfNode(jg, e.SourceNode),
			target:       graph.VertexOfNode(jg, e.TargetNode),
			partitioning: task.Partitioning{Kind: task.Partitioner(e.Partitioner), KeyHash: se.Partitioning.KeyHash},
		}
		if target := sg.Node(int(e.TargetNode)); target != nil {
			info.typ = target.In
		}
		if se.SideOutput != e.SideOutput || info.typ == nil {
			return nil, fmt.Errorf("the job graph's edge %d -> %d does not match this program's graph", e.SourceNode, e.TargetNode)
		}
		np, nc := int(jg.Vertices[info.source].Parallelism), int(jg.Vertices[info.target].Parallelism)
		info.gateOffset = make([]int, nc)
		for c := 0; c < nc; c++ {
			info.gateOffset[c] = w.channels[info.target][c]
			w.channels[info.target][c] += len(graph.ProducersOf(info.partitioning.Kind, np, nc, c))
		}
		w.edges = append(w.edges, info)
	}
	return w, nil
}

// channelIndex is the channel of producer subtask p in consumer c's gate.
func (w *wiring) channelIndex(e *edgeInfo, p, c int) int {
	jg := w.job.Plan
	np, nc := int(jg.Vertices[e.source].Parallelism), int(jg.Vertices[e.target].Parallelism)
	for i, prod := range graph.ProducersOf(e.partitioning.Kind, np, nc, c) {
		if prod == p {
			return e.gateOffset[c] + i
		}
	}
	return -1
}

// built is one subtask, assembled and ready to run.
type built struct {
	id   Subtask
	name string
	ctx  *task.Context
	// lifecycles in chain order, head first.
	lifecycles []task.Lifecycle
	opCtx      []*task.OperatorContext
	writers    []task.Flusher
	flushers   []interface{ Flush() }
	source     task.SourceRunner
	headCtx    *task.OperatorContext
	gate       any
	head       any
	inType     task.TypeOps
	// snapshots and listeners are the chain's operators with state and
	// those told of completed checkpoints, head first.
	snapshots   []snapshotOp
	listeners   []listenerOp
	checkpoints *Checkpoints
}

// gates finds the input gate of a subtask and the output channels of a
// producer; local.go implements it for subtasks in this process.
type exchange interface {
	gate(vertex, subtask int) any
	channel(e *edgeInfo, producer, consumer int) (any, error)
}

// build assembles subtask id: the chain of its vertex's operators, each
// made by its factory from the tail back to the head.
func (w *wiring) build(ctx context.Context, id Subtask, ex exchange) (*built, error) {
	jg, sg := w.job.Plan, w.job.Graph
	v := jg.Vertices[id.Vertex]
	b := &built{id: id, name: fmt.Sprintf("%s (%d/%d)#%d", v.Name, id.Index+1, v.Parallelism, id.Attempt)}
	b.ctx = &task.Context{
		Context:        ctx,
		JobName:        jg.Name,
		TaskName:       b.name,
		Subtask:        id.Index,
		Parallelism:    int(v.Parallelism),
		MaxParallelism: int(v.MaxParallelism),
		Attempt:        id.Attempt,
		Mailbox:        task.NewMailbox(),
		InProcess:      w.job.InProcess,
		Checkpointing:  w.checkpointing,
		Barriers:       barriers{b},
	}
	b.ctx.InputWatermark.Store(math.MinInt64)
	b.checkpoints = w.checkpoints
	lifecycles := make([]task.Lifecycle, len(v.Operators))
	opCtx := make([]*task.OperatorContext, len(v.Operators))
	snaps := make([]*snapshotOp, len(v.Operators))
	listeners := make([]*listenerOp, len(v.Operators))
	var assemble func(i int) (any, error)
	assemble = func(i int) (any, error) {
		op := v.Operators[i]
		node := sg.Node(int(op.Node))
		if node == nil || node.ID != int(op.Node) {
			return nil, fmt.Errorf("the job graph names operator %d (%q), which this program does not build", op.Node, op.Name)
		}
		// The operator's outputs: its main one, and each side output that
		// a chained operator or an edge reads, each of its own type.
		var outs []any
		sides := map[string][]any{}
		sideType := map[string]task.TypeOps{}
		for j, child := range v.Operators {
			if int(child.ChainedFrom) == i {
				in, err := assemble(j)
				if err != nil {
					return nil, err
				}
				if child.SideOutput == "" {
					outs = append(outs, in)
					continue
				}
				sides[child.SideOutput] = append(sides[child.SideOutput], in)
				sideType[child.SideOutput] = sg.Node(int(child.Node)).In
			}
		}
		for _, e := range w.edges {
			if e.plan.SourceNode != op.Node {
				continue
			}
			np, nc := int(jg.Vertices[e.source].Parallelism), int(jg.Vertices[e.target].Parallelism)
			var chans []any
			for _, c := range graph.ConsumersOf(e.partitioning.Kind, np, nc, id.Index) {
				ch, err := ex.channel(e, id.Index, c)
				if err != nil {
					return nil, err
				}
				chans = append(chans, ch)
			}
			typ := e.typ
			out, fl := typ.NewWriter(ctx, e.partitioning, chans, w.settings.batchSize, int(jg.Vertices[e.target].MaxParallelism))
			b.writers = append(b.writers, fl)
			if tag := e.plan.SideOutput; tag != "" {
				sides[tag] = append(sides[tag], out)
				sideType[tag] = typ
				continue
			}
			outs = append(outs, out)
		}
		var out any
		switch {
		case node.Out == nil:
		case len(outs) == 0:
			out = node.Out.Discard()
		default:
			out = node.Out.Fanout(outs)
		}
		var sideOuts map[string]any
		for tag, o := range sides {
			if sideOuts == nil {
				sideOuts = map[string]any{}
			}
			sideOuts[tag] = sideType[tag].Fanout(o)
		}
		if i == 0 && node.IsSource() {
			out = node.Out.WithMailbox(out, b.ctx.Mailbox)
		}
		inst := node.Factory.New(out)
		for _, part := range []any{inst.Source, inst.Input, inst.Lifecycle} {
			if sn, ok := part.(task.Snapshotter); ok && snaps[i] == nil {
				snaps[i] = &snapshotOp{id: op.Id, name: op.Name, op: sn}
			}
			if l, ok := part.(task.CheckpointListener); ok && listeners[i] == nil {
				listeners[i] = &listenerOp{name: op.Name, op: l}
			}
		}
		lifecycles[i] = inst.Lifecycle
		opCtx[i] = &task.OperatorContext{Context: b.ctx, Name: op.Name, ID: op.Id, UID: op.Uid, SideOutputs: sideOuts}
		if f, ok := inst.Lifecycle.(interface{ Flush() }); ok {
			b.flushers = append(b.flushers, f)
		}
		if i == 0 && node.IsSource() {
			if inst.Source == nil {
				return nil, fmt.Errorf("operator %q has no input and is not a source", op.Name)
			}
			b.source = inst.Source
			return nil, nil
		}
		return inst.Input, nil
	}
	head, err := assemble(0)
	if err != nil {
		return nil, err
	}
	b.headCtx = opCtx[0]
	for i, lc := range lifecycles {
		if lc != nil {
			b.lifecycles = append(b.lifecycles, lc)
			b.opCtx = append(b.opCtx, opCtx[i])
		}
		if snaps[i] != nil {
			b.snapshots = append(b.snapshots, *snaps[i])
		}
		if listeners[i] != nil {
			b.listeners = append(b.listeners, *listeners[i])
		}
	}
	if st := w.restore[[2]int{id.Vertex, id.Index}]; st != nil {
		if err := b.restoreStates(st); err != nil {
			return nil, err
		}
	}
	if b.source == nil {
		headNode := sg.Node(int(v.Operators[0].Node))
		b.head = head
		b.inType = headNode.In
		b.gate = ex.gate(id.Vertex, id.Index)
	}
	return b, nil
}
