package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loom-project/loom/am/flink"
	"github.com/loom-project/loom/flinkrt/client"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

// perJobFlags are the flags of `loom run -t per-job`.
func perJobFlags() []cli.Flag {
	d := flink.DefaultOptions
	return []cli.Flag{
		rmFlag, configFlag,
		&cli.IntFlag{Name: "slots-per-tm", Value: d.SlotsPerTM, Usage: "per-job: slots of each TaskManager"},
		&cli.Int64Flag{Name: "tm-memory-mb", Value: d.TMMemoryMB, Usage: "per-job: memory of each TaskManager container, MB"},
		&cli.IntFlag{Name: "tm-vcores", Value: int(d.TMVCores), Usage: "per-job: vcores of each TaskManager container"},
		&cli.Int64Flag{Name: "jm-memory-mb", Value: d.JMMemoryMB, Usage: "per-job: memory of the JobManager (AM) container, MB"},
		&cli.StringFlag{Name: "queue", Value: "default", Usage: "per-job: queue to submit to"},
		&cli.StringFlag{Name: "name", Usage: "per-job: application name (default: the job's name)"},
		&cli.IntFlag{Name: "max-failed-containers", Value: d.MaxFailedContainers, Usage: "per-job: TaskManager containers that may fail within --failure-interval before the job fails"},
		&cli.DurationFlag{Name: "failure-interval", Value: d.FailureInterval, Usage: "per-job: the window --max-failed-containers counts in"},
		&cli.IntFlag{Name: "max-attempts", Usage: "per-job: AM attempts (0: the cluster's maximum)"},
		&cli.StringFlag{Name: "web-dir", Usage: "per-job: a dashboard build (Flink's web-dashboard/web) the JobManager serves at its web address"},
		spreadFlag, tmLabelFlag,
	}
}

// The TaskManagers' placement, per-job and in a session.
var (
	spreadFlag  = &cli.BoolFlag{Name: "spread-taskmanagers", Usage: "at most one TaskManager on a node (anti-affinity)"}
	tmLabelFlag = &cli.StringFlag{Name: "tm-node-label", Usage: "put the TaskManagers on nodes of this label (the queue's accessible_node_labels must list it)"}
)

// runPerJob plans the program, submits it as an application of its own
// and, attached, follows it to its end. In application mode (onCluster)
// the program is not run here: its AM plans the job.
func runPerJob(c *cli.Context, prog client.Program, onCluster bool) error {
	began := time.Now()
	step := func(msg string) {
		fmt.Printf("[%7.3fs] %s\n", time.Since(began).Seconds(), msg)
	}
	opts := flink.Options{
		Name: c.String("name"), Queue: c.String("queue"), SlotsPerTM: c.Int("slots-per-tm"),
		TMMemoryMB: c.Int64("tm-memory-mb"), TMVCores: int32(c.Int("tm-vcores")), JMMemoryMB: c.Int64("jm-memory-mb"),
		MaxFailedContainers: c.Int("max-failed-containers"), FailureInterval: c.Duration("failure-interval"), MaxAttempts: int32(c.Int("max-attempts")),
		WebDir: c.String("web-dir"), SpreadTaskManagers: c.Bool("spread-taskmanagers"), TMNodeLabel: c.String("tm-node-label"),
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	var jg *flinkpb.JobGraph
	if !onCluster {
		var err error
		if jg, err = client.Plan(c.Context, prog); err != nil {
			return err
		}
		if p := jg.Config["parallelism.default"]; p != "" {
			prog.Env["LOOM_PARALLELISM"] = p
		}
	}
	rm, err := rmClient(c)
	if err != nil {
		return err
	}
	defer rm.Close()
	detached := c.Bool("detached")
	var sub *flink.Submission
	if onCluster {
		sub, err = flink.SubmitApplication(c.Context, rm, prog, opts)
	} else {
		if !detached {
			step(fmt.Sprintf("planned job %s: %d slots", jg.Name, jg.Slots))
		}
		sub, err = flink.SubmitPerJob(c.Context, rm, prog, jg, opts)
	}
	if err != nil {
		return err
	}
	if detached {
		a, err := waitForJobManager(c, rm, sub.AppID)
		if err != nil {
			return err
		}
		fmt.Printf("Application %s (job %s)\nJobManager web interface: %s\n", sub.AppID, sub.JobID, a.TrackingUrl)
		return nil
	}
	step(fmt.Sprintf("staged the program, its job graph and loom in %s", sub.Staged.Round(time.Millisecond)))
	if onCluster {
		step(fmt.Sprintf("submitted application %s with job %s: its ApplicationMaster plans the job, then runs it", sub.AppID, sub.JobID))
	} else {
		step(fmt.Sprintf("submitted application %s with job %s: 1 JobManager, %d TaskManagers of %d slots", sub.AppID, sub.JobID, sub.TaskManagers, opts.SlotsPerTM))
	}
	d, app, err := flink.Follow(c.Context, rm, sub.AppID, sub.JobID, step)
	if err != nil {
		return err
	}
	ended := d != nil && (d.State == "FINISHED" || d.State == "FAILED" || d.State == "CANCELED")
	fromReport := false
	switch {
	case ended:
		fmt.Println(jobEnd(d))
	case strings.HasPrefix(app.Diagnostics, "job "):
		// The JobManager went with its application before the end was
		// seen: the AM's final report says how the job ended.
		fmt.Println("Job " + strings.TrimPrefix(app.Diagnostics, "job "))
		fromReport = true
	}
	fmt.Printf("Application %s %s (%s)\n", app.Id, yarnpb.StateName(app.State.String()), app.FinalStatus)
	// The application's final status is the job's outcome, as its AM saw
	// it, even when the job ended before it could be followed.
	if app.FinalStatus == yarnpb.FinalStatus_SUCCEEDED {
		return nil
	}
	cause := app.Diagnostics
	switch {
	case d != nil && d.State == "FAILED" && d.Failure != "":
		cause = d.Failure
	case d != nil && d.EndReason != "",
		fromReport && !strings.Contains(app.Diagnostics, " FAILED"):
		cause = "" // the job's line said why
	}
	if cause != "" {
		fmt.Fprintf(os.Stderr, "cause: %s\n", cause)
	}
	return exitError{code: 1}
}

// waitForJobManager waits until a submitted application's JobManager is
// up (or the application ended) and returns its report.
func waitForJobManager(c *cli.Context, rm *rmclient.Client, appID string) (*yarnpb.ApplicationReport, error) {
	var index uint64
	for {
		a, idx, err := rm.WatchReport(c.Context, appID, false, index, 30*time.Second)
		if err != nil {
			return nil, err
		}
		index = idx
		if _, err := flink.JobManagerAddr(a); err == nil {
			return a, nil
		}
		if flink.AppTerminal(a.State) {
			return nil, fmt.Errorf("application %s ended before its JobManager came up: %s", appID, a.Diagnostics)
		}
	}
}

func amCommand() *cli.Command {
	return &cli.Command{
		Name:  "am",
		Usage: "run the Flink ApplicationMaster (inside an AM container; `loom run -t per-job` and `loom session start` start it)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mode", Value: flink.ModePerJob, Usage: "per-job, application or session"},
			&cli.StringFlag{Name: "job", Value: "job.pb", Usage: "per-job: the job to run (a staged SubmitJobRequest)"},
			&cli.StringFlag{Name: "artifact", Value: "job", Usage: "per-job: the job's program"},
			&cli.IntFlag{Name: "slots-per-tm", Value: 1, Usage: "slots of each TaskManager"},
			&cli.Int64Flag{Name: "tm-memory-mb", Value: 512, Usage: "memory of each TaskManager container, MB"},
			&cli.IntFlag{Name: "tm-vcores", Value: 1, Usage: "vcores of each TaskManager container"},
			&cli.IntFlag{Name: "max-failed-containers", Value: 3, Usage: "TaskManager containers that may fail within --failure-interval before the job (or session) fails"},
			&cli.DurationFlag{Name: "failure-interval", Value: flink.DefaultFailureInterval, Usage: "the window --max-failed-containers counts in"},
			&cli.DurationFlag{Name: "idle-timeout", Usage: "session: return TaskManagers idle this long (0: keep them)"},
			&cli.IntFlag{Name: "max-slots", Usage: "session: the most slots all TaskManagers may have (0: no cap)"},
			&cli.StringFlag{Name: "web-dir", Usage: "a dashboard build (in the working directory) the JobManager serves"},
			spreadFlag, tmLabelFlag,
			logLevelFlag,
		},
		Action: func(c *cli.Context) error {
			return flink.RunAM(c.Context, flink.AMConfig{
				Mode: c.String("mode"), JobFile: c.String("job"), ArtifactFile: c.String("artifact"),
				TaskManager: flink.TaskManagerSpec{
					Slots: c.Int("slots-per-tm"), MemoryMB: c.Int64("tm-memory-mb"), VCores: int32(c.Int("tm-vcores")),
					MaxFailed: c.Int("max-failed-containers"), FailureInterval: c.Duration("failure-interval"),
					IdleTimeout: c.Duration("idle-timeout"), MaxSlots: c.Int("max-slots"),
					Spread: c.Bool("spread-taskmanagers"), NodeLabel: c.String("tm-node-label"),
				},
				Log: newLogger(c, "loom-am", os.Stderr), WebDir: c.String("web-dir"),
			})
		},
	}
}
