package stream

import (
	"fmt"
	"reflect"

	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/task"
)

// OutputTag names a side output of type T, as Flink's OutputTag: a
// process function emits to it with Output, a window sends its late
// records to it (SideOutputLateData), and SideOutput reads it as a
// stream of its own.
type OutputTag[T any] struct{ id string }

// NewOutputTag makes a tag; id names the side output in the job.
func NewOutputTag[T any](id string) OutputTag[T] { return OutputTag[T]{id: id} }

// ID is the tag's name.
func (t OutputTag[T]) ID() string { return t.id }

func (t OutputTag[T]) check(env *Env) {
	switch {
	case t.id == "":
		env.fail(fmt.Errorf("an OutputTag needs an id: stream.NewOutputTag[T](\"name\")"))
	case len(t.id) > graph.MaxSideOutputName:
		env.fail(fmt.Errorf("OutputTag %.40q…: an id is at most %d bytes", t.id, graph.MaxSideOutputName))
	}
}

// SideOutputContext is a context a function emits side outputs through:
// a KeyedContext, a WindowContext.
type SideOutputContext interface {
	sideOutputs() *sideOutputs
}

// Output emits v to the side output tag, with the time of the record (or
// timer) being handled. A side output nothing reads drops v.
func Output[T any](ctx SideOutputContext, tag OutputTag[T], v T) {
	s := ctx.sideOutputs()
	if out := sideOutput(s, tag); out != nil {
		out.Collect(v, s.ts)
	}
}

// sideOutput is the Output[T] of tag, or nil when nothing reads it.
func sideOutput[T any](s *sideOutputs, tag OutputTag[T]) task.Output[T] {
	if s == nil {
		return nil
	}
	o, ok := s.outs[tag.id]
	if !ok {
		return nil
	}
	out, ok := o.(task.Output[T])
	if !ok {
		task.Fail(fmt.Errorf("%s: side output %q: emitted a %v, which is not the type its readers take (two OutputTags of one id and different types?)", s.name, tag.id, reflect.TypeFor[T]()))
	}
	return out
}

// SideOutput is the stream of the records s's operator emitted to tag. It
// is read through an operator of its own, which chains to s's.
func SideOutput[T, S any](s DataStream[S], tag OutputTag[T]) DataStream[T] {
	tag.check(s.env)
	if s.node == nil || s.node.Out == nil || len(s.from) != 1 || s.from[0] != s.node.ID {
		s.env.fail(fmt.Errorf("side output %q: read it from the stream an operator returned (a process function or a window)", tag.id))
		return DataStream[T]{env: s.env}
	}
	needCodec[T](s.env)
	n := s.env.sg.AddNode(&graph.Node{
		Name:        "SideOutput(" + tag.id + ")",
		Description: "SideOutput",
		In:          task.Type[T]{},
		Out:         task.Type[T]{},
		Factory: task.FactoryFunc(func(out any) task.Instance {
			return task.Instance{Input: task.Output[T](&passOp[T]{out: out.(task.Output[T])})}
		}),
	})
	s.env.sg.ConnectSide(s.node.ID, n.ID, task.Partitioning{}, tag.id)
	return DataStream[T]{env: s.env, node: n, from: []int{n.ID}}
}

// passOp passes records and watermarks on: the head of a side output.
type passOp[T any] struct{ out task.Output[T] }

func (o *passOp[T]) Collect(v T, ts int64) { o.out.Collect(v, ts) }
func (o *passOp[T]) Watermark(wm int64)    { o.out.Watermark(wm) }
func (o *passOp[T]) Idle()                 { task.MarkIdle(o.out) }

// sideOutputs are an operator's side outputs that something reads, and
// the time a record emitted to one carries.
type sideOutputs struct {
	outs map[string]any
	name string
	ts   int64
}

func newSideOutputs(ctx *task.OperatorContext) *sideOutputs {
	return &sideOutputs{outs: ctx.SideOutputs, name: ctx.Name, ts: task.NoTime}
}

// idle marks every side output idle.
func (s *sideOutputs) idle() {
	if s == nil {
		return
	}
	for _, o := range s.outs {
		task.MarkIdle(o)
	}
}

// watermark passes a watermark on to every side output, as Flink's
// operators do.
func (s *sideOutputs) watermark(wm int64) {
	if s == nil {
		return
	}
	for _, o := range s.outs {
		o.(interface{ Watermark(int64) }).Watermark(wm)
	}
}
