// Package minicluster runs a job inside the program that built it, as
// Flink's MiniCluster does: what `go run ./myjob` and tests use.
package minicluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"loom/flinkrt/graph"
	"loom/flinkrt/task"
	"loom/flinkrt/worker"
	"loom/proto/flinkpb"
)

// Result is how a job ended.
type Result struct {
	JobID    string
	Name     string
	State    string // FINISHED, CANCELED or FAILED
	Duration time.Duration
}

// NewJobID makes a Flink-style job id: 32 hex digits.
func NewJobID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Execute runs the job in this process until it ends. A failure returns
// the root cause; a canceled ctx returns task.ErrCanceled.
func Execute(ctx context.Context, sg *graph.StreamGraph, jg *flinkpb.JobGraph) (*Result, error) {
	res := &Result{JobID: NewJobID(), Name: jg.Name}
	start := time.Now()
	err := worker.RunLocal(ctx, &worker.Job{Graph: sg, Plan: jg, InProcess: true}, nil)
	res.Duration = time.Since(start)
	switch {
	case err == nil:
		res.State = "FINISHED"
	case errors.Is(err, task.ErrCanceled):
		res.State = "CANCELED"
	default:
		res.State = "FAILED"
	}
	return res, err
}
