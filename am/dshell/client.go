package dshell

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

// Options describe a distributed shell submission.
type Options struct {
	Name          string
	Queue         string
	NumContainers int
	MemoryMB      int64
	VCores        int32
	Priority      int32
	AMMemoryMB    int64
	MaxAttempts   int32
	Command       []string
	// LoomBinary is the loom executable the AM container runs; it must be
	// at this path on every node (it is the binary itself on one host).
	LoomBinary string
}

// Validate checks the options before anything is sent.
func (o *Options) Validate() error {
	switch {
	case len(o.Command) == 0 || o.Command[0] == "":
		return errdefs.InvalidArgument("no command given; put it after --, as in: loom dshell --num-containers 2 --memory-mb 64 -- echo hello")
	case o.NumContainers < 1:
		return errdefs.InvalidArgument("--num-containers must be at least 1, got %d", o.NumContainers)
	case o.MemoryMB <= 0:
		return errdefs.InvalidArgument("--memory-mb must be positive, got %d", o.MemoryMB)
	case o.VCores <= 0:
		return errdefs.InvalidArgument("--vcores must be positive, got %d", o.VCores)
	}
	return nil
}

// Submit submits a distributed shell application and returns its id.
func Submit(ctx context.Context, rm *rmclient.Client, o Options) (string, error) {
	if err := o.Validate(); err != nil {
		return "", err
	}
	app, err := rm.NewApplication(ctx)
	if err != nil {
		return "", err
	}
	if max := app.MaxCapability; max != nil {
		if o.MemoryMB > max.MemoryMb {
			return "", errdefs.InvalidArgument("--memory-mb %d exceeds the cluster's maximum allocation of %d MB; ask for less", o.MemoryMB, max.MemoryMb)
		}
		if o.VCores > max.Vcores {
			return "", errdefs.InvalidArgument("--vcores %d exceeds the cluster's maximum allocation of %d vcores; ask for fewer", o.VCores, max.Vcores)
		}
	}
	bin := o.LoomBinary
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return "", fmt.Errorf("finding the loom binary: %w", err)
		}
	}
	cmd := []string{bin, "dshell-am",
		"--num-containers", strconv.Itoa(o.NumContainers),
		"--memory-mb", strconv.FormatInt(o.MemoryMB, 10),
		"--vcores", strconv.Itoa(int(o.VCores)),
		"--priority", strconv.Itoa(int(o.Priority)),
		"--"}
	cmd = append(cmd, o.Command...)
	name := o.Name
	if name == "" {
		name = "dshell: " + strings.Join(o.Command, " ")
		if len(name) > 80 {
			name = name[:77] + "..."
		}
	}
	amMem := o.AMMemoryMB
	if amMem == 0 {
		amMem = 128
	}
	err = rm.Submit(ctx, &yarnpb.ApplicationSubmissionContext{
		ApplicationId: app.ApplicationId,
		Name:          name,
		Queue:         o.Queue,
		Type:          "DSHELL",
		User:          rm.User(),
		Priority:      o.Priority,
		MaxAttempts:   o.MaxAttempts,
		AmResource:    &yarnpb.Resource{MemoryMb: amMem, Vcores: 1},
		AmContainer:   &yarnpb.ContainerLaunchContext{Command: cmd},
	})
	if err != nil {
		return "", err
	}
	return app.ApplicationId, nil
}
