package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"strconv"
	"sync"

	"github.com/loom-project/loom/flinkrt/procstats"
	"github.com/loom-project/loom/flinkrt/task"
	"github.com/loom-project/loom/proto/flinkpb"
)

// Flink's execution states of a subtask.
const (
	StateDeploying    = "DEPLOYING"
	StateInitializing = "INITIALIZING"
	StateRunning      = "RUNNING"
	StateFinished     = "FINISHED"
	StateCanceled     = "CANCELED"
	StateFailed       = "FAILED"
)

// Update reports a subtask's change of state; Err is set for FAILED.
type Update struct {
	Subtask Subtask
	State   string
	Err     error
	// IO is a subtask's final counts, with a terminal state.
	IO *flinkpb.IOMetrics
}

// run runs a built subtask to its end: open the operators (tail first),
// run the source or read the gate, finish the operators (head first), end
// the outputs, close everything.
func (b *built) run(s settings, report func(Update)) (err error) {
	report(Update{Subtask: b.id, State: StateInitializing})
	defer b.ctx.StopTimers()
	defer func() {
		for i := len(b.lifecycles) - 1; i >= 0; i-- {
			if cerr := closeOp(b.lifecycles[i], b.name); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	defer task.Recover(&err, b.name)
	for i := len(b.lifecycles) - 1; i >= 0; i-- {
		if err := b.lifecycles[i].Open(b.opCtx[i]); err != nil {
			return fmt.Errorf("opening %s: %w", b.opCtx[i].Name, err)
		}
	}
	stopFlush := b.ctx.Every(s.bufferTimeout, b.flush)
	defer stopFlush()
	report(Update{Subtask: b.id, State: StateRunning})
	if b.source != nil {
		err = b.source.Run(b.headCtx)
	} else {
		err = b.inType.RunInput(b.ctx, b.gate, b.head)
	}
	if err != nil {
		return err
	}
	if b.ctx.Err() != nil {
		return task.ErrCanceled
	}
	for i, lc := range b.lifecycles {
		if err := lc.Finish(); err != nil {
			return fmt.Errorf("finishing %s: %w", b.opCtx[i].Name, err)
		}
	}
	for _, w := range b.writers {
		w.End()
	}
	return nil
}

func closeOp(lc task.Lifecycle, where string) (err error) {
	defer task.Recover(&err, where)
	return lc.Close()
}

// flush sends what the writers and sinks hold: the buffer timeout.
func (b *built) flush() {
	for _, w := range b.writers {
		w.Flush()
	}
	for _, f := range b.flushers {
		f.Flush()
	}
}

// RunLocal runs every subtask of job in this process and returns when all
// have finished, one has failed (the others are canceled and its error,
// the root cause, is returned) or ctx is canceled (ErrCanceled).
func RunLocal(ctx context.Context, job *Job, report func(Update)) error {
	w, err := newWiring(job)
	if err != nil {
		return err
	}
	ex, err := newLocalExchange(w)
	if err != nil {
		return err
	}
	var ids []Subtask
	for vi, v := range job.Plan.Vertices {
		for i := 0; i < int(v.Parallelism); i++ {
			ids = append(ids, Subtask{Vertex: vi, Index: i})
		}
	}
	return w.runSubtasks(ctx, ids, ex, report, nil)
}

// runSubtasks builds the subtasks ids, runs them and returns as RunLocal.
// A failed subtask cancels the others of its region (Subtask.Region);
// those of other regions run on. stops, if set, cancels subtasks one by
// one.
func (w *wiring) runSubtasks(ctx context.Context, ids []Subtask, ex exchange, report func(Update), stops *Stops) error {
	if report == nil {
		report = func(Update) {}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	cancels := make([]context.CancelCauseFunc, len(ids))
	var subtasks []*built
	for i, id := range ids {
		report(Update{Subtask: id, State: StateDeploying})
		sctx, scancel := context.WithCancelCause(ctx)
		cancels[i] = scancel
		b, err := w.build(sctx, id, ex)
		if err != nil {
			err = fmt.Errorf("deploying %s: %w", w.job.Plan.Vertices[id.Vertex].Name, err)
			report(Update{Subtask: id, State: StateFailed, Err: err})
			// Every other subtask of the deployment ends too, and says so.
			for _, other := range ids {
				if other != id {
					report(Update{Subtask: other, State: StateCanceled})
				}
			}
			return err
		}
		subtasks = append(subtasks, b)
		if w.checkpoints != nil {
			w.checkpoints.add(b)
		}
	}
	if w.checkpoints != nil {
		defer w.checkpoints.close()
	}
	if stops != nil {
		for i, id := range ids {
			stops.add(id, cancels[i])
		}
	}

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		rootCause error
	)
	for _, b := range subtasks {
		wg.Add(1)
		w.live.add(b)
		go func() {
			defer wg.Done()
			defer w.live.remove(b)
			pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels(
				procstats.LabelVertex, strconv.Itoa(b.id.Vertex), procstats.LabelSubtask, strconv.Itoa(b.id.Index))))
			err := b.run(w.settings, report)
			switch {
			case err == nil:
				report(Update{Subtask: b.id, State: StateFinished, IO: b.io()})
			case errors.Is(err, task.ErrCanceled) || errors.Is(err, context.Canceled):
				report(Update{Subtask: b.id, State: StateCanceled, IO: b.io()})
			default:
				err = fmt.Errorf("%s failed: %w", b.name, err)
				report(Update{Subtask: b.id, State: StateFailed, Err: err, IO: b.io()})
				mu.Lock()
				if rootCause == nil {
					rootCause = err
				}
				mu.Unlock()
				for i, id := range ids {
					if id.Region == b.id.Region {
						cancels[i](err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if rootCause != nil {
		return rootCause
	}
	if ctx.Err() != nil {
		return task.ErrCanceled
	}
	return nil
}

// Stops cancels subtasks of a running deployment one by one, as a region
// restart does. A stop that comes before its subtask started running
// takes effect when it does.
type Stops struct {
	mu      sync.Mutex
	cancels map[execution]context.CancelCauseFunc
	stopped map[execution]bool
}

// execution names one execution attempt of a subtask.
type execution struct{ vertex, index, attempt int }

func (s Subtask) execution() execution { return execution{s.Vertex, s.Index, s.Attempt} }

// NewStops makes the Stops of one deployment.
func NewStops() *Stops {
	return &Stops{cancels: map[execution]context.CancelCauseFunc{}, stopped: map[execution]bool{}}
}

// Stop cancels the execution of subtask id (its vertex, index and
// attempt).
func (s *Stops) Stop(id Subtask) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.cancels[id.execution()]; c != nil {
		c(task.ErrCanceled)
		return
	}
	s.stopped[id.execution()] = true
}

func (s *Stops) add(id Subtask, cancel context.CancelCauseFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancels[id.execution()] = cancel
	if s.stopped[id.execution()] {
		cancel(task.ErrCanceled)
	}
}

// localExchange connects subtasks that all run in this process.
type localExchange struct {
	w     *wiring
	gates map[[2]int]any
}

func newLocalExchange(w *wiring) (*localExchange, error) {
	ex := &localExchange{w: w, gates: map[[2]int]any{}}
	for vi, v := range w.job.Plan.Vertices {
		head := w.job.Graph.Node(int(v.Operators[0].Node))
		if head == nil {
			return nil, fmt.Errorf("the job graph names operator %d, which this program does not build", v.Operators[0].Node)
		}
		if head.IsSource() {
			continue
		}
		for s := 0; s < int(v.Parallelism); s++ {
			ex.gates[[2]int{vi, s}] = head.In.NewGate(w.channels[vi][s], w.settings.credits)
		}
	}
	return ex, nil
}

func (ex *localExchange) gate(vertex, subtask int) any { return ex.gates[[2]int{vertex, subtask}] }

func (ex *localExchange) channel(e *edgeInfo, producer, consumer int) (ch any, err error) {
	node := ex.w.job.Graph.Node(int(e.plan.SourceNode))
	idx := ex.w.channelIndex(e, producer, consumer)
	if idx < 0 {
		return nil, fmt.Errorf("subtask %d does not feed subtask %d over edge %d -> %d", producer, consumer, e.plan.SourceNode, e.plan.TargetNode)
	}
	defer task.Recover(&err, "connecting "+node.Name)
	return e.typ.NewLocalChannel(ex.gate(e.target, consumer), idx, ex.w.settings.credits, ex.w.settings.batchSize), nil
}
