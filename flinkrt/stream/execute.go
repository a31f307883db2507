package stream

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"loom/flinkrt/minicluster"
)

// JobResult is how an executed job ended.
type JobResult = minicluster.Result

// Execute runs the job named name and returns when it ends. Started
// directly, the program runs the job in-process; Ctrl-C cancels it.
func (e *Env) Execute(name string) (*JobResult, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return e.ExecuteContext(ctx, name)
}

// ExecuteContext is Execute, canceled with ctx.
func (e *Env) ExecuteContext(ctx context.Context, name string) (*JobResult, error) {
	sg, jg, err := e.Plan(name)
	if err != nil {
		return nil, err
	}
	sinks := 0
	for _, n := range sg.Nodes {
		if n.Out == nil {
			sinks++
		}
	}
	if sinks == 0 {
		return nil, errNoSink
	}
	return minicluster.Execute(ctx, sg, jg)
}
