// Package graph turns the StreamGraph a program builds into the JobGraph
// that is submitted and scheduled: operators chained where Flink chains
// them, slot sharing groups resolved, stable operator ids, a fingerprint.
package graph

import (
	"fmt"

	"github.com/loom-project/loom/flinkrt/task"
)

// Chaining says whether an operator may be chained to its neighbours
// (Flink's ChainingStrategy).
type Chaining int

const (
	// ChainAlways chains to the operator before and after where the rules allow.
	ChainAlways Chaining = iota
	// ChainHead starts a new chain but lets the operators after chain to it.
	ChainHead
	// ChainNever keeps the operator in a chain of its own.
	ChainNever
)

// DefaultSlotSharingGroup is the group of every operator that names none
// and whose inputs are in different groups.
const DefaultSlotSharingGroup = "default"

// Node is one operator of a StreamGraph.
type Node struct {
	// ID is the node's index in the graph: its build order.
	ID   int
	Name string
	// UID fixes the operator's id across versions of a job; optional.
	UID string
	// Description says what the operator does: "Source: TextFile", "Map".
	Description string
	// Parallelism 0 takes the graph's default.
	Parallelism int
	// MaxParallelism 0 takes the graph's, or Flink's default for the parallelism.
	MaxParallelism int
	// SlotSharingGroup "" inherits from the inputs.
	SlotSharingGroup string
	Chaining         Chaining
	// Factory makes the operator in a worker.
	Factory task.Factory
	// In is the input element type; nil for a source.
	In task.TypeOps
	// Out is the output element type; nil for a sink.
	Out task.TypeOps
	// KeyedState says the operator's state can move to another
	// parallelism: it is by key (redistributed by key group), or broadcast
	// state (the same in every subtask, copied).
	KeyedState bool
	// SplitState says the operator's state is splits of work (a source's
	// unread input, a sink's uncommitted output) that a restore at another
	// parallelism divides among the new subtasks.
	SplitState bool
}

// IsSource reports whether the node has no input.
func (n *Node) IsSource() bool { return n.In == nil }

// Edge connects two nodes. Partitioning.Kind "" means forward where the
// parallelisms match and rebalance where they do not, as Flink decides.
type Edge struct {
	Source, Target int
	Partitioning   task.Partitioning
	// SideOutput names the side output of Source the edge carries; ""
	// is its main output.
	SideOutput string
}

// StreamGraph is the job as the program built it.
type StreamGraph struct {
	JobName string
	Nodes   []*Node
	Edges   []*Edge
	// Parallelism is the default for nodes that set none.
	Parallelism int
	// MaxParallelism is the default for nodes that set none; 0 derives it.
	MaxParallelism int
	// ChainingDisabled turns all chaining off.
	ChainingDisabled bool
	// Config travels with the JobGraph.
	Config map[string]string
}

// AddNode appends n and gives it its id.
func (g *StreamGraph) AddNode(n *Node) *Node {
	n.ID = len(g.Nodes)
	g.Nodes = append(g.Nodes, n)
	return n
}

// Connect adds an edge from source to target.
func (g *StreamGraph) Connect(source, target int, p task.Partitioning) {
	g.Edges = append(g.Edges, &Edge{Source: source, Target: target, Partitioning: p})
}

// ConnectSide adds an edge from source's side output tag to target.
func (g *StreamGraph) ConnectSide(source, target int, p task.Partitioning, tag string) {
	g.Edges = append(g.Edges, &Edge{Source: source, Target: target, Partitioning: p, SideOutput: tag})
}

// Node returns the node with id, or nil.
func (g *StreamGraph) Node(id int) *Node {
	if id < 0 || id >= len(g.Nodes) {
		return nil
	}
	return g.Nodes[id]
}

func (g *StreamGraph) inputs(id int) []*Edge {
	var in []*Edge
	for _, e := range g.Edges {
		if e.Target == id {
			in = append(in, e)
		}
	}
	return in
}

// parallelism is a node's resolved parallelism.
func (g *StreamGraph) parallelism(n *Node) int {
	if n.Parallelism > 0 {
		return n.Parallelism
	}
	if g.Parallelism > 0 {
		return g.Parallelism
	}
	return 1
}

func (g *StreamGraph) maxParallelism(n *Node) int {
	switch {
	case n.MaxParallelism > 0:
		return n.MaxParallelism
	case g.MaxParallelism > 0:
		return g.MaxParallelism
	}
	return task.DefaultMaxParallelism(g.parallelism(n))
}

func (n *Node) String() string { return fmt.Sprintf("%s (node %d)", n.Name, n.ID) }
