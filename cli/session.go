package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/am/flink"
	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

func sessionCommand() *cli.Command {
	d := flink.DefaultSessionOptions
	return &cli.Command{
		Name:  "session",
		Usage: "start, list and stop session clusters: long-lived JobManagers that many jobs share",
		Subcommands: []*cli.Command{
			{
				Name:  "start",
				Usage: "start a session cluster (attached it runs until Ctrl-C; -d prints its id and web address)",
				Flags: []cli.Flag{
					rmFlag, configFlag,
					&cli.BoolFlag{Name: "detached", Aliases: []string{"d"}, Usage: "print the application id and the web address and return"},
					&cli.StringFlag{Name: "name", Usage: "application name", Value: "Flink session cluster"},
					&cli.StringFlag{Name: "queue", Value: "default", Usage: "queue to submit to"},
					&cli.IntFlag{Name: "slots-per-tm", Value: d.SlotsPerTM, Usage: "slots of each TaskManager"},
					&cli.Int64Flag{Name: "tm-memory-mb", Value: d.TMMemoryMB, Usage: "memory of each TaskManager container, MB"},
					&cli.IntFlag{Name: "tm-vcores", Value: int(d.TMVCores), Usage: "vcores of each TaskManager container"},
					&cli.Int64Flag{Name: "jm-memory-mb", Value: d.JMMemoryMB, Usage: "memory of the JobManager (AM) container, MB"},
					&cli.DurationFlag{Name: "idle-timeout", Value: d.IdleTimeout, Usage: "return TaskManagers with no job for this long (0: keep them)"},
					&cli.IntFlag{Name: "max-slots", Usage: "the most slots the session's TaskManagers may have together (0: no cap)"},
					&cli.IntFlag{Name: "max-failed-containers", Value: d.MaxFailedContainers, Usage: "TaskManager containers that may fail within --failure-interval before the session fails"},
					&cli.DurationFlag{Name: "failure-interval", Value: d.FailureInterval, Usage: "the window --max-failed-containers counts in"},
					&cli.IntFlag{Name: "max-attempts", Usage: "AM attempts (0: the cluster's maximum)"},
					&cli.StringFlag{Name: "web-dir", Usage: "a dashboard build (Flink's web-dashboard/web) the session's JobManager serves at its web address"},
					spreadFlag, tmLabelFlag,
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return fmt.Errorf("unexpected argument %q; see `loom session start --help`", c.Args().First())
					}
					o := flink.SessionOptions{
						Options: flink.Options{
							Name: c.String("name"), Queue: c.String("queue"), SlotsPerTM: c.Int("slots-per-tm"),
							TMMemoryMB: c.Int64("tm-memory-mb"), TMVCores: int32(c.Int("tm-vcores")), JMMemoryMB: c.Int64("jm-memory-mb"),
							MaxFailedContainers: c.Int("max-failed-containers"), FailureInterval: c.Duration("failure-interval"), MaxAttempts: int32(c.Int("max-attempts")),
							WebDir: c.String("web-dir"), SpreadTaskManagers: c.Bool("spread-taskmanagers"), TMNodeLabel: c.String("tm-node-label"),
						},
						IdleTimeout: c.Duration("idle-timeout"), MaxSlots: c.Int("max-slots"),
					}
					return withRM(c, func(rm *rmclient.Client) error {
						id, err := flink.StartSession(c.Context, rm, o)
						if err != nil {
							return err
						}
						a, err := waitForJobManager(c, rm, id)
						if err != nil {
							return err
						}
						fmt.Printf("Session %s started\nJobManager web interface: %s\n", id, a.TrackingUrl)
						if c.Bool("detached") {
							return nil
						}
						fmt.Printf("Submit jobs with `loom run -t session ARTIFACT`; Ctrl-C stops the session.\n")
						if a, err := rm.WaitFinished(c.Context, id, nil); err == nil {
							fmt.Printf("Session %s ended: %s (%s) %s\n", id, yarnpb.StateName(a.State.String()), a.FinalStatus, a.Diagnostics)
							return exitError{code: 1}
						}
						ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
						defer cancel()
						return stopSession(ctx, rm, id)
					})
				},
			},
			{
				Name:  "list",
				Usage: "list running session clusters",
				Flags: []cli.Flag{rmFlag, configFlag, outputFlag, &cli.BoolFlag{Name: "all-users", Usage: "include other users' sessions"}},
				Action: func(c *cli.Context) error {
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					return withRM(c, func(rm *rmclient.Client) error {
						sessions, err := flink.Sessions(c.Context, rm, c.Bool("all-users"))
						if err != nil {
							return err
						}
						if asJSON {
							out := []yarnpb.AppJSON{}
							for _, a := range sessions {
								out = append(out, yarnpb.AppToJSON(a))
							}
							return printJSON(stdout(), out)
						}
						var rows [][]string
						for _, a := range sessions {
							rows = append(rows, []string{a.Id, a.Name, a.User, a.Queue, yarnpb.StateName(a.State.String()), fmtTime(a.StartTime), a.TrackingUrl})
						}
						table(stdout(), "Application-Id\tName\tUser\tQueue\tState\tStarted\tTracking-URL", rows)
						return nil
					})
				},
			},
			{
				Name:      "stop",
				Usage:     "stop a session cluster: its jobs canceled, its containers released",
				ArgsUsage: "APP",
				Flags:     []cli.Flag{rmFlag, configFlag},
				Action: func(c *cli.Context) error {
					id, err := appArg(c)
					if err != nil {
						return err
					}
					return withRM(c, func(rm *rmclient.Client) error { return stopSession(c.Context, rm, id) })
				},
			},
		},
	}
}

func stopSession(ctx context.Context, rm *rmclient.Client, id string) error {
	fmt.Printf("Stopping session %s\n", id)
	a, err := flink.StopSession(ctx, rm, id)
	if err != nil {
		return err
	}
	fmt.Printf("Session %s %s (%s)\n", id, yarnpb.StateName(a.State.String()), a.FinalStatus)
	return nil
}

// sessionJobManager finds the JobManager of the session `run -t session`
// submits to, and the trust that reaches it as the client config's user.
func sessionJobManager(c *cli.Context) (string, *auth.Trust, error) {
	var addr string
	var trust *auth.Trust
	err := withRM(c, func(rm *rmclient.Client) error {
		a, err := flink.FindSession(c.Context, rm, c.String("session"))
		if err != nil {
			return err
		}
		trust = auth.ForUser(rm.TLS(), a.Id)
		addr, err = flink.JobManagerAddr(a)
		return err
	})
	return addr, trust, err
}
