package stream

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/flinkrt/minicluster"
	"github.com/loom-project/loom/flinkrt/worker"
)

// confSavepointPath is the state a job starts from (`loom run -s`).
const confSavepointPath = "execution.savepoint.path"

// JobResult is how an executed job ended.
type JobResult = minicluster.Result

// Execute runs the job named name and returns when it ends. Started
// directly, the program runs the job in-process; Ctrl-C cancels it, and
// so does a reader of its output that goes away (`| head`): the job ends
// canceled and leaves nothing behind.
//
// Started by `loom run` (plan role) or by a TaskManager (worker role),
// Execute does that role's work and exits the program: code after Execute
// runs only in a direct start.
func (e *Env) Execute(name string) (*JobResult, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	defer stop()
	return e.ExecuteContext(ctx, name)
}

// ExecuteContext is Execute, canceled with ctx.
func (e *Env) ExecuteContext(ctx context.Context, name string) (*JobResult, error) {
	sg, jg, err := e.Plan(name)
	if err == nil && !hasSink(e) {
		err = errNoSink
	}
	role := os.Getenv(worker.EnvRole)
	if err == nil && role != worker.RoleWorker {
		// Where the sinks write is checked once, before the job starts;
		// a worker's restart finds the job's own files there.
		restoring := strings.TrimSpace(sg.Config[confSavepointPath]) != ""
		for _, c := range e.outputs {
			if err = c.CheckOutput(restoring); err != nil {
				break
			}
		}
	}
	switch role {
	case worker.RolePlan:
		os.Exit(writePlan(name, err, func() ([]byte, error) { return proto.Marshal(jg) }))
	case worker.RoleWorker:
		if err := worker.Serve(ctx, &worker.Job{Graph: sg, Plan: jg}, err); err != nil {
			fmt.Fprintf(os.Stderr, "job %q: worker: %v\n", name, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if err != nil {
		return nil, err
	}
	return minicluster.Execute(ctx, sg, jg)
}

func hasSink(e *Env) bool {
	for _, n := range e.sg.Nodes {
		if n.Out == nil {
			return true
		}
	}
	return false
}

// writePlan writes the JobGraph where `loom run` asked for it and returns
// the program's exit code.
func writePlan(name string, err error, marshal func() ([]byte, error)) int {
	if err != nil {
		fmt.Fprintf(os.Stderr, "job %q: %v\n", name, err)
		return 1
	}
	b, err := marshal()
	if err == nil {
		err = os.WriteFile(os.Getenv(worker.EnvPlanFile), b, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "job %q: writing the job graph: %v\n", name, err)
		return 1
	}
	return 0
}
