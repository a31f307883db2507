package taskmanager

import (
	"context"
	"sort"
	"sync/atomic"
	"time"

	"loom/flinkrt/procstats"
	"loom/proto/flinkpb"
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
	replies := make([]chan *flinkpb.ProcessDump, len(jobs))
	for i, j := range jobs {
		replies[i] = j.askDump()
	}
	ctx, cancel := context.WithTimeout(ctx, workerDumpTimeout)
	defer cancel()
	size := len(resp.Processes[0].Goroutines)
	for i, ch := range replies {
		if ch == nil {
			continue
		}
		select {
		case d := <-ch:
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

// askDump asks the job's worker for its goroutines; the answer comes on
// the channel, which is nil when no worker is attached.
func (j *job) askDump() chan *flinkpb.ProcessDump {
	id := dumpIDs.Add(1)
	ch := make(chan *flinkpb.ProcessDump, 1)
	j.mu.Lock()
	if j.dumps == nil {
		j.dumps = map[uint64]chan *flinkpb.ProcessDump{}
	}
	j.dumps[id] = ch
	j.mu.Unlock()
	if err := j.command(&flinkpb.WorkerCommand{Cmd: &flinkpb.WorkerCommand_Dump{Dump: &flinkpb.WorkerDumpRequest{Id: id}}}); err != nil {
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
	if ch != nil && d.Dump != nil {
		select {
		case ch <- d.Dump:
		default:
		}
	}
}

// dropDump forgets a request, answered or not.
func (j *job) dropDump(ch chan *flinkpb.ProcessDump) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for id, c := range j.dumps {
		if c == ch {
			delete(j.dumps, id)
		}
	}
}
