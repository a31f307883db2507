// Package minicluster runs a job inside the program that built it, as
// Flink's MiniCluster does: what `go run ./myjob` and tests use. It starts
// a real JobManager and a TaskManager on loopback ports, in this process;
// the TaskManager's worker for the job runs here too, on the graph the
// program built, so every subtask's channels stay in memory.
package minicluster

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/jobmanager"
	"github.com/loom-project/loom/flinkrt/task"
	"github.com/loom-project/loom/flinkrt/taskmanager"
	"github.com/loom-project/loom/flinkrt/worker"
	"github.com/loom-project/loom/proto/flinkpb"
)

// Result is how a job ended.
type Result struct {
	JobID    string
	Name     string
	State    string // FINISHED, CANCELED or FAILED
	Duration time.Duration
	// Accumulators are the job's user accumulators, summed over its
	// subtasks (Flink's JobExecutionResult.getAccumulatorResult).
	Accumulators map[string]int64
	// Vertices are each vertex's counts, summed over its subtasks.
	Vertices []VertexCounts
}

// VertexCounts are what a vertex's subtasks read, wrote and dropped.
type VertexCounts struct {
	Name                  string
	RecordsIn, RecordsOut int64
	// LateRecordsDropped counts the records its windows dropped as late
	// (Flink's numLateRecordsDropped).
	LateRecordsDropped int64
	// UserMetrics are the metrics each subtask's functions registered,
	// by subtask index, as its last report had them.
	UserMetrics []map[string]float64
}

func vertexCounts(d *flinkpb.JobDetails) []VertexCounts {
	var out []VertexCounts
	for _, v := range d.Vertices {
		c := VertexCounts{Name: v.Name, UserMetrics: make([]map[string]float64, len(v.Subtasks))}
		for i, t := range v.Subtasks {
			if m := t.Metrics; m != nil {
				c.UserMetrics[i] = m.UserMetrics
				c.RecordsIn += m.RecordsIn
				c.RecordsOut += m.RecordsOut
				c.LateRecordsDropped += m.LateRecordsDropped
			}
		}
		out = append(out, c)
	}
	return out
}

// Execute runs the job until it ends. A failure returns the root cause; a
// canceled ctx cancels the job and returns task.ErrCanceled.
func Execute(ctx context.Context, sg *graph.StreamGraph, jg *flinkpb.JobGraph) (*Result, error) {
	res := &Result{Name: jg.Name}
	start := time.Now()
	dir, err := os.MkdirTemp("", "loom-minicluster-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// The cluster's processes are this one: a secret of its own, kept
	// in memory, is all they share.
	trust, err := auth.FromSecret(auth.NewSecret(), "")
	if err != nil {
		return nil, err
	}
	jm, err := jobmanager.New(jobmanager.Config{Addr: "127.0.0.1:0", Dir: dir, Local: true, Trust: trust})
	if err != nil {
		return nil, err
	}
	l := &launcher{job: &worker.Job{Graph: sg, Plan: jg, InProcess: true}}
	tm, err := taskmanager.New(taskmanager.Config{
		Addr: "127.0.0.1:0", JobManager: jm.Addr(), Slots: max(1, int(jg.Slots)), DataHost: "127.0.0.1",
		Dir: dir, ID: "minicluster", Launcher: l, Trust: trust,
	})
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Add(2)
	go func() { defer wg.Done(); _ = jm.Run(runCtx) }()
	go func() { defer wg.Done(); _ = tm.Run(runCtx) }()
	defer l.wait()

	resp, err := jm.SubmitJob(ctx, &flinkpb.SubmitJobRequest{JobGraph: jg})
	if err != nil {
		return nil, err
	}
	res.JobID = resp.JobId
	j, err := jm.Job(resp.JobId)
	if err != nil {
		return nil, err
	}
	canceled := false
	for {
		d := j.Details(false)
		if jobmanager.JobTerminal(d.State) {
			res.State, res.Duration = d.State, time.Since(start)
			res.Accumulators = jobmanager.Accumulators(d)
			res.Vertices = vertexCounts(d)
			switch {
			case d.State == jobmanager.JobFinished:
				return res, nil
			case d.State == jobmanager.JobCanceled || canceled:
				return res, task.ErrCanceled
			default:
				return res, errors.New(d.Failure)
			}
		}
		waitCtx := ctx
		if canceled {
			waitCtx = context.Background() // the job is stopping: wait for it
		}
		j.Wait(waitCtx, d.Version+1, time.Minute)
		if ctx.Err() != nil && !canceled {
			canceled = true
			j.Cancel("the program's context ended: " + context.Cause(ctx).Error())
		}
	}
}

// launcher runs the job's worker in this process.
type launcher struct {
	job *worker.Job
	wg  sync.WaitGroup
}

func (l *launcher) wait() { l.wg.Wait() }

// Launch implements taskmanager.Launcher.
func (l *launcher) Launch(_ context.Context, spec taskmanager.WorkerSpec) (taskmanager.Worker, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &inProcess{cancel: cancel, done: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(w.done)
		w.err = worker.Attach(ctx, spec.Trust, spec.TaskManager, spec.JobID, spec.DataHost, l.job, nil)
	}()
	return w, nil
}

type inProcess struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (w *inProcess) Done() <-chan struct{} { return w.done }
func (w *inProcess) Err() error            { return w.err }
func (w *inProcess) Kill()                 { w.cancel() }
