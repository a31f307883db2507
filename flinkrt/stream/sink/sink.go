// Package sink holds where a job's results go: stdout, text files, a
// collection returned to the caller, or nowhere.
package sink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/loom-project/loom/flinkrt/stream/internal/jobpath"
)

// Context describes the subtask a writer runs in.
type Context interface {
	Subtask() int
	Parallelism() int
	// InProcess reports whether the job runs inside the program that built
	// it (a local run), so results can be handed back in memory.
	InProcess() bool
	// Checkpointing reports whether the job takes checkpoints: a
	// transactional writer then makes output visible only as they complete.
	Checkpointing() bool
	// Restored is the state a Transactional writer of this subtask returned
	// for the checkpoint the job restarts from; nil on a fresh start.
	Restored() []byte
}

// Sink makes one writer per subtask.
type Sink[T any] interface {
	// Describe names the sink in the plan: "Print", "TextFile".
	Describe() string
	Open(ctx Context) (Writer[T], error)
}

// Writer writes one subtask's records.
type Writer[T any] interface {
	Write(v T) error
	// Flush makes what was written visible; called on the task's buffer
	// timeout and before Close.
	Flush() error
	Close() error
}

// Transactional is a Writer whose output becomes visible only when the
// checkpoint that covers it completes (two-phase commit): output since the
// last checkpoint is pre-committed (made pending) as a checkpoint is taken,
// and committed when it completes. A restart from the checkpoint commits
// what it left pending and discards what was written after it, so every
// record is in the output exactly once.
type Transactional interface {
	// PreCommit makes pending what was written since the last checkpoint
	// and returns the writer's state for checkpoint id.
	PreCommit(checkpointID int64) ([]byte, error)
	// Commit makes visible what checkpoints up to id made pending.
	Commit(checkpointID int64) error
}

// Splittable is a Sink whose Transactional state can move to another
// parallelism: restored there, every new subtask is given the state of
// all the old subtasks and takes its share of what they left to commit.
type Splittable interface {
	// Split is subtask's state at parallelism from the old subtasks'.
	Split(states [][]byte, subtask, parallelism int) ([]byte, error)
}

// ------------------------------------------------------------------ print

var stdoutMu sync.Mutex

// Print writes each record to stdout on a line of its own, prefixed with
// "N> " (N the subtask, from 1) when the sink has more than one subtask,
// as Flink's print sink does.
func Print[T any]() Sink[T] { return printSink[T]{w: nil} }

// PrintTo is Print to w.
func PrintTo[T any](w io.Writer) Sink[T] { return printSink[T]{w: w} }

type printSink[T any] struct{ w io.Writer }

func (printSink[T]) Describe() string { return "Print to Std. Out" }

func (p printSink[T]) Open(ctx Context) (Writer[T], error) {
	w := &lineWriter[T]{out: p.w, mu: &stdoutMu}
	if w.out == nil {
		w.out = os.Stdout
	}
	if ctx.Parallelism() > 1 {
		w.prefix = strconv.Itoa(ctx.Subtask()+1) + "> "
	}
	return w, nil
}

// lineWriter formats records as lines into a buffer and writes whole
// buffers, so lines of concurrent subtasks never interleave.
type lineWriter[T any] struct {
	out    io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte
	closer io.Closer
}

func (w *lineWriter[T]) Write(v T) error {
	w.buf = append(w.buf, w.prefix...)
	w.buf = appendValue(w.buf, v)
	w.buf = append(w.buf, '\n')
	if len(w.buf) >= 64<<10 {
		return w.Flush()
	}
	return nil
}

func appendValue[T any](b []byte, v T) []byte {
	switch x := any(v).(type) {
	case string:
		return append(b, x...)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case fmt.Stringer:
		return append(b, x.String()...)
	}
	return fmt.Append(b, v)
}

func (w *lineWriter[T]) Flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if w.mu != nil {
		w.mu.Lock()
		defer w.mu.Unlock()
	}
	_, err := w.out.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

func (w *lineWriter[T]) Close() error {
	err := w.Flush()
	if w.closer != nil {
		err = errors.Join(err, w.closer.Close())
	}
	return err
}

// -------------------------------------------------------------- text file

// TextFile writes each subtask's records as lines to dir/part-N-0 (N the
// subtask, from 0), creating dir. In a job that takes checkpoints it is
// exactly-once: each subtask writes a part file per checkpoint,
// dir/part-N-C, hidden (.part-N-C.inprogress) until the checkpoint that
// covers it completes.
//
// A relative dir is taken from the directory `loom run` was started in
// (or the program's, run directly). As Flink's WriteMode.NO_OVERWRITE, a
// job refuses to start into a directory that already holds files, so two
// runs' part files never mix, unless it restores from a savepoint or
// checkpoint (which cleans up after itself) or the sink is made with
// Overwrite(true).
func TextFile[T any](dir string) TextFileSink[T] { return TextFileSink[T]{dir: jobpath.Resolve(dir)} }

// TextFileSink is the sink TextFile makes.
type TextFileSink[T any] struct {
	dir       string
	overwrite bool
}

// Overwrite(true) makes the sink replace the part files an earlier run
// left in its directory (Flink's WriteMode.OVERWRITE): they are removed
// when the job is submitted.
func (t TextFileSink[T]) Overwrite(on bool) TextFileSink[T] {
	t.overwrite = on
	return t
}

// Dir is the directory the sink writes to, absolute.
func (t TextFileSink[T]) Dir() string { return t.dir }

func (TextFileSink[T]) Describe() string { return "TextFile" }

// Split implements Splittable: the part files of old subtask i, named
// part-i-*, go on being kept (and their pending ones committed) by new
// subtask i modulo the new parallelism.
func (TextFileSink[T]) Split(states [][]byte, subtask, parallelism int) ([]byte, error) {
	return splitParts(states, subtask, parallelism)
}

// CheckOutput implements OutputChecker.
func (t TextFileSink[T]) CheckOutput(restoring bool) error {
	entries, err := os.ReadDir(t.dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) || restoring {
		return nil
	}
	if err != nil {
		return fmt.Errorf("text sink: %w", err)
	}
	if !t.overwrite {
		names := make([]string, 0, 3)
		for _, e := range entries[:min(3, len(entries))] {
			names = append(names, e.Name())
		}
		more := ""
		if len(entries) > 3 {
			more = ", …"
		}
		return fmt.Errorf("text sink: %s already holds %d files (%s%s), maybe of an earlier run; write to another directory, empty it, or make the sink with Overwrite(true) to replace its part files (the examples' --overwrite)", t.dir, len(entries), strings.Join(names, ", "), more)
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, "part-") || strings.HasPrefix(n, ".part-") {
			if err := os.Remove(filepath.Join(t.dir, n)); err != nil {
				return fmt.Errorf("text sink: replacing an earlier run's files: %w", err)
			}
		}
	}
	return nil
}

// OutputChecker is a sink that checks where it writes before a job that
// writes there starts: on the client that plans it, or in the program
// that runs it directly; never on a worker, whose restarts find the
// job's own files there. restoring is true for a job that starts from a
// savepoint or checkpoint.
type OutputChecker interface {
	CheckOutput(restoring bool) error
}

func (t TextFileSink[T]) Open(ctx Context) (Writer[T], error) {
	if err := os.MkdirAll(t.dir, 0o755); err != nil {
		return nil, fmt.Errorf("text sink: %w", err)
	}
	if ctx.Checkpointing() {
		return openPartFiles[T](t.dir, ctx.Subtask(), ctx.Restored())
	}
	f, err := os.Create(filepath.Join(t.dir, fmt.Sprintf("part-%d-0", ctx.Subtask())))
	if err != nil {
		return nil, fmt.Errorf("text sink: %w", err)
	}
	return &lineWriter[T]{out: f, closer: f}, nil
}

// ---------------------------------------------------------------- discard

// Discard drops every record.
func Discard[T any]() Sink[T] { return discard[T]{} }

type discard[T any] struct{}

func (discard[T]) Describe() string                { return "Discard" }
func (discard[T]) Open(Context) (Writer[T], error) { return discard[T]{}, nil }
func (discard[T]) Write(T) error                   { return nil }
func (discard[T]) Flush() error                    { return nil }
func (discard[T]) Close() error                    { return nil }

// ---------------------------------------------------------------- collect

// Collected gathers a job's results in the program that runs it. It works
// when the job runs in-process (the program started directly); a job
// submitted to a cluster fails at start with a clear error.
type Collected[T any] struct {
	mu     sync.Mutex
	values []T
}

// Collect returns a sink whose records are read with Values after Execute.
func Collect[T any]() *Collected[T] { return &Collected[T]{} }

// Describe implements Sink.
func (c *Collected[T]) Describe() string { return "Collect" }

// Open implements Sink.
func (c *Collected[T]) Open(ctx Context) (Writer[T], error) {
	if !ctx.InProcess() {
		return nil, errors.New("the collect sink hands results to the program that built the job, so it works only when the job runs in-process; write to a text file or print instead")
	}
	return &collectWriter[T]{c: c}, nil
}

// Values returns what was collected, in arrival order per subtask.
func (c *Collected[T]) Values() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]T(nil), c.values...)
}

type collectWriter[T any] struct {
	c   *Collected[T]
	buf []T
}

func (w *collectWriter[T]) Write(v T) error {
	w.buf = append(w.buf, v)
	if len(w.buf) >= 4096 {
		return w.Flush()
	}
	return nil
}

func (w *collectWriter[T]) Flush() error {
	w.c.mu.Lock()
	w.c.values = append(w.c.values, w.buf...)
	w.c.mu.Unlock()
	w.buf = w.buf[:0]
	return nil
}

func (w *collectWriter[T]) Close() error { return w.Flush() }
