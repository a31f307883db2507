package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/am/flink"
	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/flinkrt/client"
	"github.com/loom-project/loom/nm/nmclient"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

func appCommand() *cli.Command {
	return &cli.Command{
		Name:    "app",
		Aliases: []string{"application"},
		Usage:   "inspect, move and kill applications",
		Subcommands: []*cli.Command{
			topCommand(),
			{
				Name:  "list",
				Usage: "list applications (running and waiting; --all adds finished ones)",
				Flags: []cli.Flag{rmFlag, configFlag, outputFlag, &cli.BoolFlag{Name: "all", Usage: "include finished applications"}},
				Action: func(c *cli.Context) error {
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					return withRM(c, func(rm *rmclient.Client) error {
						apps, err := rm.ListApps(c.Context, c.Bool("all"))
						if err != nil {
							return err
						}
						if asJSON {
							out := []yarnpb.AppJSON{}
							for _, a := range apps {
								out = append(out, yarnpb.AppToJSON(a))
							}
							return printJSON(stdout(), out)
						}
						fmt.Fprintf(stdout(), "Total number of applications: %d\n", len(apps))
						var rows [][]string
						for _, a := range apps {
							rows = append(rows, []string{a.Id, a.Name, a.Type, a.User, a.Queue, yarnpb.StateName(a.State.String()),
								a.FinalStatus.String(), fmt.Sprintf("%.0f%%", a.Progress*100), a.TrackingUrl})
						}
						table(stdout(), "Application-Id\tName\tType\tUser\tQueue\tState\tFinal-Status\tProgress\tTracking-URL", rows)
						return nil
					})
				},
			},
			{
				Name:      "status",
				Usage:     "show an application, its attempts and containers",
				ArgsUsage: "APP",
				Flags:     []cli.Flag{rmFlag, configFlag, outputFlag},
				Action: func(c *cli.Context) error {
					id, err := appArg(c)
					if err != nil {
						return err
					}
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					return withRM(c, func(rm *rmclient.Client) error {
						a, err := rm.Report(c.Context, id, true)
						if err != nil {
							return err
						}
						if asJSON {
							return printJSON(stdout(), yarnpb.AppToJSON(a))
						}
						printApp(stdout(), a)
						printFlinkJobs(c.Context, stdout(), rm, a)
						return nil
					})
				},
			},
			{
				Name:      "kill",
				Usage:     "kill an application and every one of its containers",
				ArgsUsage: "APP",
				Flags:     []cli.Flag{rmFlag, configFlag},
				Action: func(c *cli.Context) error {
					id, err := appArg(c)
					if err != nil {
						return err
					}
					return withRM(c, func(rm *rmclient.Client) error {
						fmt.Fprintf(stdout(), "Killing application %s\n", id)
						already, err := rm.Kill(c.Context, id, "")
						if err != nil {
							return err
						}
						if already {
							fmt.Fprintf(stdout(), "Application %s has already finished\n", id)
							return nil
						}
						fmt.Fprintf(stdout(), "Killed application %s\n", id)
						return nil
					})
				},
			},
			{
				Name:      "move",
				Usage:     "move a live application to another leaf queue (its owner or an administrator of its queue)",
				ArgsUsage: "APP",
				Flags: []cli.Flag{rmFlag, configFlag,
					&cli.StringFlag{Name: "queue", Aliases: []string{"q"}, Required: true, Usage: "the target leaf queue (`loom queue list`)"},
				},
				Action: func(c *cli.Context) error {
					id, err := appArg(c)
					if err != nil {
						return err
					}
					return withRM(c, func(rm *rmclient.Client) error {
						if err := rm.Move(c.Context, id, c.String("queue")); err != nil {
							return err
						}
						fmt.Fprintf(stdout(), "Moved application %s to queue %s\n", id, c.String("queue"))
						return nil
					})
				},
			},
			{
				Name:      "logs",
				Usage:     "print the logs of an application's containers",
				ArgsUsage: "APP",
				Flags: []cli.Flag{rmFlag, configFlag,
					&cli.StringFlag{Name: "container", Usage: "only this container"},
					&cli.StringFlag{Name: "log-files", Value: "stdout,stderr", Usage: "comma-separated log names"},
					&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "follow one container's logs (--container, else the AM's) as it writes them, until it completes"},
				},
				Action: func(c *cli.Context) error {
					id, err := appArg(c)
					if err != nil {
						return err
					}
					return withRM(c, func(rm *rmclient.Client) error {
						a, err := rm.Report(c.Context, id, true)
						if err != nil {
							return err
						}
						names := strings.Split(c.String("log-files"), ",")
						if c.Bool("follow") {
							return followLogs(c.Context, rm, a, c.String("container"), names)
						}
						return printLogs(c, rm, a, c.String("container"), names)
					})
				},
			},
		},
	}
}

// appArg returns the command's one APP argument, checked to be an
// application id.
func appArg(c *cli.Context) (string, error) {
	id, err := oneArg(c, "APP")
	if err != nil {
		return "", err
	}
	if _, _, err := yarnpb.ParseAppID(id); err != nil {
		return "", errdefs.InvalidArgument("%v", err)
	}
	return id, nil
}

func printApp(w io.Writer, a *yarnpb.ApplicationReport) {
	fmt.Fprintf(w, "Application Report:\n")
	fmt.Fprintf(w, "\tApplication-Id : %s\n", a.Id)
	fmt.Fprintf(w, "\tApplication-Name : %s\n", a.Name)
	fmt.Fprintf(w, "\tApplication-Type : %s\n", a.Type)
	fmt.Fprintf(w, "\tUser : %s\n", a.User)
	fmt.Fprintf(w, "\tQueue : %s\n", a.Queue)
	fmt.Fprintf(w, "\tPriority : %d\n", a.Priority)
	fmt.Fprintf(w, "\tStart-Time : %s\n", fmtTime(a.StartTime))
	fmt.Fprintf(w, "\tFinish-Time : %s\n", fmtTime(a.FinishTime))
	fmt.Fprintf(w, "\tProgress : %.0f%%\n", a.Progress*100)
	fmt.Fprintf(w, "\tState : %s\n", yarnpb.StateName(a.State.String()))
	fmt.Fprintf(w, "\tFinal-State : %s\n", a.FinalStatus)
	fmt.Fprintf(w, "\tTracking-URL : %s\n", a.TrackingUrl)
	fmt.Fprintf(w, "\tAM Host : %s\n", a.Host)
	fmt.Fprintf(w, "\tDiagnostics : %s\n", a.Diagnostics)
	fmt.Fprintf(w, "Attempts:\n")
	var rows [][]string
	for _, at := range a.Attempts {
		rows = append(rows, []string{"  " + at.Id, yarnpb.StateName(at.State.String()), at.AmContainerId, at.Diagnostics})
	}
	table(w, "  Attempt-Id\tState\tAM-Container\tDiagnostics", rows)
	fmt.Fprintf(w, "Containers:\n")
	rows = nil
	for _, ct := range a.Containers {
		role := "task"
		switch {
		case ct.IsAm && a.Type == flink.AppType:
			role = "AM (JobManager)"
		case ct.IsAm:
			role = "AM"
		case a.Type == flink.AppType:
			role = "TaskManager"
		}
		exit := "-"
		if ct.State == yarnpb.ContainerState_CONTAINER_COMPLETED {
			exit = fmt.Sprint(ct.ExitStatus)
		}
		rows = append(rows, []string{"  " + ct.Id, role, ct.NodeId, yarnpb.StateName(ct.State.String()), exit,
			fmt.Sprintf("%d MB", ct.Resource.GetMemoryMb()), ct.Diagnostics})
	}
	table(w, "  Container-Id\tRole\tNode\tState\tExit\tMemory\tDiagnostics", rows)
}

// printLogs prints each container's logs, read from its NodeManager, in
// YARN's format. An application the RM keeps no containers of any more
// (retention keeps those of the newest ended ones) has its logs found on
// every node.
func printLogs(c *cli.Context, rm *rmclient.Client, a *yarnpb.ApplicationReport, only string, names []string) error {
	nms := nmclient.New(rm.TLS())
	defer nms.Close()
	w := stdout()
	found := false
	var failed []string
	containers := a.Containers
	if len(containers) == 0 {
		nodes, err := rm.Nodes(c.Context, false)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, n := range nodes {
			files, err := nms.ListLogs(c.Context, n.Id, a.Id, "")
			if err != nil {
				continue
			}
			for _, f := range files {
				if !seen[f.ContainerId] {
					seen[f.ContainerId] = true
					containers = append(containers, &yarnpb.Container{Id: f.ContainerId, NodeId: n.Id})
				}
			}
		}
		sort.Slice(containers, func(i, j int) bool { return containers[i].Id < containers[j].Id })
	}
	for _, ct := range containers {
		if only != "" && ct.Id != only {
			continue
		}
		found = true
		files, err := nms.ListLogs(c.Context, ct.NodeId, a.Id, ct.Id)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s on %s: %v", ct.Id, ct.NodeId, err))
			continue
		}
		for _, name := range names {
			var size int64 = -1
			for _, f := range files {
				if f.Name == name {
					size = f.Size
				}
			}
			if size < 0 {
				continue
			}
			fmt.Fprintf(w, "Container: %s on %s\n", ct.Id, ct.NodeId)
			fmt.Fprintf(w, "%s\n", strings.Repeat("=", 60))
			fmt.Fprintf(w, "LogType:%s\nLogLength:%d\nLog Contents:\n", name, size)
			if err := nms.ReadLog(c.Context, ct.NodeId, ct.Id, name, false, w); err != nil {
				failed = append(failed, fmt.Sprintf("%s %s: %v", ct.Id, name, err))
			}
			fmt.Fprintf(w, "End of LogType:%s\n\n", name)
		}
	}
	if only != "" && !found {
		return errdefs.NotFound("container %s is not a container of %s; `loom app status %s` lists them", only, a.Id, a.Id)
	}
	for _, f := range failed {
		fmt.Fprintf(os.Stderr, "loom: could not read logs of %s\n", f)
	}
	if len(failed) > 0 && !found {
		return errors.New("no logs could be read")
	}
	return nil
}

// followLogs copies one container's logs to stdout as the container
// writes them, until it completes or the command is interrupted: the
// named container, else the AM container of the current attempt. With
// more than one log, each line carries its log's name.
func followLogs(ctx context.Context, rm *rmclient.Client, a *yarnpb.ApplicationReport, only string, names []string) error {
	var ct *yarnpb.Container
	for _, x := range a.Containers {
		if (only != "" && x.Id == only) || (only == "" && x.IsAm && x.State != yarnpb.ContainerState_CONTAINER_COMPLETED) {
			ct = x
		}
	}
	if ct == nil {
		if only != "" {
			return errdefs.NotFound("container %s is not a container of %s that the RM keeps; `loom app status %s` lists them", only, a.Id, a.Id)
		}
		return errdefs.FailedPrecondition("%s has no running AM container to follow; name one with --container", a.Id)
	}
	nms := nmclient.New(rm.TLS())
	defer nms.Close()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs = make([]error, len(names))
	)
	for i, name := range names {
		w := io.Writer(stdout())
		if len(names) > 1 {
			w = &linePrefixer{mu: &mu, w: stdout(), prefix: name + ": "}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = nms.ReadLog(ctx, ct.NodeId, ct.Id, name, true, w)
			if lp, ok := w.(*linePrefixer); ok {
				lp.flush()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

// linePrefixer writes whole lines, each after its prefix, under a lock
// shared with the other logs followed.
type linePrefixer struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (l *linePrefixer) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 && len(l.buf) < 64<<10 {
			break
		}
		if i < 0 {
			i = len(l.buf) - 1 // a line this long goes out as it is
		}
		l.mu.Lock()
		_, err := fmt.Fprintf(l.w, "%s%s", l.prefix, l.buf[:i+1])
		l.mu.Unlock()
		if err != nil {
			return 0, err
		}
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// flush writes what is left of an unfinished last line.
func (l *linePrefixer) flush() {
	if len(l.buf) > 0 {
		l.mu.Lock()
		fmt.Fprintf(l.w, "%s%s\n", l.prefix, l.buf)
		l.mu.Unlock()
		l.buf = nil
	}
}

// printFlinkJobs lists the jobs of a running Flink application, as its
// JobManager reports them.
func printFlinkJobs(ctx context.Context, w io.Writer, rm *rmclient.Client, a *yarnpb.ApplicationReport) {
	addr, err := flink.JobManagerAddr(a)
	if err != nil {
		return
	}
	cl, err := flink.DialJobManager(rm, a.Id, addr)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cl.Dispatcher().ListJobs(ctx, &flinkpb.ListJobsRequest{})
	if err != nil {
		fmt.Fprintf(w, "Jobs: the JobManager at %s did not answer: %v\n", addr, grpcMessage(err))
		return
	}
	fmt.Fprintf(w, "Jobs (JobManager at %s):\n", addr)
	var rows [][]string
	for _, j := range resp.Jobs {
		running, total := client.TaskTally(j)
		note := j.Failure
		if j.State == "CREATED" {
			note = j.Diagnostic
		}
		rows = append(rows, []string{"  " + j.JobId, j.Name, j.State, fmt.Sprintf("%d/%d", running, total), note})
	}
	table(w, "  Job-Id\tName\tState\tRunning-Tasks\tDiagnostics", rows)
}
