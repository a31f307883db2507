package flink

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

// sessionTag marks session applications.
const sessionTag = "session"

// SessionOptions describe a session cluster.
type SessionOptions struct {
	Options
	// IdleTimeout is how long a TaskManager with no job stays.
	IdleTimeout time.Duration
	// MaxSlots caps the session's slots (0: no cap).
	MaxSlots int
}

// DefaultSessionOptions are the defaults of `loom session start`.
var DefaultSessionOptions = SessionOptions{Options: DefaultOptions, IdleTimeout: 30 * time.Second}

// StartSession stages the loom binary and submits a session application:
// an AM whose JobManager takes jobs until it is stopped. It returns the
// application id.
func StartSession(ctx context.Context, rm *rmclient.Client, o SessionOptions) (string, error) {
	if err := o.Validate(); err != nil {
		return "", err
	}
	if o.IdleTimeout < 0 || o.MaxSlots < 0 {
		return "", errdefs.InvalidArgument("--idle-timeout and --max-slots must not be negative")
	}
	if o.MaxSlots > 0 && o.MaxSlots < o.SlotsPerTM {
		return "", errdefs.InvalidArgument("--max-slots %d is less than one TaskManager's %d slots", o.MaxSlots, o.SlotsPerTM)
	}
	app, err := rm.NewApplication(ctx)
	if err != nil {
		return "", err
	}
	if err := o.checkQueue(ctx, rm); err != nil {
		return "", err
	}
	if err := o.fits(app.MaxCapability); err != nil {
		return "", err
	}
	bin, err := o.loomBinary()
	if err != nil {
		return "", err
	}
	loomRes, err := rm.Stage(ctx, app.StagingUrl, bin, "loom", true)
	if err != nil {
		return "", fmt.Errorf("staging the loom binary: %w", err)
	}
	tmRes, err := json.Marshal([]*yarnpb.LocalResource{loomRes})
	if err != nil {
		return "", err
	}
	// A session's jobs come later, and any may keep its state in an
	// object store.
	creds, err := objectStoreCredentials(true)
	if err != nil {
		return "", err
	}
	cmd := append([]string{"./loom", "am", "--mode", ModeSession}, o.amFlags()...)
	cmd = append(cmd, "--idle-timeout", o.IdleTimeout.String(), "--max-slots", strconv.Itoa(o.MaxSlots))
	amRes := []*yarnpb.LocalResource{loomRes}
	if o.WebDir != "" {
		web, err := stageWebDir(ctx, rm, app.StagingUrl, o.WebDir)
		if err != nil {
			return "", err
		}
		amRes = append(amRes, web)
		cmd = append(cmd, "--web-dir", WebDirResource)
	}
	name := o.Name
	if name == "" {
		name = "Flink session cluster"
	}
	err = rm.Submit(ctx, &yarnpb.ApplicationSubmissionContext{
		ApplicationId: app.ApplicationId,
		Name:          name,
		Queue:         o.Queue,
		Type:          AppType,
		User:          rm.User(),
		Priority:      o.Priority,
		MaxAttempts:   o.MaxAttempts,
		Tags:          []string{sessionTag},
		// A new AM attempt takes over the TaskManagers of the last one,
		// which find its JobManager through the RM.
		KeepContainersAcrossAttempts: true,
		AmResource:                   &yarnpb.Resource{MemoryMb: o.JMMemoryMB, Vcores: 1},
		AmContainer: &yarnpb.ContainerLaunchContext{
			Command:        cmd,
			Env:            map[string]string{EnvTaskManagerResources: string(tmRes)},
			LocalResources: amRes,
			Credentials:    creds,
		},
	})
	if err != nil {
		return "", err
	}
	return app.ApplicationId, nil
}

// IsSession reports whether an application is a session cluster.
func IsSession(a *yarnpb.ApplicationReport) bool {
	return a.Type == AppType && slices.Contains(a.Tags, sessionTag)
}

// Sessions lists the session clusters that have not ended; all includes
// other users'.
func Sessions(ctx context.Context, rm *rmclient.Client, all bool) ([]*yarnpb.ApplicationReport, error) {
	apps, err := rm.ListApps(ctx, false)
	if err != nil {
		return nil, err
	}
	me := rm.User()
	var out []*yarnpb.ApplicationReport
	for _, a := range apps {
		if IsSession(a) && !AppTerminal(a.State) && (all || a.User == me) {
			out = append(out, a)
		}
	}
	return out, nil
}

// FindSession returns the report of the session to submit to: id when
// given, else the user's one running session.
func FindSession(ctx context.Context, rm *rmclient.Client, id string) (*yarnpb.ApplicationReport, error) {
	if id != "" {
		a, err := rm.Report(ctx, id, false)
		if err != nil {
			return nil, err
		}
		if !IsSession(a) {
			return nil, errdefs.InvalidArgument("application %s is not a session cluster; `loom session list` shows the sessions", id)
		}
		return a, nil
	}
	sessions, err := Sessions(ctx, rm, false)
	if err != nil {
		return nil, err
	}
	switch len(sessions) {
	case 0:
		return nil, errdefs.NotFound("%s has no running session cluster: start one with `loom session start -d`, or run the job in an application of its own with -t per-job", rm.User())
	case 1:
		return sessions[0], nil
	}
	var ids []string
	for _, s := range sessions {
		ids = append(ids, s.Id)
	}
	return nil, errdefs.InvalidArgument("%d session clusters are running (%s): choose one with --session", len(ids), strings.Join(ids, ", "))
}

// StopSession asks a session's JobManager to shut the session down (its
// jobs canceled, its containers released) and waits for the application
// to end.
func StopSession(ctx context.Context, rm *rmclient.Client, id string) (*yarnpb.ApplicationReport, error) {
	a, err := rm.Report(ctx, id, false)
	if err != nil {
		return nil, err
	}
	if !IsSession(a) {
		return nil, errdefs.InvalidArgument("application %s is not a session cluster; stop other applications with `loom app kill`", id)
	}
	addr, err := JobManagerAddr(a)
	if err != nil {
		return nil, err
	}
	cl, err := DialJobManager(rm, id, addr)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = cl.Dispatcher().ShutDownCluster(cctx, &flinkpb.ShutDownClusterRequest{Reason: "stopped by " + rm.User()})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("asking the session's JobManager at %s to shut down: %w (`loom app kill %s` kills it instead)", addr, err, id)
	}
	return rm.WaitFinished(ctx, id, nil)
}

// amFlags are the AM's TaskManager flags for these options.
func (o *Options) amFlags() []string {
	flags := []string{
		"--slots-per-tm", strconv.Itoa(o.SlotsPerTM),
		"--tm-memory-mb", strconv.FormatInt(o.TMMemoryMB, 10),
		"--tm-vcores", strconv.Itoa(int(o.TMVCores)),
		"--max-failed-containers", strconv.Itoa(o.MaxFailedContainers),
		"--failure-interval", cmp.Or(o.FailureInterval, DefaultFailureInterval).String(),
	}
	if o.SpreadTaskManagers {
		flags = append(flags, "--spread-taskmanagers")
	}
	if o.TMNodeLabel != "" {
		flags = append(flags, "--tm-node-label", o.TMNodeLabel)
	}
	return flags
}

// fits checks the containers asked for against the cluster's maximum
// allocation.
func (o *Options) fits(max *yarnpb.Resource) error {
	if max == nil {
		return nil
	}
	for _, c := range []struct {
		flag string
		mb   int64
	}{{"--tm-memory-mb", o.TMMemoryMB}, {"--jm-memory-mb", o.JMMemoryMB}} {
		if c.mb > max.MemoryMb {
			return errdefs.InvalidArgument("%s %d exceeds the cluster's maximum allocation of %d MB; ask for less", c.flag, c.mb, max.MemoryMb)
		}
	}
	if o.TMVCores > max.Vcores {
		return errdefs.InvalidArgument("--tm-vcores %d exceeds the cluster's maximum allocation of %d vcores", o.TMVCores, max.Vcores)
	}
	return nil
}

// loomBinary is the loom executable to ship.
func (o *Options) loomBinary() (string, error) {
	if o.LoomBinary != "" {
		return o.LoomBinary, nil
	}
	bin, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the loom binary: %w", err)
	}
	return bin, nil
}
