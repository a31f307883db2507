package taskmanager

import (
	"context"
	"sort"
	"sync/atomic"
	"time"

	"github.com/loom-project/loom/flinkrt/procstats"
	"github.com/loom-project/loom/proto/flinkpb"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// workerDumpTimeout is how long a thread dump waits for the workers.
	workerDumpTimeout = 3 * time.Second
	// maxDumpBytes bounds a thread dump's answer, under gRPC's 4 MiB.
	maxDumpBytes = 3 << 20
)

var dumpIDs atomic.Uint64

// ThreadDump implements flinkpb.TaskExecutorServer: this process's
// goroutines and each attached worker's, asked for at once.
func (tm *TaskManager) ThreadDump(ctx context.Context, _ *flinkpb.ThreadDumpRequest) (*flinkpb.ThreadDumpResponse, error) {
	tm.mu.Lock()
	jobs := make([]*job, 0, len(tm.jobs))
	for _, j := range tm.jobs {
		jobs = append(jobs, j)
	}
	tm.mu.Unlock()
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].id < jobs[b].id })
	resp := &flinkpb.ThreadDumpResponse{Processes: []*flinkpb.ProcessDump{procstats.Dump("taskmanager " + tm.id)}}
	replies := make([]chan *flinkpb.WorkerDump, len(jobs))
	for i, j := range jobs {
		replies[i] = j.askDump(nil)
	}
	ctx, cancel := context.WithTimeout(ctx, workerDumpTimeout)
	defer cancel()
	size := len(resp.Processes[0].Goroutines)
	for i, ch := range replies {
		if ch == nil {
			continue
		}
		select {
		case wd := <-ch:
			d := wd.Dump
			if d == nil {
				d = &flinkpb.ProcessDump{Name: "worker of job " + jobs[i].id}
			}
			if size += len(d.Goroutines); size > maxDumpBytes {
				d.Goroutines, d.Truncated = "(left out: the dump is over its size limit)\n", true
			}
			resp.Processes = append(resp.Processes, d)
		case <-ctx.Done():
			resp.Processes = append(resp.Processes, &flinkpb.ProcessDump{Name: "worker of job " + jobs[i].id, Goroutines: "(the worker did not answer within " + workerDumpTimeout.String() + ")\n"})
		}
		jobs[i].dropDump(ch)
	}
	return resp, nil
}

// SampleTasks implements flinkpb.TaskExecutorServer: the job's worker
// samples its tasks' stacks.
func (tm *TaskManager) SampleTasks(ctx context.Context, req *flinkpb.SampleTasksRequest) (*flinkpb.SampleTasksResponse, error) {
	switch {
	case req.Samples < 1 || req.Samples > procstats.MaxSamples || req.DelayMs < 0 || req.DelayMs > 10_000 || req.MaxDepth < 1 || req.MaxDepth > procstats.MaxDepth:
		return nil, status.Errorf(codes.InvalidArgument, "a sample is 1 to %d samples 0 to 10000 ms apart of 1 to %d frames", procstats.MaxSamples, procstats.MaxDepth)
	case len(req.Subtasks) > maxSampledSubtasks:
		return nil, status.Errorf(codes.InvalidArgument, "at most %d subtasks a sample", maxSampledSubtasks)
	}
	j := tm.job(req.JobId)
	if j == nil {
		return nil, status.Errorf(codes.NotFound, "TaskManager %s runs no job %s", tm.id, req.JobId)
	}
	ch := j.askDump(req)
	if ch == nil {
		return nil, status.Errorf(codes.Unavailable, "job %s has no worker on TaskManager %s", req.JobId, tm.id)
	}
	defer j.dropDump(ch)
	wait := time.Duration(req.Samples)*time.Duration(req.DelayMs)*time.Millisecond + workerDumpTimeout
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	select {
	case d := <-ch:
		if d.Sample == nil {
			return nil, status.Errorf(codes.Internal, "the worker of job %s sent no sample", req.JobId)
		}
		return d.Sample, nil
	case <-ctx.Done():
		return nil, status.Errorf(codes.DeadlineExceeded, "the worker of job %s did not answer within %s", req.JobId, wait)
	}
}

// maxSampledSubtasks bounds the subtasks one sample names.
const maxSampledSubtasks = 1 << 15

// askDump asks the job's worker for its goroutines, or with sample set
// for a sample of its tasks' stacks; the answer comes on the channel,
// which is nil when no worker is attached.
func (j *job) askDump(sample *flinkpb.SampleTasksRequest) chan *flinkpb.WorkerDump {
	id := dumpIDs.Add(1)
	ch := make(chan *flinkpb.WorkerDump, 1)
	j.mu.Lock()
	if j.dumps == nil {
		j.dumps = map[uint64]chan *flinkpb.WorkerDump{}
	}
	j.dumps[id] = ch
	j.mu.Unlock()
	if err := j.command(&flinkpb.WorkerCommand{Cmd: &flinkpb.WorkerCommand_Dump{Dump: &flinkpb.WorkerDumpRequest{Id: id, Sample: sample}}}); err != nil {
		j.dropDump(ch)
		return nil
	}
	return ch
}

// gotDump hands a worker's answer to whoever asked for it.
func (j *job) gotDump(d *flinkpb.WorkerDump) {
	j.mu.Lock()
	ch := j.dumps[d.Id]
	j.mu.Unlock()
	if ch != nil {
		select {
		case ch <- d:
		default:
		}
	}
}

// dropDump forgets a request, answered or not.
func (j *job) dropDump(ch chan *flinkpb.WorkerDump) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for id, c := range j.dumps {
		if c == ch {
			delete(j.dumps, id)
		}
	}
}
