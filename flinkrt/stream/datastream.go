package stream

import (
	"fmt"

	"github.com/loom-project/loom/flinkrt/codec"
	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/task"
)

// DataStream is a stream of T: the output of an operator, of several (a
// union), or of one with a partitioning chosen for the next operator.
type DataStream[T any] struct {
	env *Env
	// node is the operator that made the stream; nil for a union.
	node *graph.Node
	// from lists the nodes whose outputs make up the stream.
	from []int
	part task.Partitioning
}

// Collector receives the records a function emits.
type Collector[T any] interface {
	Collect(v T)
}

// Env is the environment the stream belongs to.
func (s DataStream[T]) Env() *Env { return s.env }

func (s DataStream[T]) operator(method string) *graph.Node {
	if s.node == nil {
		s.env.fail(fmt.Errorf("%s applies to an operator's output, not to a union or a repartitioned stream; call it before Union or the partitioning", method))
		return &graph.Node{}
	}
	return s.node
}

// Name names the operator that made this stream (shown in plans and logs).
func (s DataStream[T]) Name(name string) DataStream[T] {
	s.operator("Name").Name = name
	return s
}

// UID fixes the operator's id so its state maps across versions of the job.
func (s DataStream[T]) UID(uid string) DataStream[T] {
	s.operator("UID").UID = uid
	return s
}

// SetParallelism sets the number of subtasks of the operator.
func (s DataStream[T]) SetParallelism(n int) DataStream[T] {
	if n < 1 {
		s.env.fail(fmt.Errorf("parallelism %d of %q: want at least 1", n, s.operator("SetParallelism").Name))
		return s
	}
	s.operator("SetParallelism").Parallelism = n
	return s
}

// SetMaxParallelism sets the operator's number of key groups.
func (s DataStream[T]) SetMaxParallelism(n int) DataStream[T] {
	if n < 1 || n > 32768 {
		s.env.fail(fmt.Errorf("max parallelism %d of %q: want 1..32768", n, s.operator("SetMaxParallelism").Name))
		return s
	}
	s.operator("SetMaxParallelism").MaxParallelism = n
	return s
}

// SlotSharingGroup puts the operator in a slot sharing group: operators of
// different groups never share a slot. Operators after it inherit the group.
func (s DataStream[T]) SlotSharingGroup(name string) DataStream[T] {
	if name == "" {
		s.env.fail(fmt.Errorf("empty slot sharing group name"))
		return s
	}
	s.operator("SlotSharingGroup").SlotSharingGroup = name
	return s
}

// DisableChaining runs the operator in a chain of its own.
func (s DataStream[T]) DisableChaining() DataStream[T] {
	s.operator("DisableChaining").Chaining = graph.ChainNever
	return s
}

// StartNewChain starts a new chain at this operator.
func (s DataStream[T]) StartNewChain() DataStream[T] {
	s.operator("StartNewChain").Chaining = graph.ChainHead
	return s
}

func (s DataStream[T]) partition(p task.Partitioner) DataStream[T] {
	s.part = task.Partitioning{Kind: p}
	s.node = nil
	return s
}

// Forward sends each record to the next operator's subtask of the same index.
func (s DataStream[T]) Forward() DataStream[T] { return s.partition(task.Forward) }

// Rebalance spreads records round-robin over all next subtasks.
func (s DataStream[T]) Rebalance() DataStream[T] { return s.partition(task.Rebalance) }

// Rescale spreads records round-robin over a subset of next subtasks.
func (s DataStream[T]) Rescale() DataStream[T] { return s.partition(task.Rescale) }

// Shuffle sends each record to a random next subtask.
func (s DataStream[T]) Shuffle() DataStream[T] { return s.partition(task.Shuffle) }

// Broadcast sends every record to every next subtask.
func (s DataStream[T]) Broadcast() DataStream[T] { return s.partition(task.Broadcast) }

// Global sends every record to the next operator's first subtask.
func (s DataStream[T]) Global() DataStream[T] { return s.partition(task.Global) }

// Union merges streams of the same type.
func Union[T any](s DataStream[T], others ...DataStream[T]) DataStream[T] {
	u := DataStream[T]{env: s.env}
	for _, o := range append([]DataStream[T]{s}, others...) {
		if o.env != s.env {
			s.env.fail(fmt.Errorf("Union of streams from different environments"))
			return s
		}
		if o.part.Kind != "" {
			s.env.fail(fmt.Errorf("Union of a repartitioned stream: partition the union instead"))
			return s
		}
		u.from = append(u.from, o.from...)
	}
	return u
}

// add appends a one-input operator reading s and returns its output stream.
func add[I, O any](s DataStream[I], name, description string, factory task.FactoryFunc) DataStream[O] {
	n := s.env.sg.AddNode(&graph.Node{
		Name:        name,
		Description: description,
		Factory:     factory,
		In:          task.Type[I]{},
		Out:         task.Type[O]{},
	})
	for _, from := range s.from {
		s.env.sg.Connect(from, n.ID, s.part)
	}
	return DataStream[O]{env: s.env, node: n, from: []int{n.ID}}
}

// needCodec checks, when the job is built, that T can cross the network.
func needCodec[T any](e *Env) {
	if _, err := codec.For[T](); err != nil {
		e.fail(err)
	}
}
