package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loom-project/loom/am/flink"
	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/client"
	"github.com/loom-project/loom/flinkrt/jobmanager"
	"github.com/loom-project/loom/flinkrt/state/storage"
	"github.com/loom-project/loom/flinkrt/stream"
	"github.com/loom-project/loom/flinkrt/taskmanager"
	"github.com/loom-project/loom/flinkrt/worker"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
)

var jobmanagerFlag = &cli.StringFlag{
	Name:    "jobmanager",
	Aliases: []string{"m"},
	Usage:   "JobManager address, host:port",
	Value:   "localhost:6123",
	EnvVars: []string{"LOOM_JOBMANAGER"},
}

// secretFileFlag names a standalone deployment's secret, which its
// JobManager makes and its TaskManagers and clients present.
var secretFileFlag = &cli.StringFlag{
	Name:        "secret-file",
	Usage:       "standalone: the secret file the JobManager, its TaskManagers and clients share (copy it to other hosts)",
	EnvVars:     []string{auth.EnvSecretFile},
	DefaultText: "~/.loom/flink-secret",
}

// waitForFile returns once path exists, or with ctx's error.
func waitForFile(ctx context.Context, path string, log hclog.Logger) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for logged := false; ; {
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !logged {
			log.Info("waiting for the JobManager's secret (start `loom jobmanager`, or copy its secret file here)", "path", path)
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// standaloneTrust is the trust of a TaskManager or client of a
// standalone JobManager: the secret its JobManager made.
func standaloneTrust(c *cli.Context) (*auth.Trust, error) {
	path, err := auth.SecretFile(c.String(secretFileFlag.Name))
	if err != nil {
		return nil, err
	}
	return auth.FromSecretFile(path)
}

func jobmanagerCommand() *cli.Command {
	d := jobmanager.DefaultTiming
	return &cli.Command{
		Name:  "jobmanager",
		Usage: "run a standalone JobManager (Dispatcher, JobMasters, ResourceManager, REST API); start TaskManagers with `loom taskmanager`",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: "localhost:6123", Usage: "gRPC listen address (TaskManagers and clients)"},
			&cli.StringFlag{Name: "advertise", Usage: "gRPC address others dial (default: the listen address)"},
			&cli.StringFlag{Name: "rest-addr", Value: "localhost:8081", Usage: "REST API listen address (Flink's REST API); empty disables it"},
			&cli.StringFlag{Name: "web-dir", Usage: "a web dashboard build to serve at / of the REST address"},
			&cli.StringFlag{Name: "dir", Usage: "directory for job artifacts (default: a temporary one)"},
			logDirFlag,
			&cli.DurationFlag{Name: "heartbeat-interval", Value: d.HeartbeatInterval, Usage: "heartbeat interval with TaskManagers"},
			&cli.DurationFlag{Name: "heartbeat-timeout", Value: d.HeartbeatTimeout, Usage: "a TaskManager silent this long is lost"},
			&cli.DurationFlag{Name: "slot-timeout", Value: d.SlotTimeout, Usage: "how long a job waits for its slots before it fails"},
			secretFileFlag,
			logLevelFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q; see `loom jobmanager --help`", c.Args().First())
			}
			if err := checkListen("--addr", c.String("addr")); err != nil {
				return err
			}
			timing := jobmanager.DefaultTiming
			timing.HeartbeatInterval = c.Duration("heartbeat-interval")
			timing.HeartbeatTimeout = c.Duration("heartbeat-timeout")
			timing.SlotTimeout = c.Duration("slot-timeout")
			if timing.HeartbeatInterval <= 0 || timing.HeartbeatTimeout <= timing.HeartbeatInterval {
				return errors.New("--heartbeat-timeout must be longer than --heartbeat-interval, and both positive")
			}
			if dir := c.String("web-dir"); dir != "" {
				if st, err := os.Stat(dir); err != nil || !st.IsDir() {
					return fmt.Errorf("--web-dir %s: not a directory", dir)
				}
			}
			secretPath, err := auth.SecretFile(c.String(secretFileFlag.Name))
			if err != nil {
				return err
			}
			secret, created, err := auth.EnsureSecretFile(secretPath)
			if err != nil {
				return err
			}
			trust, err := auth.FromSecret(secret, secretPath)
			if err != nil {
				return err
			}
			logs, err := openLogs(c.String("log-dir"), "jobmanager")
			if err != nil {
				return err
			}
			defer logs.Close()
			jm, err := jobmanager.New(jobmanager.Config{
				Addr: c.String("addr"), Advertise: c.String("advertise"), RestAddr: c.String("rest-addr"),
				WebDir: c.String("web-dir"), Dir: c.String("dir"), Log: newLogger(c, "loom", logs.stderr), Timing: timing,
				TMHeartbeatInterval: timing.HeartbeatInterval, TMHeartbeatTimeout: timing.HeartbeatTimeout, Trust: trust,
				LogDir: logs.dir, LogName: logs.logName, OutName: logs.outName,
			})
			if err != nil {
				return err
			}
			how := "its secret"
			if created {
				how = "a new secret"
			}
			fmt.Fprintf(logs.stdout, "JobManager at %s with %s in %s (TaskManagers and clients on other hosts need a copy)\n", jm.Addr(), how, secretPath)
			if u := jm.WebURL(); u != "" {
				fmt.Fprintf(logs.stdout, "REST API at http://%s; dashboard: %s\n", jm.RestAddr(), u)
			}
			ctx, stop := context.WithCancel(c.Context)
			defer stop()
			go func() {
				select {
				case reason := <-jm.ShutdownRequested():
					fmt.Fprintf(logs.stdout, "shutting down: %s\n", reason)
					jm.CancelAll(ctx, "the JobManager was shut down: "+reason, 30*time.Second)
					stop()
				case <-ctx.Done():
				}
			}()
			return jm.Run(ctx)
		},
	}
}

func taskmanagerCommand() *cli.Command {
	return &cli.Command{
		Name:  "taskmanager",
		Usage: "run a TaskManager that offers its slots to a JobManager",
		Flags: []cli.Flag{
			jobmanagerFlag,
			&cli.IntFlag{Name: "slots", Aliases: []string{"s"}, Value: 1, Usage: "number of task slots"},
			&cli.Int64Flag{Name: "memory-mb", Value: 1024, Usage: "memory the TaskManager offers, MB"},
			&cli.StringFlag{Name: "addr", Value: "localhost:0", Usage: "gRPC listen address"},
			&cli.StringFlag{Name: "advertise", Usage: "gRPC address others dial (default: the listen address)"},
			&cli.StringFlag{Name: "data-host", Usage: "host job workers publish their data ports on (default: the advertised host)"},
			&cli.StringFlag{Name: "dir", Usage: "directory for fetched job artifacts (default: a temporary one)"},
			&cli.StringFlag{Name: "id", Usage: "TaskManager id (default: host name and a random suffix)", EnvVars: []string{"LOOM_TASKMANAGER_ID"}},
			&cli.StringSliceFlag{Name: "artifact", Usage: "SHA256=PATH: a job artifact already on this machine, used instead of fetching it"},
			&cli.DurationFlag{Name: "rm-timeout", Usage: "exit when the ResourceManager has been out of reach this long (0: never)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus's /metrics here (host:port; open on a loopback address, else it needs the web token as a bearer token)"},
			logDirFlag,
			secretFileFlag,
			logLevelFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q; see `loom taskmanager --help`", c.Args().First())
			}
			if c.Int("slots") < 1 || c.Int("slots") > 1024 {
				return fmt.Errorf("--slots %d: want 1..1024", c.Int("slots"))
			}
			if c.Int64("memory-mb") < 1 {
				return fmt.Errorf("--memory-mb %d: want a positive number", c.Int64("memory-mb"))
			}
			artifacts := map[string]string{}
			for _, a := range c.StringSlice("artifact") {
				digest, path, ok := strings.Cut(a, "=")
				if !ok || len(digest) != 64 || path == "" {
					return fmt.Errorf("--artifact %q: want SHA256=PATH", a)
				}
				artifacts[strings.ToLower(digest)] = path
			}
			dir := c.String("dir")
			if dir == "" {
				d, err := os.MkdirTemp("", "loom-tm-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				dir = d
			}
			logs, err := openLogs(c.String("log-dir"), "taskmanager")
			if err != nil {
				return err
			}
			defer logs.Close()
			cfg := taskmanager.Config{
				Addr: c.String("addr"), Advertise: c.String("advertise"), JobManager: c.String("jobmanager"),
				Slots: c.Int("slots"), MemoryMB: c.Int64("memory-mb"), DataHost: c.String("data-host"),
				Dir: dir, ID: c.String("id"), Log: newLogger(c, "loom", logs.stderr),
				Artifacts: artifacts, ResourceManagerTimeout: c.Duration("rm-timeout"),
				LogDir: logs.dir, LogName: logs.logName, OutName: logs.outName, Stdout: logs.stdout, Stderr: logs.stderr,
				MetricsAddr: c.String("metrics-addr"),
			}
			// In a Flink application's container, the TaskManager is one
			// of the application's, by its certificate, and follows the
			// application's JobManager to a new AM attempt.
			if app, addrs := os.Getenv("LOOM_APPLICATION_ID"), os.Getenv("LOOM_RM_ADDRS"); app != "" && addrs != "" {
				id, err := tlsutil.LoadContainer()
				if err != nil {
					return err
				}
				if cfg.Trust, err = auth.FromBundle(id, nil); err != nil {
					return err
				}
				rm, err := rmclient.NewFromList(addrs, id)
				if err != nil {
					return err
				}
				defer rm.Close()
				cfg.FindJobManager = func(ctx context.Context) (string, error) {
					a, err := rm.Report(ctx, app, false)
					if err != nil {
						return "", err
					}
					return flink.JobManagerAddr(a)
				}
			}
			if cfg.Trust == nil {
				// A TaskManager may start before its JobManager, as
				// Flink's retry until theirs is up: it waits for the
				// JobManager to make the secret.
				path, err := auth.SecretFile(c.String(secretFileFlag.Name))
				if err != nil {
					return err
				}
				if err := waitForFile(c.Context, path, cfg.Log); err != nil {
					return err
				}
				if cfg.Trust, err = auth.FromSecretFile(path); err != nil {
					return err
				}
			}
			tm, err := taskmanager.New(cfg)
			if err != nil {
				return err
			}
			return tm.Run(c.Context)
		},
	}
}

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a job program (its flags and arguments follow it)",
		ArgsUsage: "ARTIFACT [ARGS...]",
		Description: "Targets:\n" +
			"   per-job      an application of its own on the cluster (--rm host:port): a JobManager and the TaskManagers the job needs\n" +
			"   application  as per-job, with the program's main run on the cluster: its ApplicationMaster plans the job, the client ships only the program\n" +
			"   session      a running session cluster (--session APP, or your one session)\n" +
			"   remote       submit to a running JobManager (--jobmanager host:port)",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "target", Aliases: []string{"t"}, Value: "remote", Usage: "where the job runs: per-job, application, session or remote"},
			&cli.StringFlag{Name: "session", Usage: "session: the session cluster's application id (default: your one running session)"},
			jobmanagerFlag,
			&cli.IntFlag{Name: "parallelism", Aliases: []string{"p"}, Usage: "default parallelism of the job's operators", DefaultText: "the program's"},
			&cli.BoolFlag{Name: "detached", Aliases: []string{"d"}, Usage: "print the job id (per-job: the application id and web address) and return instead of waiting for the job"},
			&cli.DurationFlag{Name: "checkpoint-interval", Usage: "take a checkpoint this often, so the job recovers from failures with its state, exactly once", DefaultText: "the program's, else none"},
			&cli.StringFlag{Name: "checkpoint-dir", Usage: "where checkpoints go: a directory every TaskManager reaches, or s3://bucket/prefix", DefaultText: jobmanager.DefaultCheckpointDir()},
			&cli.StringFlag{Name: "restart-strategy", Usage: "what a failed job does: " + strings.Join(jobmanager.RestartStrategies, ", "), DefaultText: "exponential-delay with checkpoints, else none"},
			&cli.StringFlag{Name: "from-savepoint", Aliases: []string{"s"}, Usage: "start from the state of this savepoint or checkpoint (its directory)"},
			&cli.BoolFlag{Name: "allow-non-restored-state", Usage: "with -s: drop state that maps to no operator of the job"},
			&cli.StringSliceFlag{Name: "D", Usage: "set a configuration key of the job, key=value (Flink's keys)"},
			secretFileFlag,
		}, perJobFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return errors.New("expected the job program: loom run [-t per-job|application|session|remote] [-p N] [-d] ARTIFACT [ARGS...]")
			}
			target := c.String("target")
			if c.IsSet("web-dir") && target != "per-job" && target != "application" {
				return errdefs.InvalidArgument("--web-dir ships a dashboard with a per-job application; a session's is given to `loom session start --web-dir`, a standalone JobManager's to `loom jobmanager --web-dir`")
			}
			switch target {
			case "remote", "per-job", "application", "session":
			default:
				return fmt.Errorf("target %q: want per-job, application, session or remote", target)
			}
			prog := client.Program{Path: c.Args().First(), Args: c.Args().Tail(), Env: map[string]string{}}
			// The job's relative paths are this directory's, wherever
			// its tasks run.
			if wd, err := os.Getwd(); err == nil {
				prog.Env[stream.EnvClientDir] = wd
			}
			if p := c.Int("parallelism"); p != 0 {
				if p < 1 {
					return fmt.Errorf("-p %d: want a positive parallelism", p)
				}
				prog.Env["LOOM_PARALLELISM"] = strconv.Itoa(p)
			}
			conf, err := jobConfig(c)
			if err != nil {
				return err
			}
			if conf != "" {
				prog.Env[worker.EnvConfig] = conf
			}
			if abs, err := filepath.Abs(prog.Path); err == nil {
				prog.Path = abs
			}
			switch target {
			case "per-job", "application":
				return runPerJob(c, prog, target == "application")
			case "session":
				addr, trust, err := sessionJobManager(c)
				if err != nil {
					return err
				}
				return runRemote(c, prog, addr, trust)
			}
			trust, err := standaloneTrust(c)
			if err != nil {
				return err
			}
			return runRemote(c, prog, c.String("jobmanager"), trust)
		},
	}
}

// jobConfig turns run's checkpoint, restart and -D flags into the job's
// configuration lines.
func jobConfig(c *cli.Context) (string, error) {
	var lines []string
	set := func(k, v string) { lines = append(lines, k+"="+v) }
	for _, kv := range c.StringSlice("D") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" || strings.ContainsAny(kv, "\n") {
			return "", fmt.Errorf("-D %q: want key=value", kv)
		}
		if k := strings.TrimSpace(k); !jobmanager.KnownConfigKey(k) {
			return "", fmt.Errorf("-D %s: loom reads no configuration key of that name (a setting of your program's own is one of its flags, after the program); the keys it reads:\n  %s",
				k, strings.Join(jobmanager.ConfigKeys(), "\n  "))
		}
		set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if c.IsSet("checkpoint-interval") {
		d := c.Duration("checkpoint-interval")
		if d <= 0 {
			return "", fmt.Errorf("--checkpoint-interval %s: want a positive duration", d)
		}
		set(jobmanager.ConfCheckpointInterval, d.String())
	}
	if dir := c.String("checkpoint-dir"); dir != "" {
		loc, err := storage.Resolve(dir)
		if err != nil {
			return "", fmt.Errorf("--checkpoint-dir %w", err)
		}
		set(jobmanager.ConfCheckpointDir, loc)
	}
	if r := c.String("restart-strategy"); r != "" {
		if !slices.Contains(jobmanager.RestartStrategies, r) {
			return "", fmt.Errorf("--restart-strategy %q: want one of %s", r, strings.Join(jobmanager.RestartStrategies, ", "))
		}
		set(jobmanager.ConfRestartStrategy, r)
	}
	if sp := c.String("from-savepoint"); sp != "" {
		loc, err := storage.Resolve(sp)
		if err != nil {
			return "", fmt.Errorf("-s %w", err)
		}
		if storage.Base(loc) == jobmanager.MetadataFile {
			loc = storage.Dir(loc)
		}
		ok, err := storage.Exists(c.Context, storage.Join(loc, jobmanager.MetadataFile))
		if err != nil {
			return "", fmt.Errorf("-s %s: %w", sp, err)
		}
		if !ok {
			return "", fmt.Errorf("-s %s: not a savepoint or completed checkpoint (it has no %s file)", sp, jobmanager.MetadataFile)
		}
		set(jobmanager.ConfSavepointPath, loc)
	}
	if c.Bool("allow-non-restored-state") {
		set(jobmanager.ConfAllowNonRestored, "true")
	}
	return strings.Join(lines, "\n"), nil
}

// runRemote submits the program to the JobManager at addr, reached with
// trust, and, attached, follows the job.
func runRemote(c *cli.Context, prog client.Program, addr string, trust *auth.Trust) error {
	// The program is hashed while it plans.
	type keyed struct {
		key *flinkpb.BlobKey
		err error
	}
	keyc := make(chan keyed, 1)
	go func() {
		k, err := client.FileKey(prog.Path)
		keyc <- keyed{k, err}
	}()
	jg, err := client.Plan(c.Context, prog)
	k := <-keyc
	if err != nil {
		return err
	}
	if k.err != nil {
		return k.err
	}
	// Workers run the program with the parallelism it was planned with,
	// whatever their machine's CPU count.
	if p := jg.Config["parallelism.default"]; p != "" {
		prog.Env["LOOM_PARALLELISM"] = p
	}
	cl, err := client.Dial(addr, trust)
	if err != nil {
		return err
	}
	defer cl.Close()
	id, err := cl.Submit(c.Context, prog, jg, k.key)
	if err != nil {
		return fmt.Errorf("submitting to the JobManager at %s: %w", addr, grpcMessage(errors.Unwrap(err)))
	}
	if c.Bool("detached") {
		fmt.Println(id)
		return nil
	}
	fmt.Printf("Job has been submitted with JobID %s\n", id)
	return followJob(c.Context, cl, id)
}

// followJob prints a job's state changes until it ends; Ctrl-C cancels
// it. It fails unless the job FINISHED.
func followJob(ctx context.Context, cl *client.Client, id string) error {
	wctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "canceling job %s\n", id)
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _ = cl.Dispatcher().CancelJob(cctx, &flinkpb.CancelJobRequest{JobId: id, Reason: interruptedReason(ctx)})
			cancel()
		case <-wctx.Done():
		}
	}()
	var progress client.Progress
	lastDiag := ""
	d, err := cl.Watch(wctx, id, func(d *flinkpb.JobDetails) {
		for _, news := range progress.Update(d) {
			fmt.Printf("%s  %s\n", time.Now().Format("15:04:05.000"), news)
		}
		if d.State == "CREATED" && d.Diagnostic != lastDiag {
			fmt.Printf("%s  %s\n", time.Now().Format("15:04:05.000"), d.Diagnostic)
			lastDiag = d.Diagnostic
		}
	})
	if err != nil {
		return grpcMessage(err)
	}
	fmt.Println(jobEnd(d))
	if d.State != "FINISHED" {
		if d.Failure != "" && d.State == "FAILED" {
			fmt.Fprintf(os.Stderr, "cause: %s\n", d.Failure)
		}
		return exitError{code: 1}
	}
	return nil
}

// jobEnd is the line that says how a job ended: its state, how long it
// ran, and why it was canceled or stopped.
func jobEnd(d *flinkpb.JobDetails) string {
	dur := time.Duration(d.EndTimeMs-d.StartTimeMs) * time.Millisecond
	line := fmt.Sprintf("Job %s (%s) %s after %s", d.JobId, d.Name, d.State, dur)
	if d.EndReason != "" {
		line += ": " + d.EndReason
	}
	return line
}

func jobCommand() *cli.Command {
	return &cli.Command{
		Name:  "job",
		Usage: "list, cancel, savepoint and stop jobs of a JobManager",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list jobs, newest first",
				Flags: []cli.Flag{jobmanagerFlag, appFlag, rmFlag, configFlag, secretFileFlag, outputFlag},
				Action: func(c *cli.Context) error {
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					return withJobManager(c, func(cl *client.Client) error {
						resp, err := cl.Dispatcher().ListJobs(c.Context, &flinkpb.ListJobsRequest{})
						if err != nil {
							return grpcMessage(err)
						}
						if asJSON {
							out := []map[string]any{}
							for _, j := range resp.Jobs {
								out = append(out, jobJSON(j))
							}
							return printJSON(stdout(), out)
						}
						var rows [][]string
						for _, j := range resp.Jobs {
							running, total := client.TaskTally(j)
							rows = append(rows, []string{j.JobId, j.Name, j.State, fmtTime(j.StartTimeMs), jobDuration(j).String(), fmt.Sprintf("%d/%d", running, total), lastCheckpoint(j)})
						}
						table(stdout(), "JOB ID\tNAME\tSTATE\tSTARTED\tDURATION\tRUNNING TASKS\tLAST CHECKPOINT", rows)
						return nil
					})
				},
			},
			{
				Name:      "cancel",
				Usage:     "cancel a job",
				ArgsUsage: "JOB",
				Flags:     []cli.Flag{jobmanagerFlag, appFlag, rmFlag, configFlag, secretFileFlag},
				Action: func(c *cli.Context) error {
					id, err := oneArg(c, "JOB")
					if err != nil {
						return err
					}
					return withJobManager(c, func(cl *client.Client) error {
						resp, err := cl.Dispatcher().CancelJob(c.Context, &flinkpb.CancelJobRequest{JobId: id, Reason: "canceled with `loom job cancel`" + byUser()})
						if err != nil {
							return grpcMessage(err)
						}
						if resp.State == "FINISHED" || resp.State == "FAILED" || resp.State == "CANCELED" {
							fmt.Printf("job %s had already ended: %s\n", id, resp.State)
							return nil
						}
						return printJobEnd(c, cl, id)
					})
				},
			},
			{
				Name:      "savepoint",
				Usage:     "take a savepoint of a running job; `loom run -s PATH` starts a job from it",
				ArgsUsage: "JOB",
				Flags: []cli.Flag{jobmanagerFlag, appFlag, rmFlag, configFlag, secretFileFlag,
					&cli.StringFlag{Name: "dir", Usage: "directory to make the savepoint in, which every TaskManager reaches, or s3://bucket/prefix", DefaultText: "the job's " + jobmanager.ConfSavepointDir},
					savepointTimeoutFlag},
				Action: func(c *cli.Context) error { return savepoint(c, c.String("dir"), false) },
			},
			{
				Name:      "stop",
				Usage:     "stop a job with a savepoint: its state is saved, then it ends FINISHED",
				ArgsUsage: "JOB",
				Flags: []cli.Flag{jobmanagerFlag, appFlag, rmFlag, configFlag, secretFileFlag,
					&cli.StringFlag{Name: "savepoint-dir", Aliases: []string{"p"}, Usage: "directory to make the savepoint in, which every TaskManager reaches, or s3://bucket/prefix", DefaultText: "the job's " + jobmanager.ConfSavepointDir},
					savepointTimeoutFlag},
				Action: func(c *cli.Context) error { return savepoint(c, c.String("savepoint-dir"), true) },
			},
		},
	}
}

var savepointTimeoutFlag = &cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "give up waiting for the savepoint after this long"}

// savepoint takes a savepoint of the job named on the command line into
// dir and, with stop set, waits for the job to end.
func savepoint(c *cli.Context, dir string, stop bool) error {
	id, err := oneArg(c, "JOB")
	if err != nil {
		return err
	}
	if dir != "" {
		if dir, err = storage.Resolve(dir); err != nil {
			return fmt.Errorf("savepoint directory %w", err)
		}
	}
	return withJobManager(c, func(cl *client.Client) error {
		if stop {
			fmt.Printf("Suspending job %s with a savepoint.\n", id)
		} else {
			fmt.Printf("Triggering savepoint for job %s.\n", id)
		}
		ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
		defer cancel()
		resp, err := cl.Dispatcher().TriggerSavepoint(ctx, &flinkpb.TriggerSavepointRequest{JobId: id, TargetDirectory: dir, Stop: stop})
		if err != nil {
			return grpcMessage(err)
		}
		fmt.Printf("Savepoint completed. Path: %s\n", resp.Path)
		fmt.Printf("Start a job from it with: loom run -s %s ...\n", resp.Path)
		if !stop {
			return nil
		}
		return printJobEnd(c, cl, id)
	})
}

// printJobEnd waits for the job to end and prints its final state. A
// per-job application's JobManager goes away with its job, maybe before
// the watch saw the end: then the application's final report says it.
func printJobEnd(c *cli.Context, cl *client.Client, id string) error {
	d, err := cl.Watch(c.Context, id, nil)
	if err == nil {
		fmt.Println(jobEnd(d))
		return nil
	}
	app := c.String("app")
	if app == "" || status.Code(err) != codes.Unavailable {
		return grpcMessage(err)
	}
	return withRM(c, func(rm *rmclient.Client) error {
		var index uint64
		for {
			a, i, rerr := rm.WatchReport(c.Context, app, false, index+1, 10*time.Second)
			if rerr != nil {
				return rerr
			}
			index = i
			if !flink.AppTerminal(a.State) {
				continue
			}
			if m := regexp.MustCompile(`job ` + regexp.QuoteMeta(id) + ` ([A-Z]+)`).FindStringSubmatch(a.Diagnostics); m != nil {
				fmt.Printf("job %s %s\n", id, m[1])
				return nil
			}
			return fmt.Errorf("the JobManager of %s went away before job %s ended; the application ended %s: %s", app, id, a.FinalStatus, a.Diagnostics)
		}
	})
}

var appFlag = &cli.StringFlag{Name: "app", Aliases: []string{"session"}, Usage: "the Flink application (per-job or session) whose JobManager to ask, instead of --jobmanager"}

// withJobManager calls fn with a client of the JobManager: the one of the
// --app application, found through the ResourceManager and reached as the
// user of the client config, or the standalone one at --jobmanager,
// reached with its secret.
func withJobManager(c *cli.Context, fn func(*client.Client) error) error {
	addr := c.String("jobmanager")
	var trust *auth.Trust
	if app := c.String("app"); app != "" {
		if _, _, err := yarnpb.ParseAppID(app); err != nil {
			return errdefs.InvalidArgument("--app: %v", err)
		}
		err := withRM(c, func(rm *rmclient.Client) error {
			a, err := rm.Report(c.Context, app, false)
			if err != nil {
				return err
			}
			addr, err = flink.JobManagerAddr(a)
			trust = auth.ForUser(rm.TLS(), app)
			return err
		})
		if err != nil {
			return err
		}
	} else {
		var err error
		if trust, err = standaloneTrust(c); err != nil {
			return err
		}
	}
	cl, err := client.Dial(addr, trust)
	if err != nil {
		return err
	}
	defer cl.Close()
	return fn(cl)
}

// lastCheckpoint describes a job's latest completed checkpoint: "-" for
// a job without checkpoints.
func lastCheckpoint(j *flinkpb.JobDetails) string {
	cp := j.Checkpoints
	switch {
	case cp.GetLastId() > 0:
		return fmt.Sprintf("#%d %s ago", cp.LastId, time.Since(time.UnixMilli(cp.LastTimeMs)).Round(time.Second))
	case cp.GetEnabled():
		return "none yet"
	}
	return "-"
}

func jobDuration(j *flinkpb.JobDetails) time.Duration {
	end := j.EndTimeMs
	if end < 0 {
		end = time.Now().UnixMilli()
	}
	return (time.Duration(end-j.StartTimeMs) * time.Millisecond).Round(time.Millisecond)
}

// jobJSON is a job as `loom job list -o json` prints it: with the names
// of Flink's REST API (/jobs/overview, /jobs/:jid/exceptions,
// /jobs/:jid/checkpoints) where it has them, and loom's own in its style.
func jobJSON(j *flinkpb.JobDetails) map[string]any {
	running, total := client.TaskTally(j)
	latest := map[string]any{}
	if cp := j.Checkpoints; cp.GetLastId() > 0 {
		latest["completed"] = map[string]any{"id": cp.LastId, "latest_ack_timestamp": cp.LastTimeMs, "external_path": cp.LastPath}
	}
	return map[string]any{
		"jid": j.JobId, "name": j.Name, "state": j.State, "start-time": j.StartTimeMs, "end-time": j.EndTimeMs,
		"duration": jobDuration(j).Milliseconds(), "tasks": map[string]any{"running": running, "total": total}, "slots": j.Slots,
		"root-exception": j.Failure, "diagnostic": j.Diagnostic, "end-reason": j.EndReason, "restarts": j.Restarts,
		"checkpoints": map[string]any{
			"enabled": j.Checkpoints.GetEnabled(),
			"counts":  map[string]any{"completed": j.Checkpoints.GetCompleted(), "failed": j.Checkpoints.GetFailed()},
			"latest":  latest,
		},
	}
}

// grpcMessage turns a gRPC error into its message, which says what to do.
func grpcMessage(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.Unavailable && strings.Contains(st.Message(), "authentication handshake failed") {
		_, cause, _ := strings.Cut(st.Message(), "authentication handshake failed: ")
		return fmt.Errorf("the JobManager and this client do not trust each other (%s): a standalone JobManager takes clients that hold its secret file (--secret-file, default ~/.loom/flink-secret); an application's JobManager takes its owner and the cluster's admins (--app APP)", strings.TrimSuffix(cause, `"`))
	}
	if st.Code() == codes.Unavailable {
		cause := st.Message()
		if strings.Contains(cause, "connection refused") {
			cause = "connection refused"
		}
		return fmt.Errorf("cannot reach the JobManager (%s): is `loom jobmanager` running at the --jobmanager address, or the --app/--session application still running?", cause)
	}
	return errors.New(st.Message())
}

// interruptedReason is why an attached client canceled its job: the
// signal that interrupted it.
func interruptedReason(ctx context.Context) string {
	why := "interrupted"
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		why += " (" + c.Error() + ")"
	}
	return "the attached `loom run` was " + why
}

// byUser is " by NAME" of the user running the command, "" when unknown.
func byUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return " by " + u.Username
	}
	return ""
}
