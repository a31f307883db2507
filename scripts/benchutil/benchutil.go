// Package benchutil holds what the benchmark drivers under scripts/ share.
package benchutil

import (
	"context"
	"fmt"
	"time"

	"github.com/loom-project/loom/am/dshell"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

// UntilRunning submits a distributed shell of n sleeping containers and
// returns the time until all of them RUN; then it kills the application.
func UntilRunning(ctx context.Context, rm *rmclient.Client, bin string, n int, memoryMB int64) (time.Duration, error) {
	start := time.Now()
	id, err := dshell.Submit(ctx, rm, dshell.Options{NumContainers: n, MemoryMB: memoryMB, VCores: 1, Command: []string{"sleep", "600"}, LoomBinary: bin})
	if err != nil {
		return 0, err
	}
	defer func() { _, _ = rm.Kill(context.WithoutCancel(ctx), id, "measured") }()
	var index uint64
	for {
		r, idx, err := rm.WatchReport(ctx, id, true, index, 10*time.Second)
		if err != nil {
			return 0, err
		}
		index = idx
		running := 0
		for _, c := range r.Containers {
			if !c.IsAm && c.State == yarnpb.ContainerState_CONTAINER_RUNNING {
				running++
			}
		}
		if running >= n {
			return time.Since(start), nil
		}
		if r.State >= yarnpb.AppState_APP_FINISHED {
			return 0, fmt.Errorf("%s ended %s: %s", id, r.State, r.Diagnostics)
		}
	}
}
