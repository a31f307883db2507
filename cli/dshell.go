package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/am/dshell"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

func dshellCommand() *cli.Command {
	return &cli.Command{
		Name:      "dshell",
		Usage:     "run a command in N containers (the distributed shell)",
		ArgsUsage: "-- CMD [ARGS...]",
		Flags: []cli.Flag{
			rmFlag, configFlag,
			&cli.BoolFlag{Name: "detached", Aliases: []string{"d"}, Usage: "print the application id and return"},
			&cli.IntFlag{Name: "num-containers", Value: 1, Usage: "containers to run the command in"},
			&cli.Int64Flag{Name: "memory-mb", Value: 128, Usage: "memory of each container"},
			&cli.IntFlag{Name: "vcores", Value: 1, Usage: "vcores of each container"},
			&cli.IntFlag{Name: "priority", Value: 0, Usage: "priority of the containers (and of the application)"},
			&cli.StringFlag{Name: "queue", Value: "default", Usage: "queue to submit to"},
			&cli.StringFlag{Name: "name", Usage: "application name"},
			&cli.Int64Flag{Name: "am-memory-mb", Value: 128, Usage: "memory of the AM container"},
			&cli.IntFlag{Name: "max-attempts", Value: 0, Usage: "AM attempts (0: the cluster's maximum)"},
		},
		Action: func(c *cli.Context) error {
			opts := dshell.Options{
				Name:          c.String("name"),
				Queue:         c.String("queue"),
				NumContainers: c.Int("num-containers"),
				MemoryMB:      c.Int64("memory-mb"),
				VCores:        int32(c.Int("vcores")),
				Priority:      int32(c.Int("priority")),
				AMMemoryMB:    c.Int64("am-memory-mb"),
				MaxAttempts:   int32(c.Int("max-attempts")),
				Command:       c.Args().Slice(),
			}
			if err := opts.Validate(); err != nil {
				return err
			}
			rm, err := rmClient(c)
			if err != nil {
				return err
			}
			defer rm.Close()
			id, err := dshell.Submit(c.Context, rm, opts)
			if err != nil {
				return err
			}
			out := stdout()
			if c.Bool("detached") {
				fmt.Fprintln(out, id)
				return nil
			}
			fmt.Fprintf(out, "Submitted application %s\n", id)
			r, err := waitApp(c.Context, rm, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Application %s finished: state %s, final status %s\n", id, yarnpb.StateName(r.State.String()), r.FinalStatus)
			if r.Diagnostics != "" {
				fmt.Fprintf(out, "Diagnostics: %s\n", r.Diagnostics)
			}
			if r.FinalStatus != yarnpb.FinalStatus_SUCCEEDED {
				return exitError{code: 2}
			}
			return nil
		},
	}
}

// waitApp waits for an application to end; Ctrl-C kills it.
func waitApp(ctx context.Context, rm *rmclient.Client, id string) (*yarnpb.ApplicationReport, error) {
	var last yarnpb.AppState = -1
	r, err := rm.WaitFinished(ctx, id, func(r *yarnpb.ApplicationReport) {
		if r.State != last {
			last = r.State
			fmt.Fprintf(stdout(), "Application %s is %s\n", id, yarnpb.StateName(r.State.String()))
		}
	})
	if err != nil && ctx.Err() != nil {
		kctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		fmt.Fprintf(os.Stderr, "interrupted: killing application %s\n", id)
		if _, kerr := rm.Kill(kctx, id, "Application killed by user (client interrupted)."); kerr != nil {
			return nil, fmt.Errorf("killing %s: %w", id, kerr)
		}
		return nil, exitError{code: 130}
	}
	return r, err
}

func dshellAMCommand() *cli.Command {
	return &cli.Command{
		Name:   "dshell-am",
		Usage:  "the distributed shell's ApplicationMaster (started by the cluster)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "num-containers", Value: 1},
			&cli.Int64Flag{Name: "memory-mb", Value: 128},
			&cli.IntFlag{Name: "vcores", Value: 1},
			&cli.IntFlag{Name: "priority", Value: 0},
			&cli.IntFlag{Name: "max-retries", Value: 10, Usage: "replacements for containers lost with their node"},
		},
		Action: func(c *cli.Context) error {
			return dshell.RunAM(c.Context, dshell.AMConfig{
				NumContainers: c.Int("num-containers"),
				MemoryMB:      c.Int64("memory-mb"),
				VCores:        int32(c.Int("vcores")),
				Priority:      int32(c.Int("priority")),
				MaxRetries:    c.Int("max-retries"),
				Command:       c.Args().Slice(),
			})
		},
	}
}
