package flink

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/flinkrt/client"
	"github.com/loom-project/loom/flinkrt/jobmanager"
	"github.com/loom-project/loom/flinkrt/state/storage"
	"github.com/loom-project/loom/flinkrt/worker"
	"github.com/loom-project/loom/proto/flinkpb"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
)

// AppType is the application type of Flink applications, as YARN shows
// Flink's.
const AppType = "Apache Flink"

// Options describe the cluster a per-job application brings up.
type Options struct {
	Name        string
	Queue       string
	Priority    int32
	SlotsPerTM  int
	TMMemoryMB  int64
	TMVCores    int32
	JMMemoryMB  int64
	MaxAttempts int32
	// MaxFailedContainers bounds the TaskManager containers that may fail
	// within FailureInterval before the job fails.
	MaxFailedContainers int
	FailureInterval     time.Duration
	// LoomBinary is the loom executable shipped to the containers; this
	// process's own when empty.
	LoomBinary string
	// WebDir is a dashboard build (Flink's web-dashboard/web) the
	// JobManager serves at / of its REST address; none when empty.
	WebDir string
	// SpreadTaskManagers keeps the TaskManagers on distinct nodes
	// (anti-affinity: at most one a node); TMNodeLabel puts them on the
	// nodes of a label the queue may use.
	SpreadTaskManagers bool
	TMNodeLabel        string
}

// DefaultOptions are the defaults of `loom run -t per-job`.
var DefaultOptions = Options{SlotsPerTM: 1, TMMemoryMB: 512, TMVCores: 1, JMMemoryMB: 256, MaxFailedContainers: 3, FailureInterval: DefaultFailureInterval}

// Submission is a submitted per-job application.
type Submission struct {
	AppID, JobID string
	// TaskManagers is how many TaskManager containers the job needs.
	TaskManagers int
	// Timings of the client's steps.
	Staged time.Duration
}

// Validate checks the options before anything is sent.
func (o *Options) Validate() error {
	switch {
	case o.SlotsPerTM < 1 || o.SlotsPerTM > 1024:
		return errdefs.InvalidArgument("--slots-per-tm %d: want 1..1024", o.SlotsPerTM)
	case o.TMMemoryMB < 64:
		return errdefs.InvalidArgument("--tm-memory-mb %d: a TaskManager needs at least 64 MB", o.TMMemoryMB)
	case o.JMMemoryMB < 64:
		return errdefs.InvalidArgument("--jm-memory-mb %d: the JobManager needs at least 64 MB", o.JMMemoryMB)
	case o.TMVCores < 1:
		return errdefs.InvalidArgument("--tm-vcores %d: want at least 1", o.TMVCores)
	case o.FailureInterval < 0:
		return errdefs.InvalidArgument("--failure-interval %s: want a positive duration", o.FailureInterval)
	case o.MaxFailedContainers < 0:
		return errdefs.InvalidArgument("--max-failed-containers %d: want 0 or more", o.MaxFailedContainers)
	case o.TMNodeLabel != "" && !yarnpb.NodeLabel(o.TMNodeLabel):
		return errdefs.InvalidArgument("--tm-node-label %q: a node label is 1 to 128 letters, digits, '.', '_' and '-'", o.TMNodeLabel)
	}
	return checkWebDir(o.WebDir)
}

// checkQueue checks what the options ask of the queue: that it may use
// the TaskManagers' node label.
func (o *Options) checkQueue(ctx context.Context, rm *rmclient.Client) error {
	if o.TMNodeLabel == "" {
		return nil
	}
	qs, err := rm.Queues(ctx, o.Queue)
	if err != nil {
		return err
	}
	for _, q := range qs {
		if !slices.Contains(q.NodeLabels, o.TMNodeLabel) && !slices.Contains(q.NodeLabels, "*") {
			return errdefs.InvalidArgument("--tm-node-label %s: queue %s may not use nodes of that label (its accessible_node_labels: %s)", o.TMNodeLabel, q.Name, cmp.Or(strings.Join(q.NodeLabels, ", "), "none"))
		}
	}
	return nil
}

// SubmitPerJob ships a planned job (its program, its JobGraph and the
// loom binary, through the RM's staging store) and submits the
// application whose AM runs it.
func SubmitPerJob(ctx context.Context, rm *rmclient.Client, prog client.Program, jg *flinkpb.JobGraph, o Options) (*Submission, error) {
	return submit(ctx, rm, prog, jg, o)
}

// SubmitApplication submits the program in application mode: only the
// program and its arguments are shipped, and the AM plans the job itself
// (runs the program's main) before its JobManager runs it, as Flink's
// yarn-application target.
func SubmitApplication(ctx context.Context, rm *rmclient.Client, prog client.Program, o Options) (*Submission, error) {
	return submit(ctx, rm, prog, nil, o)
}

// submit stages the program and submits its application: per-job with
// the graph the client planned, in application mode without one.
func submit(ctx context.Context, rm *rmclient.Client, prog client.Program, jg *flinkpb.JobGraph, o Options) (*Submission, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	app, err := rm.NewApplication(ctx)
	if err != nil {
		return nil, err
	}
	if err := o.fits(app.MaxCapability); err != nil {
		return nil, err
	}
	if err := o.checkQueue(ctx, rm); err != nil {
		return nil, err
	}
	bin, err := o.loomBinary()
	if err != nil {
		return nil, err
	}
	prog.Path, err = filepath.Abs(prog.Path)
	if err != nil {
		return nil, err
	}

	began := time.Now()
	var loomRes, progRes *yarnpb.LocalResource
	var loomErr, progErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		loomRes, loomErr = rm.Stage(ctx, app.StagingUrl, bin, "loom", true)
	}()
	go func() {
		defer wg.Done()
		progRes, progErr = rm.Stage(ctx, app.StagingUrl, prog.Path, "job", true)
	}()
	wg.Wait()
	if loomErr != nil {
		return nil, fmt.Errorf("staging the loom binary: %w", loomErr)
	}
	if progErr != nil {
		return nil, fmt.Errorf("staging the job program: %w", progErr)
	}
	jobID := jobmanager.NewJobID()
	req := &flinkpb.SubmitJobRequest{
		JobGraph: jg, JobId: jobID, Args: prog.Args, Env: prog.Env, SubmittedMs: began.UnixMilli(),
		Artifact: &flinkpb.BlobKey{Sha256: progRes.Sha256, Size: progRes.Size},
	}
	jobRes, err := stageBytes(ctx, rm, app.StagingUrl, req, "job.pb")
	if err != nil {
		return nil, fmt.Errorf("staging the job: %w", err)
	}
	staged := time.Since(began)

	tmRes, err := json.Marshal([]*yarnpb.LocalResource{loomRes, progRes})
	if err != nil {
		return nil, err
	}
	mode, conf := ModePerJob, jg.GetConfig()
	if jg == nil {
		mode, conf = ModeApplication, ConfigLines(prog.Env[worker.EnvConfig])
	}
	creds, err := objectStoreCredentials(usesObjectStore(conf))
	if err != nil {
		return nil, err
	}
	amRes := []*yarnpb.LocalResource{loomRes, progRes, jobRes}
	cmd := append([]string{"./loom", "am", "--mode", mode, "--job", "job.pb", "--artifact", "job"}, o.amFlags()...)
	if o.WebDir != "" {
		web, err := stageWebDir(ctx, rm, app.StagingUrl, o.WebDir)
		if err != nil {
			return nil, err
		}
		amRes = append(amRes, web)
		cmd = append(cmd, "--web-dir", WebDirResource)
	}
	name := o.Name
	if name == "" {
		name = jg.GetName()
	}
	if name == "" {
		name = filepath.Base(prog.Path)
	}
	err = rm.Submit(ctx, &yarnpb.ApplicationSubmissionContext{
		ApplicationId: app.ApplicationId,
		Name:          name,
		Queue:         o.Queue,
		Type:          AppType,
		User:          rm.User(),
		Priority:      o.Priority,
		MaxAttempts:   o.MaxAttempts,
		Tags:          []string{mode, "flink-job-id:" + jobID},
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
		return nil, err
	}
	slots := int(jg.GetSlots())
	return &Submission{AppID: app.ApplicationId, JobID: jobID, TaskManagers: (slots + o.SlotsPerTM - 1) / o.SlotsPerTM, Staged: staged}, nil
}

// ConfigLines reads the job configuration given at run time (key=value
// lines, worker.EnvConfig).
func ConfigLines(s string) map[string]string {
	conf := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			conf[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return conf
}

// usesObjectStore reports whether a job's configuration keeps its
// checkpoints or savepoints, or starts from state, in an object store.
func usesObjectStore(conf map[string]string) bool {
	for _, k := range []string{jobmanager.ConfCheckpointDir, jobmanager.ConfSavepointDir, jobmanager.ConfSavepointPath} {
		if loc, err := storage.Normalize(conf[k]); err == nil && storage.IsObjectStore(loc) {
			return true
		}
	}
	return false
}

// objectStoreCredentials carries the submitter's S3 settings (the AWS_*
// variables of its environment) into the AM's container, and from there
// to its TaskManagers', when want is set and there are any. They are the
// job's: no NodeManager's environment reaches a container.
func objectStoreCredentials(want bool) (map[string][]byte, error) {
	if !want {
		return nil, nil
	}
	cfg, err := storage.S3ConfigFromEnv()
	if err != nil || cfg.Empty() {
		return nil, err
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if len(b) > yarnpb.MaxCredentialBytes {
		return nil, fmt.Errorf("the S3 settings to give the job are %d bytes, at most %d are allowed: %s names %d bytes of certificates; name a file with only the store's CA", len(b), yarnpb.MaxCredentialBytes, storage.EnvCABundle, len(cfg.CAPEM))
	}
	return map[string][]byte{storage.CredentialFile: b}, nil
}

// stageBytes stages a message as a file named name in the container.
func stageBytes(ctx context.Context, rm *rmclient.Client, stagingURL string, m proto.Message, name string) (*yarnpb.LocalResource, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp("", "loom-stage-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return rm.Stage(ctx, stagingURL, f.Name(), name, false)
}

// ParseTaskManagerResources reads the TaskManagers' local resources from
// the AM's environment, and which of them are job artifacts.
func ParseTaskManagerResources(s string) ([]*yarnpb.LocalResource, map[string]string, error) {
	var res []*yarnpb.LocalResource
	if err := json.Unmarshal([]byte(s), &res); err != nil {
		return nil, nil, fmt.Errorf("%s is not a JSON list of local resources: %w", EnvTaskManagerResources, err)
	}
	artifacts := map[string]string{}
	for _, r := range res {
		if r.GetName() != "loom" && r.GetSha256() != "" {
			artifacts[r.Sha256] = r.Name
		}
	}
	return res, artifacts, nil
}
