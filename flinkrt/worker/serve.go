package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/network"
	"github.com/loom-project/loom/flinkrt/procstats"
	"github.com/loom-project/loom/flinkrt/task"
	"github.com/loom-project/loom/proto/flinkpb"
)

// Environment a TaskManager (or `loom run`) sets for a job program, which
// decides the role Execute plays.
const (
	// EnvRole is "plan" (write the JobGraph and exit) or "worker" (run
	// tasks for a TaskManager); unset, the program runs the job itself.
	EnvRole = "LOOM_FLINK_ROLE"
	// EnvPlanFile is where plan mode writes the JobGraph.
	EnvPlanFile = "LOOM_PLAN_FILE"
	// EnvTaskManager is the TaskManager's address, for a worker.
	EnvTaskManager = "LOOM_TASKMANAGER_ADDR"
	// EnvJobID is the job a worker runs.
	EnvJobID = "LOOM_JOB_ID"
	// EnvDataHost is the host a worker's data port is published on.
	EnvDataHost = "LOOM_DATA_HOST"
	// EnvConfig holds configuration given at run time (`loom run
	// --checkpoint-interval`, `-D key=value`): lines of key=value, Flink's
	// keys, which override the program's own settings.
	EnvConfig = "LOOM_JOB_CONFIG"
)

// Roles of a job program.
const (
	RolePlan   = "plan"
	RoleWorker = "worker"
)

// Serve is a job program in worker role: it opens its data port, attaches
// to its TaskManager, says which graph it built, and runs what the
// TaskManager deploys until the TaskManager lets it go. buildErr is why
// the program could not build its graph, reported instead.
func Serve(ctx context.Context, job *Job, buildErr error) error {
	tmAddr, jobID := os.Getenv(EnvTaskManager), os.Getenv(EnvJobID)
	if tmAddr == "" || jobID == "" {
		return fmt.Errorf("worker role needs %s and %s", EnvTaskManager, EnvJobID)
	}
	if os.Getenv("GOGC") == "" {
		// A worker moves records in bulk: collect garbage at 400% heap
		// growth rather than 100%, within the memory limit its TaskManager
		// sets (GOMEMLIMIT).
		debug.SetGCPercent(WorkerGCPercent)
	}
	trust, err := auth.FromEnv()
	if err != nil {
		return fmt.Errorf("a job worker: %w", err)
	}
	return Attach(ctx, trust, tmAddr, jobID, os.Getenv(EnvDataHost), job, buildErr)
}

// WorkerGCPercent is a worker's GOGC unless the environment sets one.
const WorkerGCPercent = 400

// Attach is Serve with its settings given: the deployment's trust, the
// TaskManager's address, the job's id and the host to publish the data
// port on.
func Attach(ctx context.Context, trust *auth.Trust, tmAddr, jobID, host string, job *Job, buildErr error) error {
	if host == "" {
		host = "127.0.0.1"
	}
	srv, err := network.Listen(net.JoinHostPort(listenHost(host), "0"), host, trust.ServerTLS(), trust.ClientTLS())
	if err != nil {
		return err
	}
	defer srv.Close()

	cc, err := grpc.NewClient(tmAddr, trust.DialOptions()...)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := flinkpb.NewTaskExecutorClient(cc).AttachWorker(ctx)
	if err != nil {
		return fmt.Errorf("attaching to the TaskManager at %s: %w", tmAddr, err)
	}
	hello := &flinkpb.WorkerHello{JobId: jobID, DataAddress: srv.Addr(), Pid: int32(os.Getpid())}
	if buildErr != nil {
		hello.Error = buildErr.Error()
	} else {
		hello.Fingerprint = job.Plan.Fingerprint
	}
	var sendMu sync.Mutex
	send := func(m *flinkpb.WorkerMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	if err := send(&flinkpb.WorkerMessage{Msg: &flinkpb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		return fmt.Errorf("attaching to the TaskManager at %s: %w", tmAddr, err)
	}
	if buildErr != nil {
		_ = stream.CloseSend()
		return buildErr
	}

	// The running subtasks' counts go to the TaskManager every second.
	running := NewLive()
	go func() {
		t := time.NewTicker(metricsInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			_ = send(&flinkpb.WorkerMessage{Msg: &flinkpb.WorkerMessage_Metrics{Metrics: &flinkpb.WorkerMetrics{Subtasks: running.Metrics(), Stats: procstats.Read()}}})
		}
	}()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		runs = map[*run]bool{} // the deployments running
		// live is the running instance of each subtask, by vertex and
		// index: a later deployment of the subtask stops it and waits.
		live = map[[2]int]*instance{}
	)
	sampling := make(chan struct{}, 1)
	defer wg.Wait()
	defer cancel()
	for {
		cmd, err := stream.Recv()
		if err != nil {
			// The TaskManager let the worker go, or is gone: stop.
			return nil
		}
		switch c := cmd.Cmd.(type) {
		case *flinkpb.WorkerCommand_Deploy:
			d, err := deploymentOf(c.Deploy)
			if err != nil {
				return err
			}
			d.Checkpoints = NewCheckpoints(func(a *flinkpb.CheckpointAck) {
				_ = send(&flinkpb.WorkerMessage{Msg: &flinkpb.WorkerMessage_Ack{Ack: a}})
			})
			d.Stops = NewStops()
			d.Live = running
			runCtx, stop := context.WithCancel(ctx)
			r := &run{floor: c.Deploy.MinCheckpointId, cps: d.Checkpoints, stops: d.Stops, tasks: map[execution]bool{}}
			mine := map[[2]int]*instance{}
			var prev []*instance
			mu.Lock()
			for _, id := range d.Tasks {
				k := [2]int{id.Vertex, id.Index}
				if p := live[k]; p != nil {
					prev = append(prev, p)
				}
				in := &instance{run: r, id: id, done: make(chan struct{})}
				live[k], mine[k] = in, in
				r.tasks[id.execution()] = true
			}
			runs[r] = true
			mu.Unlock()
			// end marks subtask k of this deployment stopped, once.
			end := func(k [2]int) {
				mu.Lock()
				defer mu.Unlock()
				in := mine[k]
				if in == nil {
					return
				}
				delete(mine, k)
				if live[k] == in {
					delete(live, k)
				}
				close(in.done)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					for _, id := range d.Tasks {
						end([2]int{id.Vertex, id.Index})
					}
					mu.Lock()
					delete(runs, r)
					mu.Unlock()
				}()
				defer stop()
				// A restart's deployment waits for the earlier instances of
				// its subtasks to have stopped.
				for _, p := range prev {
					p.run.stops.Stop(p.id)
					<-p.done
				}
				var failed atomic.Bool // a task reported FAILED
				report := func(u Update) {
					m := &flinkpb.TaskStateUpdate{Vertex: int32(u.Subtask.Vertex), Subtask: int32(u.Subtask.Index), Attempt: int32(u.Subtask.Attempt), State: u.State, Metrics: u.IO}
					if u.Err != nil {
						m.Failure = u.Err.Error()
						failed.Store(true)
					}
					_ = send(&flinkpb.WorkerMessage{Msg: &flinkpb.WorkerMessage_Update{Update: m}})
					if u.State == StateFinished || u.State == StateCanceled || u.State == StateFailed {
						end([2]int{u.Subtask.Vertex, u.Subtask.Index})
					}
				}
				err := RunDeployment(runCtx, job, d, srv, report)
				if err != nil && !errors.Is(err, task.ErrCanceled) && !failed.Load() {
					// An error before any task ran fails them all.
					for _, id := range d.Tasks {
						report(Update{Subtask: id, State: StateFailed, Err: err})
					}
				}
			}()
		case *flinkpb.WorkerCommand_Cancel:
			mu.Lock()
			for r := range runs {
				for _, t := range c.Cancel.Tasks {
					if id := (Subtask{Vertex: int(t.Vertex), Index: int(t.Subtask), Attempt: int(t.Attempt)}); r.tasks[id.execution()] {
						r.stops.Stop(id)
					}
				}
			}
			mu.Unlock()
		case *flinkpb.WorkerCommand_Trigger:
			for _, r := range liveRuns(&mu, runs) {
				if c.Trigger.CheckpointId >= r.floor {
					r.cps.Trigger(c.Trigger)
				}
			}
		case *flinkpb.WorkerCommand_Notify:
			for _, r := range liveRuns(&mu, runs) {
				if c.Notify.CheckpointId >= r.floor {
					r.cps.Notify(c.Notify.CheckpointId)
				}
			}
		case *flinkpb.WorkerCommand_Dump:
			if s := c.Dump.Sample; s != nil {
				// A sample takes seconds: it runs beside the commands, one
				// at a time; another asked for meanwhile answers empty.
				select {
				case sampling <- struct{}{}:
				default:
					_ = send(&flinkpb.WorkerMessage{Msg: &flinkpb.WorkerMessage_Dump{Dump: &flinkpb.WorkerDump{Id: c.Dump.Id, Sample: &flinkpb.SampleTasksResponse{}}}})
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sampling }()
					resp := procstats.SampleTasks(ctx, hello.GetJobId(), int(s.Vertex), s.Subtasks, int(s.Samples), time.Duration(s.DelayMs)*time.Millisecond, int(s.MaxDepth))
					_ = send(&flinkpb.WorkerMessage{Msg: &flinkpb.WorkerMessage_Dump{Dump: &flinkpb.WorkerDump{Id: c.Dump.Id, Sample: resp}}})
				}()
				continue
			}
			_ = send(&flinkpb.WorkerMessage{Msg: &flinkpb.WorkerMessage_Dump{Dump: &flinkpb.WorkerDump{
				Id: c.Dump.Id, Dump: procstats.Dump("worker of job " + hello.GetJobId()),
			}}})
		}
	}
}

// run is a deployment a worker runs.
type run struct {
	// floor is the first checkpoint the deployment takes part in.
	floor int64
	cps   *Checkpoints
	stops *Stops
	tasks map[execution]bool
}

// instance is a subtask as one deployment runs it.
type instance struct {
	run  *run
	id   Subtask
	done chan struct{} // closed once it stopped
}

func liveRuns(mu *sync.Mutex, runs map[*run]bool) []*run {
	mu.Lock()
	defer mu.Unlock()
	out := make([]*run, 0, len(runs))
	for r := range runs {
		out = append(out, r)
	}
	return out
}

// listenHost is the address a worker listens on for a published host:
// loopback stays loopback, any other host listens everywhere.
func listenHost(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		return host
	}
	return ""
}

func deploymentOf(r *flinkpb.SubmitTasksRequest) (Deployment, error) {
	d := Deployment{JobID: r.JobId, Checkpointing: r.Checkpointing}
	if rs := r.Restore; rs != nil {
		d.Restore = map[[2]int]*flinkpb.SubtaskState{}
		for _, st := range rs.Subtasks {
			d.Restore[[2]int{int(st.Vertex), int(st.Subtask)}] = st
		}
	}
	for _, t := range r.Tasks {
		d.Tasks = append(d.Tasks, Subtask{Vertex: int(t.Vertex), Index: int(t.Subtask), Attempt: int(t.Attempt), Region: int(t.Region)})
	}
	for _, l := range r.Locations {
		d.Locations = append(d.Locations, l.Addresses)
	}
	if len(d.Tasks) == 0 {
		return d, errors.New("a deployment without tasks")
	}
	return d, nil
}
