// Package flink is the Flink ApplicationMaster: it hosts a JobManager
// (Dispatcher, JobMasters, Flink ResourceManager, REST API) inside an AM
// container, with a Driver that gets TaskManagers from the cluster, and
// the client side that submits such applications.
package flink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/jobmanager"
	"github.com/loom-project/loom/flinkrt/state/storage"
	"github.com/loom-project/loom/nm/nmclient"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
)

// AMConfig is what a Flink AM runs.
type AMConfig struct {
	// Mode is per-job or session.
	Mode string
	// JobFile holds a per-job AM's job (a SubmitJobRequest), ArtifactFile
	// the job's program: local resources of the AM's container.
	JobFile      string
	ArtifactFile string
	TaskManager  TaskManagerSpec
	Log          hclog.Logger
	// Out receives the AM's progress, for its container's stdout.
	Out io.Writer
	// WebDir is a dashboard build the JobManager serves; none when empty.
	WebDir string
}

// Env names what the AM is told through its container's environment.
const (
	// EnvTaskManagerResources holds the TaskManagers' local resources as
	// JSON.
	EnvTaskManagerResources = "LOOM_FLINK_TM_RESOURCES"
)

// Final statuses by the job's end state.
func finalStatus(state string) yarnpb.FinalStatus {
	switch state {
	case jobmanager.JobFinished:
		return yarnpb.FinalStatus_SUCCEEDED
	case jobmanager.JobCanceled:
		return yarnpb.FinalStatus_KILLED
	}
	return yarnpb.FinalStatus_FAILED
}

// Modes of the AM.
const (
	ModePerJob  = "per-job"
	ModeSession = "session"
	// ModeApplication is per-job with the program's main run in the AM:
	// the AM plans the job itself.
	ModeApplication = "application"
)

// RunAM runs the Flink AM of the attempt named in the environment
// (LOOM_APP_ATTEMPT_ID, LOOM_RM_ADDRS): it starts a JobManager and
// registers with the RM, the JobManager's gRPC port as its rpc port and
// its REST address as tracking URL. Per-job, it runs the job and
// unregisters with the job's outcome; as a session it takes jobs until it
// is asked to shut down.
func RunAM(ctx context.Context, cfg AMConfig) error {
	attemptID := os.Getenv("LOOM_APP_ATTEMPT_ID")
	addrs := os.Getenv("LOOM_RM_ADDRS")
	if attemptID == "" || addrs == "" {
		return errors.New("`loom am` runs inside an AM container (LOOM_APP_ATTEMPT_ID and LOOM_RM_ADDRS are not set); use `loom run -t per-job` or `loom session start` to start one")
	}
	if cfg.Mode != ModePerJob && cfg.Mode != ModeSession && cfg.Mode != ModeApplication {
		return fmt.Errorf("mode %q: want %s, %s or %s", cfg.Mode, ModePerJob, ModeApplication, ModeSession)
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.TaskManager.Resources == nil {
		res, artifacts, err := ParseTaskManagerResources(os.Getenv(EnvTaskManagerResources))
		if err != nil {
			return err
		}
		cfg.TaskManager.Resources, cfg.TaskManager.Artifacts = res, artifacts
	}
	if cfg.Mode != ModeSession && len(cfg.TaskManager.Artifacts) == 0 {
		return errors.New(EnvTaskManagerResources + " names no job artifact for the TaskManagers")
	}
	if cfg.TaskManager.Slots < 1 || cfg.TaskManager.MemoryMB < 1 || cfg.TaskManager.VCores < 1 {
		return fmt.Errorf("TaskManagers need at least 1 slot, 1 MB and 1 vcore (got %d, %d, %d)", cfg.TaskManager.Slots, cfg.TaskManager.MemoryMB, cfg.TaskManager.VCores)
	}
	var job *flinkpb.SubmitJobRequest
	if cfg.Mode != ModeSession {
		b, err := os.ReadFile(cfg.JobFile)
		if err != nil {
			return fmt.Errorf("reading the job: %w", err)
		}
		job = &flinkpb.SubmitJobRequest{}
		if err := proto.Unmarshal(b, job); err != nil || job.JobId == "" || (job.JobGraph == nil) != (cfg.Mode == ModeApplication) {
			return fmt.Errorf("%s is not a %s job: %v", cfg.JobFile, cfg.Mode, err)
		}
	}
	id, creds, err := containerIdentity()
	if err != nil {
		return err
	}
	cfg.TaskManager.Credentials = creds
	rm, err := rmclient.NewFromList(addrs, id)
	if err != nil {
		return err
	}
	defer rm.Close()
	a := &am{cfg: cfg, rm: rm, host: hostOf(os.Getenv("LOOM_NM_ADDR")), shutdown: make(chan string, 1), failed: make(chan string, 1)}
	a.driver = newDriver(cfg.TaskManager, cfg.Log.Named("driver"), nmclient.New(id))
	a.driver.logClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: id.ClientConfig(tlsutil.NodeName), TLSHandshakeTimeout: 10 * time.Second,
	}}
	// The JobManager serves the application's own TaskManagers and
	// workers, which hold the same certificate, and its user.
	trust, err := auth.FromBundle(id, auth.Admins())
	if err != nil {
		return err
	}
	a.jm, err = jobmanager.New(jobmanager.Config{
		Addr: net.JoinHostPort(a.host, "0"), RestAddr: net.JoinHostPort(a.host, "0"), Dir: "jobmanager",
		Log: cfg.Log, Driver: a.driver, Trust: trust, LogDir: os.Getenv("LOOM_LOG_DIR"), WebDir: cfg.WebDir,
	})
	if err != nil {
		return err
	}
	a.driver.jmAddr, a.driver.rm, a.driver.onStatus = a.jm.Addr(), a.jm.ResourceManager(), a.jm.NoteWaiting
	amToken, err := tlsutil.ContainerAMToken()
	if err != nil {
		return err
	}
	a.amrm = rm.NewAMRMClient(attemptID, amToken, rmclient.Handler{
		ContainersAllocated: a.driver.allocated,
		ContainersCompleted: a.driver.completed,
		ContainersPreempted: a.driver.preempted,
		ShutdownRequested:   func() { a.stop("the ResourceManager ended this attempt") },
		Error:               func(err error) { cfg.Log.Warn("talking to the ResourceManager", "error", err) },
	})
	a.driver.amrm = a.amrm

	jmCtx, stopJM := context.WithCancel(context.WithoutCancel(ctx))
	jmDone := make(chan error, 1)
	go func() { jmDone <- a.jm.Run(jmCtx) }()
	defer func() {
		stopJM()
		<-jmDone
	}()
	var j *jobmanager.JobMaster
	if cfg.Mode == ModeApplication {
		jg, err := planOnCluster(ctx, cfg, job)
		if err != nil {
			return a.unregisterFailed(ctx, err.Error())
		}
		job.JobGraph = jg
	}
	if job != nil {
		// The job goes in before the AM registers, so that whoever finds
		// the JobManager through the RM finds the job, and the first
		// heartbeat carries its container asks.
		if err := a.jm.AddArtifact(job.Artifact, cfg.ArtifactFile); err != nil {
			return a.unregisterFailed(ctx, "the job's program is missing from the AM container: "+err.Error())
		}
		if _, err := a.jm.SubmitJob(ctx, job); err != nil {
			return a.unregisterFailed(ctx, "the job was refused: "+err.Error())
		}
		if j, err = a.jm.Job(job.JobId); err != nil {
			return err
		}
		a.driver.setFatal(j.Fail)
	} else {
		a.driver.setFatal(func(cause string) {
			select {
			case a.failed <- cause:
			default:
			}
		})
	}

	// The tracking URL is the dashboard link with its web token, which
	// the ResourceManager shows only to the owner and admins.
	trackingURL := a.jm.WebURL()
	_, port, _ := net.SplitHostPort(a.jm.Addr())
	rpcPort, _ := strconv.Atoi(port)
	reg, err := a.amrm.Register(ctx, a.host, int32(rpcPort), trackingURL)
	if err != nil {
		return fmt.Errorf("registering the AM: %w", err)
	}
	// Before the first heartbeat sends the asks: the previous attempt's
	// TaskManagers count as starting, so no container is asked for them.
	a.driver.adopt(reg.ContainersFromPreviousAttempts)
	fmt.Fprintf(cfg.Out, "flink-am: %s registered (%s); JobManager at %s, web interface at http://%s (its link with the token: `loom app status`)\n", attemptID, cfg.Mode, a.jm.Addr(), a.jm.RestAddr())
	a.amrm.Start(ctx)
	driverCtx, stopDriver := context.WithCancel(ctx)
	defer stopDriver()
	go a.driver.run(driverCtx)
	if j == nil {
		return a.runSession(ctx)
	}
	fmt.Fprintf(cfg.Out, "flink-am: job %s (%s) submitted, %d slots in TaskManagers of %d slots\n", job.JobId, job.JobGraph.Name, job.JobGraph.Slots, cfg.TaskManager.Slots)
	return a.runJob(ctx, j)
}

// am is a running Flink AM.
type am struct {
	cfg    AMConfig
	rm     *rmclient.Client
	amrm   *rmclient.AMRMClient
	host   string
	driver *Driver
	jm     *jobmanager.JobManager
	// shutdown says why the RM ended the attempt; failed why a session's
	// driver gave up.
	shutdown chan string
	failed   chan string
}

// stop ends the AM without unregistering: the RM has ended the attempt.
func (a *am) stop(why string) {
	select {
	case a.shutdown <- why:
	default:
	}
}

// runJob waits for the per-job AM's job to end and unregisters with its
// outcome.
func (a *am) runJob(ctx context.Context, j *jobmanager.JobMaster) error {
	var d *flinkpb.JobDetails
	for d = j.Details(false); !jobmanager.JobTerminal(d.State); d = j.Details(false) {
		select {
		case <-ctx.Done():
			j.Cancel("the ApplicationMaster stopped: " + context.Cause(ctx).Error())
			a.driver.Stop()
			return context.Cause(ctx)
		case why := <-a.shutdown:
			j.Cancel(why)
			a.driver.Stop()
			return errors.New(why)
		default:
		}
		j.Wait(ctx, d.Version+1, time.Second)
	}
	// A job that restarted and then finished did not fail: its earlier
	// failure is no part of how it ended.
	diag := fmt.Sprintf("job %s %s", d.JobId, d.State)
	switch {
	case d.EndReason != "":
		diag += ": " + d.EndReason
	case d.State == jobmanager.JobFailed && d.Failure != "":
		diag += ": " + d.Failure
	}
	if d.Restarts > 0 && d.State != jobmanager.JobFailed {
		diag += " (after " + plural(int(d.Restarts), "restart") + ")"
	}
	fmt.Fprintf(a.cfg.Out, "flink-am: %s\n", diag)
	return a.finish(ctx, finalStatus(d.State), diag)
}

// runSession serves jobs until a client asks the session to shut down:
// then its jobs are canceled, its TaskManagers stopped, and it
// unregisters SUCCEEDED.
func (a *am) runSession(ctx context.Context) error {
	select {
	case <-ctx.Done():
		a.jm.CancelAll(context.Background(), "the session's ApplicationMaster stopped", 5*time.Second)
		a.driver.Stop()
		return context.Cause(ctx)
	case why := <-a.shutdown:
		a.jm.CancelAll(ctx, why, 5*time.Second)
		a.driver.Stop()
		return errors.New(why)
	case cause := <-a.failed:
		fmt.Fprintf(a.cfg.Out, "flink-am: the session failed: %s\n", cause)
		a.jm.CancelAll(ctx, "the session failed: "+cause, 30*time.Second)
		return a.finish(ctx, yarnpb.FinalStatus_FAILED, "the session failed: "+cause)
	case why := <-a.jm.ShutdownRequested():
		fmt.Fprintf(a.cfg.Out, "flink-am: shutting the session down: %s\n", why)
		a.jm.CancelAll(ctx, "the session was stopped: "+why, 30*time.Second)
		return a.finish(ctx, yarnpb.FinalStatus_SUCCEEDED, "session stopped: "+why)
	}
}

// finish stops the TaskManagers and unregisters.
func (a *am) finish(ctx context.Context, status yarnpb.FinalStatus, diag string) error {
	a.driver.Stop()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.rm.RetryFor)
	defer cancel()
	fmt.Fprintf(a.cfg.Out, "flink-am: unregistering with final status %s\n", status)
	if err := a.amrm.Finish(fctx, status, diag, ""); err != nil {
		return fmt.Errorf("unregistering the AM: %w", err)
	}
	return nil
}

// unregisterFailed ends an attempt that could not start its job: it
// registers only to unregister FAILED with the reason.
func (a *am) unregisterFailed(ctx context.Context, diag string) error {
	fmt.Fprintf(a.cfg.Out, "flink-am: %s\n", diag)
	if _, err := a.amrm.Register(ctx, a.host, 0, ""); err != nil {
		return fmt.Errorf("registering the AM: %w", err)
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := a.amrm.Finish(fctx, yarnpb.FinalStatus_FAILED, diag, ""); err != nil {
		return fmt.Errorf("unregistering the AM: %w", err)
	}
	return nil
}

// hostOf is the host of a host:port address, or this machine's name.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil && h != "" {
		return h
	}
	h, _ := os.Hostname()
	return h
}

// containerIdentity loads the application's identity that the RM gave
// this AM container, and its files to hand on to the containers it
// starts.
func containerIdentity() (*tlsutil.Bundle, map[string][]byte, error) {
	id, err := tlsutil.LoadContainer()
	if err != nil {
		return nil, nil, err
	}
	creds, err := tlsutil.ContainerCredentials()
	if err != nil {
		return nil, nil, err
	}
	// The job's object-store settings, if it was given them, go on to
	// its TaskManagers.
	f, _ := tlsutil.ContainerFiles()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(f.CA), storage.CredentialFile))
	switch {
	case err == nil:
		creds[storage.CredentialFile] = b
	case !errors.Is(err, fs.ErrNotExist):
		return nil, nil, err
	}
	return id, creds, nil
}
