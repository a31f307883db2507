// Package dshell is the distributed shell: an ApplicationMaster that runs
// one command in N containers, the classic YARN example application, and
// the client that submits it.
package dshell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/loom-project/loom/nm/nmclient"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/rmclient"
	"github.com/loom-project/loom/tlsutil"
)

// AMConfig is what the distributed shell AM runs.
type AMConfig struct {
	NumContainers int
	MemoryMB      int64
	VCores        int32
	Priority      int32
	Command       []string
	// MaxRetries bounds how many lost containers (node lost, preempted)
	// are replaced.
	MaxRetries int
	Out        io.Writer
}

// am is the state of a running distributed shell.
type am struct {
	cfg  AMConfig
	amrm *rmclient.AMRMClient
	nms  *nmclient.Client
	req  rmclient.ContainerRequest

	mu        sync.Mutex
	launched  int               // containers started or being started
	running   map[string]string // container id -> node
	succeeded int
	retries   int
	failure   string
	wg        sync.WaitGroup
	done      chan struct{}
	closed    bool
}

// RunAM runs the distributed shell AM of the attempt named in the
// environment (LOOM_APP_ATTEMPT_ID, LOOM_RM_ADDRS) until every container
// has exited or one has failed, and unregisters with the outcome.
func RunAM(ctx context.Context, cfg AMConfig) error {
	attemptID := os.Getenv("LOOM_APP_ATTEMPT_ID")
	addrs := os.Getenv("LOOM_RM_ADDRS")
	if attemptID == "" || addrs == "" {
		return errors.New("dshell-am runs inside an AM container (LOOM_APP_ATTEMPT_ID and LOOM_RM_ADDRS are not set); use `loom dshell` to submit one")
	}
	if cfg.NumContainers < 1 || len(cfg.Command) == 0 {
		return errors.New("dshell-am needs --num-containers >= 1 and a command")
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	id, err := tlsutil.LoadContainer()
	if err != nil {
		return err
	}
	rm, err := rmclient.NewFromList(addrs, id)
	if err != nil {
		return err
	}
	defer rm.Close()
	a := &am{
		cfg:     cfg,
		nms:     nmclient.New(id),
		running: map[string]string{},
		done:    make(chan struct{}),
		req: rmclient.ContainerRequest{
			Capability: &yarnpb.Resource{MemoryMb: cfg.MemoryMB, Vcores: cfg.VCores},
			Priority:   cfg.Priority,
		},
	}
	defer a.nms.Close()
	amToken, err := tlsutil.ContainerAMToken()
	if err != nil {
		return err
	}
	a.amrm = rm.NewAMRMClient(attemptID, amToken, rmclient.Handler{
		ContainersAllocated: a.allocated,
		ContainersCompleted: a.completed,
		ShutdownRequested:   func() { a.fail("the ResourceManager ended this attempt") },
		Error:               func(err error) { a.fail("talking to the ResourceManager: " + err.Error()) },
	})
	host, _ := os.Hostname()
	if _, err := a.amrm.Register(ctx, host, 0, ""); err != nil {
		return fmt.Errorf("registering the AM: %w", err)
	}
	fmt.Fprintf(cfg.Out, "dshell: %s registered; asking for %d containers of %d MB, %d vcores for %q\n",
		attemptID, cfg.NumContainers, cfg.MemoryMB, cfg.VCores, strings.Join(cfg.Command, " "))
	for i := 0; i < cfg.NumContainers; i++ {
		a.amrm.AddContainerRequest(a.req)
	}
	a.amrm.Start(ctx)

	select {
	case <-a.done:
	case <-ctx.Done():
		a.fail("the AM was stopped: " + context.Cause(ctx).Error())
	}
	a.stopRunning()
	a.wg.Wait()

	a.mu.Lock()
	status, diag := yarnpb.FinalStatus_SUCCEEDED, fmt.Sprintf("all %d containers exited with code 0", cfg.NumContainers)
	if a.failure != "" {
		status, diag = yarnpb.FinalStatus_FAILED, a.failure
	}
	a.mu.Unlock()
	fmt.Fprintf(cfg.Out, "dshell: finishing %s: %s\n", status, diag)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rm.RetryFor)
	defer cancel()
	if err := a.amrm.Finish(fctx, status, diag, ""); err != nil {
		return fmt.Errorf("unregistering the AM: %w", err)
	}
	return nil
}

// finishLocked ends the AM's wait once; a.mu is held.
func (a *am) finishLocked() {
	if !a.closed {
		a.closed = true
		close(a.done)
	}
}

func (a *am) fail(diag string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failure == "" && !a.closed {
		a.failure = diag
	}
	a.finishLocked()
}

func (a *am) allocated(cs []*yarnpb.Container) {
	for _, c := range cs {
		a.mu.Lock()
		if a.closed || a.launched >= a.cfg.NumContainers+a.retries {
			a.mu.Unlock()
			a.amrm.ReleaseContainer(c.Id) // surplus
			continue
		}
		a.launched++
		index := a.launched
		a.running[c.Id] = c.NodeId
		a.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.launch(c, index)
		}()
	}
}

func (a *am) launch(c *yarnpb.Container, index int) {
	err := a.nms.Start(context.Background(), c.NodeId, &yarnpb.StartContainerRequest{
		ContainerId: c.Id,
		Resource:    c.Resource,
		Token:       c.Token,
		LaunchContext: &yarnpb.ContainerLaunchContext{
			Command: a.cfg.Command,
			Env:     map[string]string{"LOOM_SHELL_ID": strconv.Itoa(index)},
		},
	})
	if err != nil {
		a.fail(fmt.Sprintf("container %s could not be started on node %s: %v", c.Id, c.NodeId, err))
		return
	}
	fmt.Fprintf(a.cfg.Out, "dshell: started %s on node %s\n", c.Id, c.NodeId)
}

// lost reports whether a container ended through no fault of its command:
// its node was lost, it was preempted or never started.
func lost(exit int32) bool {
	switch yarnpb.ContainerExitStatus(exit) {
	case yarnpb.ContainerExitStatus_EXIT_ABORTED, yarnpb.ContainerExitStatus_EXIT_PREEMPTED, yarnpb.ContainerExitStatus_EXIT_DISKS_FAILED:
		return true
	}
	return false
}

func (a *am) completed(sts []*yarnpb.ContainerStatus) {
	for _, st := range sts {
		a.mu.Lock()
		node, ours := a.running[st.ContainerId]
		delete(a.running, st.ContainerId)
		if !ours || a.closed {
			a.mu.Unlock()
			continue
		}
		switch {
		case st.ExitStatus == 0:
			a.succeeded++
			fmt.Fprintf(a.cfg.Out, "dshell: %s on node %s exited with code 0\n", st.ContainerId, node)
			a.amrm.SetProgress(float32(a.succeeded) / float32(a.cfg.NumContainers))
			if a.succeeded == a.cfg.NumContainers {
				a.finishLocked()
			}
			a.mu.Unlock()
		case lost(st.ExitStatus) && a.retries < a.cfg.MaxRetries:
			a.retries++
			fmt.Fprintf(a.cfg.Out, "dshell: %s on node %s was lost (exit status %d: %s); asking for a replacement\n", st.ContainerId, node, st.ExitStatus, st.Diagnostics)
			a.mu.Unlock()
			a.amrm.AddContainerRequest(a.req)
		default:
			diag := fmt.Sprintf("container %s on node %s failed with exit code %d", st.ContainerId, node, st.ExitStatus)
			if st.Diagnostics != "" {
				diag += ": " + st.Diagnostics
			}
			fmt.Fprintf(a.cfg.Out, "dshell: %s\n", diag)
			a.mu.Unlock()
			a.fail(diag)
		}
	}
}

// stopRunning stops containers still running when the AM ends early.
func (a *am) stopRunning() {
	a.mu.Lock()
	byNode := map[string][]string{}
	for id, node := range a.running {
		byNode[node] = append(byNode[node], id)
	}
	a.mu.Unlock()
	for node, ids := range byNode {
		_ = a.nms.Stop(context.Background(), node, ids...)
	}
}
