// Package client submits job programs to a JobManager and follows them:
// what `loom run` and `loom job` do.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/loom-project/loom/flinkrt/auth"
	"github.com/loom-project/loom/flinkrt/graph"
	"github.com/loom-project/loom/flinkrt/jobmanager"
	"github.com/loom-project/loom/flinkrt/worker"
	"github.com/loom-project/loom/proto/flinkpb"
)

// Program is a job program and how to run it.
type Program struct {
	// Path is the program's binary.
	Path string
	Args []string
	// Env is the environment the program is planned with and its workers
	// run with (LOOM_PARALLELISM, ...).
	Env map[string]string
}

// Plan runs the program in plan role and returns the JobGraph it built.
func Plan(ctx context.Context, p Program) (*flinkpb.JobGraph, error) {
	path, err := filepath.Abs(p.Path)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("the job program: %w", err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("%s is not an executable: a job program is a Go binary built from a main package that calls env.Execute", p.Path)
	}
	dir, err := os.MkdirTemp("", "loom-plan-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "jobgraph.pb")
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, p.Args...)
	cmd.Env = os.Environ()
	for k, v := range p.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, worker.EnvRole+"="+worker.RolePlan, worker.EnvPlanFile+"="+out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	cmd.WaitDelay = time.Second
	runErr := cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s did not build a job graph within a minute: is it a loom job? (a loom job builds its graph before env.Execute and does nothing else first)", p.Path)
	}
	if runErr != nil {
		if msg == "" {
			msg = runErr.Error()
		}
		return nil, fmt.Errorf("%s could not build its job graph: %s", p.Path, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("%s is not a loom job: it ran without building a job graph (a loom job calls env.Execute from the github.com/loom-project/loom/flinkrt/stream package)", p.Path)
	}
	jg := &flinkpb.JobGraph{}
	if err := proto.Unmarshal(b, jg); err != nil {
		return nil, fmt.Errorf("%s wrote a job graph that does not parse: %w", p.Path, err)
	}
	if err := graph.Validate(jg); err != nil {
		return nil, fmt.Errorf("%s built a malformed job graph: %w", p.Path, err)
	}
	if err := jobmanager.CheckConfig(jg); err != nil {
		return nil, fmt.Errorf("job %s: %w", jg.Name, err)
	}
	return jg, nil
}

// Client talks to a JobManager's Dispatcher.
type Client struct {
	conn *grpc.ClientConn
	d    flinkpb.DispatcherClient
}

// Dial connects to the JobManager at addr with trust: a standalone
// deployment's secret, or a user's certificate for an application's
// JobManager (auth.ForUser).
func Dial(addr string, trust *auth.Trust) (*Client, error) {
	if addr == "" {
		return nil, errors.New("no JobManager address: give --jobmanager host:port")
	}
	conn, err := grpc.NewClient(addr, trust.DialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("JobManager address %q: %w", addr, err)
	}
	return &Client{conn: conn, d: flinkpb.NewDispatcherClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Dispatcher is the JobManager's Dispatcher client.
func (c *Client) Dispatcher() flinkpb.DispatcherClient { return c.d }

// FileKey returns the blob key of a file: its SHA-256 and size.
func FileKey(path string) (*flinkpb.BlobKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, err
	}
	return &flinkpb.BlobKey{Sha256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// Upload sends a file to the blob service and returns its key; key, when
// not nil, is the file's, computed before.
func (c *Client) Upload(ctx context.Context, path string, key *flinkpb.BlobKey) (*flinkpb.BlobKey, error) {
	if key == nil {
		var err error
		if key, err = FileKey(path); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := c.d.UploadBlob(ctx)
	if err != nil {
		return nil, err
	}
	// The key goes first, alone: a blob service that has the file
	// answers at once.
	if err := s.Send(&flinkpb.BlobChunk{Key: key}); err == nil {
		buf := make([]byte, 1<<20)
		for {
			k, rerr := f.Read(buf)
			if k > 0 {
				if err := s.Send(&flinkpb.BlobChunk{Data: buf[:k]}); err != nil {
					break // the server's answer says why
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return nil, rerr
			}
		}
	}
	return s.CloseAndRecv()
}

// Submit plans nothing: it uploads the program and submits jg, which the
// program built, and returns the job id. key, when not nil, is the
// program's blob key, computed before.
func (c *Client) Submit(ctx context.Context, p Program, jg *flinkpb.JobGraph, key *flinkpb.BlobKey) (string, error) {
	key, err := c.Upload(ctx, p.Path, key)
	if err != nil {
		return "", fmt.Errorf("uploading %s: %w", p.Path, err)
	}
	resp, err := c.d.SubmitJob(ctx, &flinkpb.SubmitJobRequest{JobGraph: jg, Artifact: key, Args: p.Args, Env: p.Env})
	if err != nil {
		return "", fmt.Errorf("submitting: %w", err)
	}
	return resp.JobId, nil
}

// Watch calls fn with the job's details each time they change, until the
// job ends or ctx is done, and returns the last details.
func (c *Client) Watch(ctx context.Context, jobID string, fn func(*flinkpb.JobDetails)) (*flinkpb.JobDetails, error) {
	var version uint64
	for first := true; ; first = false {
		req := &flinkpb.GetJobRequest{JobId: jobID, MinVersion: version + 1, WaitMs: 30_000}
		if first {
			req.MinVersion = 0 // the job as it is now, at once
		}
		d, err := c.d.GetJob(ctx, req)
		if err != nil {
			return nil, err
		}
		if first || d.Version != version {
			version = d.Version
			if fn != nil {
				fn(d)
			}
		}
		if d.State == "FINISHED" || d.State == "FAILED" || d.State == "CANCELED" {
			return d, nil
		}
	}
}

// TaskTally counts a job's subtasks, and those RUNNING.
func TaskTally(d *flinkpb.JobDetails) (running, total int) {
	for _, v := range d.Vertices {
		for _, t := range v.Subtasks {
			total++
			if t.State == "RUNNING" {
				running++
			}
		}
	}
	return running, total
}

// Progress follows a watched job and says what is news: a new state, all
// its tasks running, a restart (of the whole job or of some of its
// regions) and its cause.
type Progress struct {
	state      string
	restarts   int32
	allRunning bool
}

// Update returns the news in d since the last update, one line each.
func (p *Progress) Update(d *flinkpb.JobDetails) []string {
	var news []string
	if d.State != p.state {
		p.state = d.State
		p.allRunning = p.allRunning && d.State == "RUNNING"
		news = append(news, fmt.Sprintf("job %s %s", d.Name, d.State))
	}
	if d.Restarts > p.restarts {
		p.restarts, p.allRunning = d.Restarts, false
		what := "the whole job restarts"
		if d.State == "RUNNING" {
			restarting, total := 0, 0
			for _, v := range d.Vertices {
				for _, t := range v.Subtasks {
					total++
					if t.State != "RUNNING" && t.State != "FINISHED" {
						restarting++
					}
				}
			}
			what = fmt.Sprintf("%d of %d tasks restart (region failover)", restarting, total)
		}
		news = append(news, fmt.Sprintf("restart %d: %s; cause: %s", d.Restarts, what, d.Failure))
	}
	if running, total := TaskTally(d); d.State == "RUNNING" && running == total && !p.allRunning {
		p.allRunning = true
		news = append(news, fmt.Sprintf("all %d tasks RUNNING", total))
	}
	return news
}
