// Package stream is the API a loom job is written in: an Env, typed
// DataStream[T] and KeyedStream[K, T] values, and generic functions that
// add operators (Map, FlatMap, KeyBy, Reduce, windows, ...).
//
// A job is a Go program. Everything before Execute builds the job's graph
// and must have no side effects: the same program is run again to plan the
// job (`loom run`) and to run its tasks on TaskManagers, and each run must
// build the same graph. Started directly, Execute runs the job in-process.
//
// Methods cannot have type parameters in Go, so operations that change the
// element type are functions (stream.Map(s, "name", f)); those that keep it
// are methods (s.Filter, s.SetParallelism, s.Rebalance).
package stream

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/stream/internal/jobpath"
	"github.com/loom-project/loom/flinkrt/stream/sink"
	"github.com/loom-project/loom/flinkrt/worker"
	"github.com/loom-project/loom/proto/flinkpb"
)

// Environment variables a job program reads.
const (
	// EnvParallelism is the default parallelism (`loom run -p`).
	EnvParallelism = "LOOM_PARALLELISM"
	// EnvConfig holds configuration given at run time: lines of key=value.
	EnvConfig = worker.EnvConfig
	// EnvClientDir is the directory `loom run` was started in, from which
	// the shipped sources and sinks take relative paths.
	EnvClientDir = jobpath.EnvClientDir
)

// DefaultBufferTimeout is how long a partly filled batch may wait before it
// is sent, as Flink's default.
const DefaultBufferTimeout = 100 * time.Millisecond

// Env builds a job and executes it.
type Env struct {
	sg            *graph.StreamGraph
	err           error
	bufferTimeout time.Duration
	watermarkTick time.Duration
	// outputs are the sinks that check where they write before the job
	// starts.
	outputs []sink.OutputChecker
}

// NewEnv makes an environment whose default parallelism is $LOOM_PARALLELISM,
// else the number of CPUs, as Flink's local environment.
func NewEnv() *Env {
	e := &Env{
		sg:            &graph.StreamGraph{Parallelism: runtime.NumCPU(), Config: map[string]string{}},
		bufferTimeout: DefaultBufferTimeout,
		watermarkTick: 200 * time.Millisecond,
	}
	if v := os.Getenv(EnvParallelism); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 {
			e.fail(fmt.Errorf("%s=%q: want a positive number", EnvParallelism, v))
		} else {
			e.sg.Parallelism = p
		}
	}
	return e
}

// SetParallelism sets the parallelism of operators that set none.
func (e *Env) SetParallelism(n int) *Env {
	if n < 1 {
		e.fail(fmt.Errorf("parallelism %d: want at least 1", n))
		return e
	}
	e.sg.Parallelism = n
	return e
}

// Parallelism is the default parallelism.
func (e *Env) Parallelism() int { return e.sg.Parallelism }

// SetMaxParallelism sets the number of key groups of keyed operators that
// set none: the most subtasks keyed state can be spread over.
func (e *Env) SetMaxParallelism(n int) *Env {
	if n < 1 || n > 32768 {
		e.fail(fmt.Errorf("max parallelism %d: want 1..32768", n))
		return e
	}
	e.sg.MaxParallelism = n
	return e
}

// DisableOperatorChaining runs every operator as a task of its own.
func (e *Env) DisableOperatorChaining() *Env {
	e.sg.ChainingDisabled = true
	return e
}

// SetBufferTimeout sets how long a partly filled batch may wait before it
// is sent: lower trades throughput for latency.
func (e *Env) SetBufferTimeout(d time.Duration) *Env {
	if d <= 0 {
		e.fail(fmt.Errorf("buffer timeout %s: want a positive duration", d))
		return e
	}
	e.bufferTimeout = d
	return e
}

// SetAutoWatermarkInterval sets how often watermark strategies emit
// watermarks (Flink's default: 200 ms).
func (e *Env) SetAutoWatermarkInterval(d time.Duration) *Env {
	if d <= 0 {
		e.fail(fmt.Errorf("watermark interval %s: want a positive duration", d))
		return e
	}
	e.watermarkTick = d
	return e
}

// EnableCheckpointing makes the job take a checkpoint every interval, so
// that it recovers from failures with its state, exactly once.
func (e *Env) EnableCheckpointing(interval time.Duration) *Env {
	if interval <= 0 {
		e.fail(fmt.Errorf("checkpoint interval %s: want a positive duration", interval))
		return e
	}
	e.sg.Config["execution.checkpointing.interval"] = interval.String()
	return e
}

// SetConfig sets one of Flink's configuration keys for the job:
// "state.checkpoints.dir", "restart-strategy.type", ...
func (e *Env) SetConfig(key, value string) *Env {
	e.sg.Config[key] = value
	return e
}

// fail records the first error in building the job; Execute returns it.
func (e *Env) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// Plan builds the JobGraph of the job as built so far, named name, with the
// StreamGraph it came from.
func (e *Env) Plan(name string) (*graph.StreamGraph, *flinkpb.JobGraph, error) {
	if e.err != nil {
		return nil, nil, e.err
	}
	e.sg.JobName = name
	e.sg.Config["pipeline.buffer-timeout"] = e.bufferTimeout.String()
	e.sg.Config["parallelism.default"] = strconv.Itoa(e.sg.Parallelism)
	for _, line := range strings.Split(os.Getenv(EnvConfig), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, nil, fmt.Errorf("%s: %q is not key=value", EnvConfig, line)
		}
		e.sg.Config[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	jg, err := graph.Build(e.sg)
	if err != nil {
		return nil, nil, err
	}
	return e.sg, jg, nil
}

// errNoSink is returned for a job with no sink.
var errNoSink = errors.New("the job has no sink: add one (stream.Sink, stream.Print) before Execute")
