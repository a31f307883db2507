// Package task runs one subtask of a job: a chain of operators that call
// each other directly, fed by a source or by an input gate, writing to the
// record writers of the chain's outgoing edges.
//
// Records stay typed Go values all the way: an operator is an Output[T] of
// its upstream and calls its downstream's Collect. The runtime above this
// package wires chains without knowing their types through TypeOps, which
// each stream's element type provides; type assertions happen once, when a
// task is built, never per record.
package task

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loom-project/loom/flinkrt/network"
)

// Output receives records and watermarks. Every operator is the Output of
// the operator before it in its chain.
type Output[T any] interface {
	// Collect passes a record and its event time (NoTime if it has none).
	Collect(v T, ts int64)
	// Watermark says no record with an event time at or below wm follows.
	Watermark(wm int64)
}

// Lifecycle is what an operator does besides handling records.
type Lifecycle interface {
	// Open prepares the operator before the first record.
	Open(ctx *OperatorContext) error
	// Finish is called once the input has ended, in chain order; the
	// operator may still emit (a window fires what it holds).
	Finish() error
	// Close releases what Open took; called on success and on failure.
	Close() error
}

// SourceRunner is the head of a source task.
type SourceRunner interface {
	// Run emits records until the source is exhausted or ctx.Done().
	Run(ctx *OperatorContext) error
}

// Instance is one operator of a chain, made by its Factory.
type Instance struct {
	// Input is the operator's Output[I] for its upstream; nil for a source.
	Input any
	// Source runs a source operator; nil otherwise.
	Source SourceRunner
	// Lifecycle may be nil for a stateless operator.
	Lifecycle Lifecycle
}

// Factory makes a fresh operator instance writing to out, an Output[O] of
// the operator's output type (nil for a sink).
type Factory interface {
	New(out any) Instance
}

// FactoryFunc adapts a function to Factory.
type FactoryFunc func(out any) Instance

// New implements Factory.
func (f FactoryFunc) New(out any) Instance { return f(out) }

// MaxWatermark ends event time: every timer fires.
const MaxWatermark = math.MaxInt64

// NoTime is the event time of a record that has none.
const NoTime = network.NoTime

// Context is what a running subtask offers its operators.
type Context struct {
	context.Context
	JobName        string
	TaskName       string
	Subtask        int
	Parallelism    int
	MaxParallelism int
	Attempt        int

	Mailbox *Mailbox
	// InProcess is true when the job runs inside the program that built it.
	InProcess bool
	// Checkpointing is true when the job takes checkpoints: transactional
	// sinks then make output visible only when a checkpoint completes.
	Checkpointing bool
	// Barriers handles the checkpoint barriers of a task with inputs.
	Barriers Barriers
	// RecordsIn and BytesIn count what the task read from its input gate
	// (bytes of batches that crossed the network), batch by batch.
	RecordsIn, BytesIn atomic.Int64
	// IdleNanos is the time the task waited for input; InputWatermark its
	// input's watermark (math.MinInt64 before the first).
	IdleNanos      atomic.Int64
	InputWatermark atomic.Int64
	// LateRecordsDropped counts the records the task's windows dropped as
	// late (Flink's numLateRecordsDropped): behind the watermark by more
	// than the allowed lateness, with no late-data side output.
	LateRecordsDropped atomic.Int64
	// Accumulators are the subtask's user counters.
	Accumulators Accumulators
	// Metrics are the metrics its functions register.
	Metrics UserMetrics

	timersMu sync.Mutex
	timers   map[*time.Timer]struct{}
	stopped  bool
}

// After runs fn in the task's goroutine (through the mailbox) once d has
// passed, unless the returned stop is called first or the task ends.
func (c *Context) After(d time.Duration, fn func()) (stop func()) {
	c.timersMu.Lock()
	defer c.timersMu.Unlock()
	if c.stopped {
		return func() {}
	}
	if c.timers == nil {
		c.timers = map[*time.Timer]struct{}{}
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		c.timersMu.Lock()
		delete(c.timers, t)
		c.timersMu.Unlock()
		c.Mailbox.Post(fn)
	})
	c.timers[t] = struct{}{}
	return func() {
		c.timersMu.Lock()
		defer c.timersMu.Unlock()
		if t.Stop() {
			delete(c.timers, t)
		}
	}
}

// Every runs fn every d in the task's goroutine until stopped or the task ends.
func (c *Context) Every(d time.Duration, fn func()) (stop func()) {
	var mu sync.Mutex
	var cur func()
	done := false
	var arm func()
	arm = func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			cur = c.After(d, func() { fn(); arm() })
		}
	}
	arm()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		done = true
		cur()
	}
}

// StopTimers stops every timer of the task; After does nothing afterwards.
func (c *Context) StopTimers() {
	c.timersMu.Lock()
	defer c.timersMu.Unlock()
	c.stopped = true
	for t := range c.timers {
		t.Stop()
	}
	c.timers = nil
}

// OperatorContext is the Context of one operator of the task's chain.
type OperatorContext struct {
	*Context
	Name string
	ID   string
	UID  string
	// SideOutputs are the operator's side outputs that something reads,
	// each an Output[S] of its type, by name.
	SideOutputs map[string]any
}

// Mailbox runs actions in the task's own goroutine: timers, flushes and
// (later) checkpoint triggers, between records, never concurrently with
// them. A source's output checks Pending before each record; a task that
// reads a gate selects on Notify.
type Mailbox struct {
	pending atomic.Bool
	mu      sync.Mutex
	actions []func()
	notify  chan struct{}
}

// NewMailbox makes an empty mailbox.
func NewMailbox() *Mailbox { return &Mailbox{notify: make(chan struct{}, 1)} }

// Post queues fn to run in the task's goroutine.
func (m *Mailbox) Post(fn func()) {
	m.mu.Lock()
	m.actions = append(m.actions, fn)
	m.mu.Unlock()
	m.pending.Store(true)
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// Pending reports whether actions wait; one atomic load.
func (m *Mailbox) Pending() bool { return m.pending.Load() }

// Notify is signalled when actions are posted.
func (m *Mailbox) Notify() <-chan struct{} { return m.notify }

// Run runs every queued action.
func (m *Mailbox) Run() {
	for m.pending.Load() {
		m.mu.Lock()
		actions := m.actions
		m.actions = nil
		m.pending.Store(false)
		m.mu.Unlock()
		for _, fn := range actions {
			fn()
		}
	}
}

// Failure carries an error out of an operator's Collect, which has no
// error result, to the task that runs it.
type Failure struct{ Err error }

// Fail stops the running task with err. It does not return.
func Fail(err error) { panic(Failure{err}) }

// ErrCanceled is the result of a task that was canceled.
var ErrCanceled = errors.New("task canceled")

// Recover turns a panic in an operator into the task's error: a Failure
// keeps its error, anything else becomes an error with the stack.
func Recover(err *error, where string) {
	r := recover()
	if r == nil {
		return
	}
	switch r := r.(type) {
	case Failure:
		*err = r.Err
	default:
		*err = fmt.Errorf("%s panicked: %v\n%s", where, r, debug.Stack())
	}
}
