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

	"google.golang.org/grpc"

	"loom/flinkrt/network"
	"loom/flinkrt/task"
	"loom/proto/flinkpb"
	"loom/rpc"
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
	return Attach(ctx, tmAddr, jobID, os.Getenv(EnvDataHost), job, buildErr)
}

// WorkerGCPercent is a worker's GOGC unless the environment sets one.
const WorkerGCPercent = 400

// Attach is Serve with its settings given: the TaskManager's address, the
// job's id and the host to publish the data port on.
func Attach(ctx context.Context, tmAddr, jobID, host string, job *Job, buildErr error) error {
	if host == "" {
		host = "127.0.0.1"
	}
	srv, err := network.Listen(net.JoinHostPort(listenHost(host), "0"), host)
	if err != nil {
		return err
	}
	defer srv.Close()

	cc, err := grpc.NewClient(tmAddr, rpc.DialOptions()...)
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

	var (
		wg      sync.WaitGroup
		runMu   sync.Mutex
		current *run // the deployment running, if any
	)
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
			runCtx, stop := context.WithCancel(ctx)
			r := &run{attempt: d.Attempt, stop: stop, cps: d.Checkpoints, done: make(chan struct{})}
			runMu.Lock()
			prev := current
			current = r
			runMu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(r.done)
				defer stop()
				if prev != nil {
					// A restart's deployment waits for the attempt before it
					// to have stopped.
					prev.stop()
					<-prev.done
				}
				var failed atomic.Bool // a task reported FAILED
				report := func(u Update) {
					m := &flinkpb.TaskStateUpdate{Vertex: int32(u.Subtask.Vertex), Subtask: int32(u.Subtask.Index), Attempt: int32(u.Subtask.Attempt), State: u.State}
					if u.Err != nil {
						m.Failure = u.Err.Error()
						failed.Store(true)
					}
					_ = send(&flinkpb.WorkerMessage{Msg: &flinkpb.WorkerMessage_Update{Update: m}})
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
			runMu.Lock()
			if current != nil && current.attempt == int(c.Cancel.Attempt) {
				current.stop()
			}
			runMu.Unlock()
		case *flinkpb.WorkerCommand_Trigger:
			runMu.Lock()
			r := current
			runMu.Unlock()
			if r != nil && r.attempt == int(c.Trigger.Attempt) {
				r.cps.Trigger(c.Trigger)
			}
		case *flinkpb.WorkerCommand_Notify:
			runMu.Lock()
			r := current
			runMu.Unlock()
			if r != nil && r.attempt == int(c.Notify.Attempt) {
				r.cps.Notify(c.Notify.CheckpointId)
			}
		}
	}
}

// run is a deployment a worker runs.
type run struct {
	attempt int
	stop    context.CancelFunc
	cps     *Checkpoints
	done    chan struct{}
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
	d := Deployment{JobID: r.JobId, Attempt: int(r.Attempt), Checkpointing: r.Checkpointing}
	if rs := r.Restore; rs != nil {
		d.Restore = map[[2]int]map[string]string{}
		for _, st := range rs.Subtasks {
			d.Restore[[2]int{int(st.Vertex), int(st.Subtask)}] = st.Files
		}
	}
	for _, t := range r.Tasks {
		d.Tasks = append(d.Tasks, Subtask{Vertex: int(t.Vertex), Index: int(t.Subtask), Attempt: int(t.Attempt)})
	}
	for _, l := range r.Locations {
		d.Locations = append(d.Locations, l.Addresses)
	}
	if len(d.Tasks) == 0 {
		return d, errors.New("a deployment without tasks")
	}
	return d, nil
}
