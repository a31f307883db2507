package flink

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/flinkrt/client"
	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/jobmanager"
	"github.com/loom-project/loom/flinkrt/state/storage"
	"github.com/loom-project/loom/flinkrt/worker"
	"github.com/loom-project/loom/proto/flinkpb"
)

// PlanFile is where, in a checkpointed application-mode job's checkpoint
// directory, its AM keeps the graph it planned: a later attempt runs
// that graph from the job's checkpoints instead of running main again
// (whose graph might differ).
const PlanFile = "jobgraph.pb"

// planOnCluster is an application-mode job's graph: the one an earlier
// attempt planned and kept beside the job's checkpoints, else a plan of
// the program made here (its main run in plan role), kept there for the
// next attempt when the job takes checkpoints. The plan's parallelism
// becomes the workers' as the client sets it in per-job mode.
func planOnCluster(ctx context.Context, cfg AMConfig, job *flinkpb.SubmitJobRequest) (*flinkpb.JobGraph, error) {
	conf := ConfigLines(job.Env[worker.EnvConfig])
	var planFile string
	if conf[jobmanager.ConfCheckpointInterval] != "" {
		dir := conf[jobmanager.ConfCheckpointDir]
		if dir == "" {
			dir = jobmanager.DefaultCheckpointDir()
		}
		planFile = storage.Join(dir, job.JobId, PlanFile)
		b, err := storage.ReadFile(ctx, planFile)
		switch {
		case err == nil:
			jg := &flinkpb.JobGraph{}
			if err := proto.Unmarshal(b, jg); err != nil || graph.Validate(jg) != nil {
				return nil, fmt.Errorf("the job graph an earlier attempt planned, %s, is corrupt: %v", planFile, err)
			}
			fmt.Fprintf(cfg.Out, "flink-am: the job graph an earlier attempt planned, from %s\n", planFile)
			setParallelism(job, jg)
			return jg, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("reading the job graph an earlier attempt may have planned, %s: %w", planFile, err)
		}
	}
	if job.Env == nil {
		job.Env = map[string]string{}
	}
	jg, err := client.Plan(ctx, client.Program{Path: cfg.ArtifactFile, Args: job.Args, Env: job.Env})
	if err != nil {
		return nil, fmt.Errorf("planning the job on the cluster (its main, run in the ApplicationMaster): %w", err)
	}
	setParallelism(job, jg)
	fmt.Fprintf(cfg.Out, "flink-am: planned job %s (%s): %d slots\n", job.JobId, jg.Name, jg.Slots)
	if planFile != "" {
		b, err := proto.Marshal(jg)
		if err != nil {
			return nil, err
		}
		if err := storage.WriteFiles(ctx, storage.Dir(planFile), map[string][]byte{storage.Base(planFile): b}); err != nil {
			return nil, fmt.Errorf("keeping the planned job graph at %s: %w", planFile, err)
		}
	}
	return jg, nil
}

func setParallelism(job *flinkpb.SubmitJobRequest, jg *flinkpb.JobGraph) {
	if p := jg.Config["parallelism.default"]; p != "" {
		if job.Env == nil {
			job.Env = map[string]string{}
		}
		job.Env["LOOM_PARALLELISM"] = p
	}
}
