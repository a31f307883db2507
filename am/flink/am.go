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
	"net"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"

	"loom/flinkrt/jobmanager"
	"loom/nm/nmclient"
	"loom/proto/flinkpb"
	"loom/proto/yarnpb"
	"loom/rm/rmclient"
)

// AMConfig is what a Flink AM runs.
type AMConfig struct {
	// JobFile holds the job to run (a SubmitJobRequest), ArtifactFile the
	// job's program: local resources of the AM's container.
	JobFile      string
	ArtifactFile string
	TaskManager  TaskManagerSpec
	Log          hclog.Logger
	// Out receives the AM's progress, for its container's stdout.
	Out io.Writer
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

// RunPerJob runs the per-job AM of the attempt named in the environment
// (LOOM_APP_ATTEMPT_ID, LOOM_RM_ADDRS): it starts a JobManager, registers
// with the RM with the JobManager's REST address as tracking URL, runs
// the job, and unregisters with the job's outcome.
func RunPerJob(ctx context.Context, cfg AMConfig) error {
	attemptID := os.Getenv("LOOM_APP_ATTEMPT_ID")
	addrs := os.Getenv("LOOM_RM_ADDRS")
	if attemptID == "" || addrs == "" {
		return errors.New("`loom am` runs inside an AM container (LOOM_APP_ATTEMPT_ID and LOOM_RM_ADDRS are not set); use `loom run -t per-job` to start one")
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	b, err := os.ReadFile(cfg.JobFile)
	if err != nil {
		return fmt.Errorf("reading the job: %w", err)
	}
	var job flinkpb.SubmitJobRequest
	if err := proto.Unmarshal(b, &job); err != nil || job.JobGraph == nil || job.JobId == "" {
		return fmt.Errorf("%s is not a job: %v", cfg.JobFile, err)
	}
	if cfg.TaskManager.Slots < 1 || cfg.TaskManager.MemoryMB < 1 || cfg.TaskManager.VCores < 1 {
		return fmt.Errorf("TaskManagers need at least 1 slot, 1 MB and 1 vcore (got %d, %d, %d)", cfg.TaskManager.Slots, cfg.TaskManager.MemoryMB, cfg.TaskManager.VCores)
	}
	rm, err := rmclient.NewFromList(addrs)
	if err != nil {
		return err
	}
	defer rm.Close()
	host := hostOf(os.Getenv("LOOM_NM_ADDR"))

	driver := newDriver(cfg.TaskManager, cfg.Log.Named("driver"), nmclient.New())
	jm, err := jobmanager.New(jobmanager.Config{
		Addr: net.JoinHostPort(host, "0"), RestAddr: net.JoinHostPort(host, "0"), Dir: "jobmanager",
		Log: cfg.Log, Driver: driver,
	})
	if err != nil {
		return err
	}
	driver.jmAddr, driver.rm, driver.onStatus = jm.Addr(), jm.ResourceManager(), jm.NoteWaiting

	shutdown := make(chan string, 1)
	amrm := rm.NewAMRMClient(attemptID, rmclient.Handler{
		ContainersAllocated: driver.allocated,
		ContainersCompleted: driver.completed,
		ShutdownRequested: func() {
			select {
			case shutdown <- "the ResourceManager ended this attempt":
			default:
			}
		},
		Error: func(err error) { cfg.Log.Warn("talking to the ResourceManager", "error", err) },
	})
	driver.amrm = amrm

	jmCtx, stopJM := context.WithCancel(context.WithoutCancel(ctx))
	jmDone := make(chan error, 1)
	go func() { jmDone <- jm.Run(jmCtx) }()
	defer func() {
		stopJM()
		<-jmDone
	}()
	// The job goes in before the AM registers, so that whoever finds the
	// JobManager through the RM finds the job, and the first heartbeat
	// carries its container asks.
	if err := jm.AddArtifact(job.Artifact, cfg.ArtifactFile); err != nil {
		return unregisterFailed(ctx, amrm, host, "the job's program is missing from the AM container: "+err.Error(), cfg.Out)
	}
	if _, err := jm.SubmitJob(ctx, &job); err != nil {
		return unregisterFailed(ctx, amrm, host, "the job was refused: "+err.Error(), cfg.Out)
	}
	j, err := jm.Job(job.JobId)
	if err != nil {
		return err
	}
	driver.setFatal(j.Fail)

	trackingURL := "http://" + jm.RestAddr()
	_, port, _ := net.SplitHostPort(jm.Addr())
	rpcPort, _ := strconv.Atoi(port)
	if _, err := amrm.Register(ctx, host, int32(rpcPort), trackingURL); err != nil {
		return fmt.Errorf("registering the AM: %w", err)
	}
	fmt.Fprintf(cfg.Out, "flink-am: %s registered; JobManager at %s, web interface %s\n", attemptID, jm.Addr(), trackingURL)
	amrm.Start(ctx)
	driverCtx, stopDriver := context.WithCancel(ctx)
	defer stopDriver()
	go driver.run(driverCtx)
	fmt.Fprintf(cfg.Out, "flink-am: job %s (%s) submitted, %d slots in TaskManagers of %d slots\n", job.JobId, job.JobGraph.Name, job.JobGraph.Slots, cfg.TaskManager.Slots)

	var d *flinkpb.JobDetails
	for d = j.Details(false); !jobmanager.JobTerminal(d.State); d = j.Details(false) {
		select {
		case <-ctx.Done():
			j.Cancel()
			driver.Stop()
			return context.Cause(ctx)
		case why := <-shutdown:
			j.Cancel()
			driver.Stop()
			return errors.New(why)
		default:
		}
		j.Wait(ctx, d.Version+1, time.Second)
	}
	diag := fmt.Sprintf("job %s %s", job.JobId, d.State)
	if d.Failure != "" {
		diag += ": " + d.Failure
	}
	fmt.Fprintf(cfg.Out, "flink-am: %s\n", diag)
	return finish(ctx, driver, amrm, rm, finalStatus(d.State), diag, cfg.Out)
}

// finish stops the TaskManagers and unregisters.
func finish(ctx context.Context, driver *Driver, amrm *rmclient.AMRMClient, rm *rmclient.Client, status yarnpb.FinalStatus, diag string, out io.Writer) error {
	driver.Stop()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rm.RetryFor)
	defer cancel()
	fmt.Fprintf(out, "flink-am: unregistering with final status %s\n", status)
	if err := amrm.Finish(fctx, status, diag, ""); err != nil {
		return fmt.Errorf("unregistering the AM: %w", err)
	}
	return nil
}

// unregisterFailed ends an attempt that could not start its job: it
// registers only to unregister FAILED with the reason.
func unregisterFailed(ctx context.Context, amrm *rmclient.AMRMClient, host, diag string, out io.Writer) error {
	fmt.Fprintf(out, "flink-am: %s\n", diag)
	if _, err := amrm.Register(ctx, host, 0, ""); err != nil {
		return fmt.Errorf("registering the AM: %w", err)
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := amrm.Finish(fctx, yarnpb.FinalStatus_FAILED, diag, ""); err != nil {
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
