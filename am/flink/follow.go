package flink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/client"
	"github.com/loom-project/loom/flinkrt/jobmanager"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// AppTerminal reports whether an application has ended.
func AppTerminal(s yarnpb.AppState) bool {
	return s == yarnpb.AppState_APP_FINISHED || s == yarnpb.AppState_APP_FAILED || s == yarnpb.AppState_APP_KILLED
}

// JobManagerAddr returns the gRPC address of a Flink application's
// JobManager from its report, or an error that says why there is none.
func JobManagerAddr(a *yarnpb.ApplicationReport) (string, error) {
	if a.Type != AppType {
		return "", errdefs.InvalidArgument("application %s is a %s application, not a Flink one", a.Id, a.Type)
	}
	if AppTerminal(a.State) {
		return "", errdefs.FailedPrecondition("application %s has ended (%s, %s); its JobManager is gone", a.Id, yarnpb.StateName(a.State.String()), a.FinalStatus)
	}
	for _, at := range a.Attempts {
		if at.Id == a.CurrentAttemptId && at.State == yarnpb.AttemptState_ATTEMPT_RUNNING && at.Host != "" && at.RpcPort > 0 {
			return net.JoinHostPort(at.Host, strconv.Itoa(int(at.RpcPort))), nil
		}
	}
	return "", errdefs.Unavailable("application %s is %s: its JobManager is not up yet; try again in a moment", a.Id, yarnpb.StateName(a.State.String()))
}

// DialJobManager connects to the JobManager of application appID at addr
// as rm's user, whose certificate the JobManager checks.
func DialJobManager(rm *rmclient.Client, appID, addr string) (*client.Client, error) {
	return client.Dial(addr, auth.ForUser(rm.TLS(), appID))
}

// Follow reports a per-job application's progress, a line at a time,
// through fn (the application's state, its AM, its TaskManager containers, the job's
// states) until the application ends, and returns the job's last details
// (nil when it never ran) and the application's final report. When ctx
// ends it cancels the job, and kills the application if the job does not
// end by itself soon after.
func Follow(ctx context.Context, rm *rmclient.Client, appID, jobID string, fn func(string)) (*flinkpb.JobDetails, *yarnpb.ApplicationReport, error) {
	var mu sync.Mutex
	report := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		fn(line)
	}
	// The application's reports are followed on a context of their own,
	// so that a Ctrl-C still waits for the application to end.
	appCtx, stopApp := context.WithCancel(context.WithoutCancel(ctx))
	defer stopApp()
	addrs := make(chan string, 8)
	var final *yarnpb.ApplicationReport
	appErr := make(chan error, 1)
	go func() {
		defer close(addrs)
		r, err := followApp(appCtx, rm, appID, report, addrs)
		final = r
		appErr <- err
	}()

	var last *flinkpb.JobDetails
	canceled := false
	cancelJob := func(addr string) {
		if canceled {
			return
		}
		canceled = true
		report("canceling job " + jobID)
		if addr != "" {
			if cl, err := DialJobManager(rm, appID, addr); err == nil {
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err = cl.Dispatcher().CancelJob(cctx, &flinkpb.CancelJobRequest{JobId: jobID, Reason: "the attached `loom run` was interrupted"})
				cancel()
				cl.Close()
				if err == nil {
					go killAfter(appCtx, rm, appID, 15*time.Second)
					return
				}
			}
		}
		kctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = rm.Kill(kctx, appID, "killed by the user who submitted it")
	}
	// After an interrupt the job is followed to its end on appCtx.
	jobCtx := ctx
	for {
		var addr string
		var ok bool
		select {
		case addr, ok = <-addrs:
		case <-jobCtx.Done():
			cancelJob("")
			jobCtx = appCtx
			continue
		}
		if !ok {
			break
		}
		for {
			_, err := followJob(jobCtx, rm, appID, addr, jobID, report, &last)
			if err != nil && jobCtx == ctx && ctx.Err() != nil {
				cancelJob(addr)
				jobCtx = appCtx
				continue
			}
			// A JobManager that went away (its AM ended, or a new
			// attempt follows) is the application's report to tell;
			// anything else is news.
			if err != nil && jobCtx.Err() == nil && status.Code(errors.Unwrap(err)) != codes.Unavailable {
				report("lost the job's JobManager: " + err.Error())
			}
			break
		}
	}
	if err := <-appErr; err != nil {
		return last, nil, err
	}
	return last, final, nil
}

// killAfter kills an application that has not ended after d.
func killAfter(ctx context.Context, rm *rmclient.Client, appID string, d time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(d):
	}
	kctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = rm.Kill(kctx, appID, "its job did not stop within "+d.String()+" of being canceled")
}

// followApp reports an application's changes until it ends, and sends
// the address of each attempt's JobManager as it comes up.
func followApp(ctx context.Context, rm *rmclient.Client, appID string, report func(string), addrs chan<- string) (*yarnpb.ApplicationReport, error) {
	var index uint64
	state := yarnpb.AppState_APP_NEW
	attempt, sentAddr := "", ""
	seen := map[string]bool{}
	for {
		a, idx, err := rm.WatchReport(ctx, appID, true, index, 30*time.Second)
		if err != nil {
			return nil, err
		}
		index = idx
		if a.State != state && !AppTerminal(a.State) {
			state = a.State
			report("application " + appID + " " + yarnpb.StateName(a.State.String()))
		}
		if a.CurrentAttemptId != attempt {
			if attempt != "" {
				report(fmt.Sprintf("attempt %s ended (%s); the ResourceManager started attempt %s", attempt, attemptDiag(a, attempt), a.CurrentAttemptId))
			}
			attempt = a.CurrentAttemptId
		}
		for _, c := range a.Containers {
			if c.State != yarnpb.ContainerState_CONTAINER_RUNNING || seen[c.Id] {
				continue
			}
			seen[c.Id] = true
			if !c.IsAm {
				report(fmt.Sprintf("TaskManager container %s running on %s", c.Id, c.NodeId))
			}
		}
		if addr, err := JobManagerAddr(a); err == nil && addr != sentAddr {
			sentAddr = addr
			report(fmt.Sprintf("ApplicationMaster running on %s; JobManager web interface: %s", a.Host, a.TrackingUrl))
			addrs <- addr
		}
		if AppTerminal(a.State) {
			return a, nil
		}
	}
}

func attemptDiag(a *yarnpb.ApplicationReport, id string) string {
	for _, at := range a.Attempts {
		if at.Id == id {
			if at.Diagnostics != "" {
				return at.Diagnostics
			}
			return yarnpb.StateName(at.State.String())
		}
	}
	return "gone"
}

// followJob reports a job's changes at one JobManager until the job ends
// or the JobManager goes away.
func followJob(ctx context.Context, rm *rmclient.Client, appID, addr, jobID string, report func(string), last **flinkpb.JobDetails) (*flinkpb.JobDetails, error) {
	cl, err := DialJobManager(rm, appID, addr)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var progress client.Progress
	if *last != nil {
		progress.Update(*last) // what was reported from an earlier JobManager
	}
	diag := ""
	d, err := cl.Watch(ctx, jobID, func(d *flinkpb.JobDetails) {
		*last = d
		for _, news := range progress.Update(d) {
			report(news)
		}
		// What a job waits for is news when the wait is long.
		waited := time.Since(time.UnixMilli(d.StartTimeMs))
		if d.State == jobmanager.JobCreated && d.Diagnostic != diag && waited > waitNoteAfter-time.Second {
			diag = d.Diagnostic
			report(d.Diagnostic)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("following the job at %s: %w", addr, err)
	}
	return d, nil
}
