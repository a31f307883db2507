package rmclient

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
)

// ContainerRequest asks for one container.
type ContainerRequest struct {
	Capability          *yarnpb.Resource
	Priority            int32
	AllocationRequestID int64
	Nodes               []string
	// StrictLocality keeps the container on Nodes (relax_locality false).
	StrictLocality bool
	// Racks are preferred racks; NodeLabel the partition; MaxPerNode, when
	// set, bounds the application's containers on one node. Requests of
	// one key share them: the first sets them.
	Racks      []string
	NodeLabel  string
	MaxPerNode int32
}

type askKey struct {
	arid     int64
	priority int32
	mem      int64
	vcores   int32
}

func keyOf(arid int64, prio int32, r *yarnpb.Resource) askKey {
	return askKey{arid, prio, r.GetMemoryMb(), r.GetVcores()}
}

// Handler receives what the RM sends an AM. Its methods run on the
// heartbeat goroutine and must not block for long.
type Handler struct {
	ContainersAllocated func([]*yarnpb.Container)
	ContainersCompleted func([]*yarnpb.ContainerStatus)
	// ContainersPreempted is called with containers the RM is taking back
	// (YARN's PreemptionMessage), each once: the AM should release them
	// (ReleaseContainer) before the RM's grace is over, when it kills
	// them.
	ContainersPreempted func(ids []string)
	// ShutdownRequested is called when the RM says this attempt is over.
	ShutdownRequested func()
	// Error is called when heartbeats fail for longer than the client's
	// retry period; the loop goes on.
	Error func(error)
}

// AMRMClient is an ApplicationMaster's side of the AM protocol: it
// registers, keeps the table of outstanding asks, heartbeats (a call held
// by the RM until there is news) and matches allocated containers to asks.
type AMRMClient struct {
	rm        *Client
	attemptID string
	handler   Handler

	mu         sync.Mutex
	asks       map[askKey]*yarnpb.ResourceRequest
	releases   []string
	progress   float32
	responseID int32
	token      []byte // the attempt's AMToken
	// seenDone are the completions handed to the handler, which a new
	// RM leader may send again: a bounded set of the newest.
	seenDone *recentSet
	// seenPreempt are the preempted containers handed to the handler.
	seenPreempt *recentSet
	inflight    context.CancelFunc // cancels a held Allocate call on change
	kicked      bool
	reg         *yarnpb.RegisterApplicationMasterRequest
	available   *yarnpb.Resource
	nodes       int32

	// Wait is how long the RM may hold an Allocate call with no news.
	Wait time.Duration

	cancel context.CancelFunc
	done   chan struct{}
}

// NewAMRMClient returns an AMRM client for an application attempt, which
// presents the attempt's AMToken (ContainerAMToken reads it in the AM's
// container).
func (c *Client) NewAMRMClient(attemptID string, amToken []byte, h Handler) *AMRMClient {
	return &AMRMClient{
		rm:          c,
		attemptID:   attemptID,
		token:       amToken,
		handler:     h,
		asks:        map[askKey]*yarnpb.ResourceRequest{},
		seenDone:    newRecentSet(maxSeenDone),
		seenPreempt: newRecentSet(maxSeenDone),
		Wait:        time.Second,
	}
}

// Register registers the AM with the RM.
func (a *AMRMClient) Register(ctx context.Context, host string, port int32, trackingURL string) (*yarnpb.RegisterApplicationMasterResponse, error) {
	a.mu.Lock()
	req := &yarnpb.RegisterApplicationMasterRequest{ApplicationAttemptId: a.attemptID, Host: host, RpcPort: port, TrackingUrl: trackingURL, AmToken: a.token}
	a.mu.Unlock()
	var resp *yarnpb.RegisterApplicationMasterResponse
	err := a.rm.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = yarnpb.NewApplicationMasterServiceClient(cc).RegisterApplicationMaster(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.reg = req
	a.responseID = 0
	if iv := time.Duration(resp.HeartbeatIntervalMs) * time.Millisecond; iv > 0 && iv < a.Wait {
		a.Wait = iv
	}
	a.mu.Unlock()
	return resp, nil
}

// AddContainerRequest adds one container to the outstanding asks.
func (a *AMRMClient) AddContainerRequest(r ContainerRequest) {
	a.mu.Lock()
	k := keyOf(r.AllocationRequestID, r.Priority, r.Capability)
	ask := a.asks[k]
	if ask == nil {
		relax := !r.StrictLocality
		ask = &yarnpb.ResourceRequest{AllocationRequestId: r.AllocationRequestID, Priority: r.Priority, Capability: r.Capability, Nodes: r.Nodes, RelaxLocality: &relax,
			Racks: r.Racks, NodeLabel: r.NodeLabel, MaxPerNode: r.MaxPerNode}
		a.asks[k] = ask
	}
	ask.Count++
	a.mu.Unlock()
	a.kick()
}

// RemoveContainerRequest withdraws one container from the outstanding asks.
func (a *AMRMClient) RemoveContainerRequest(r ContainerRequest) {
	a.mu.Lock()
	if ask := a.asks[keyOf(r.AllocationRequestID, r.Priority, r.Capability)]; ask != nil && ask.Count > 0 {
		ask.Count--
	}
	a.mu.Unlock()
	a.kick()
}

// Outstanding returns how many containers are asked for and not yet
// allocated.
func (a *AMRMClient) Outstanding() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, ask := range a.asks {
		n += int(ask.Count)
	}
	return n
}

// Available returns what the cluster had free for this application and
// its number of nodes, as of the last heartbeat.
func (a *AMRMClient) Available() (*yarnpb.Resource, int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.available, a.nodes
}

// ReleaseContainer gives a container back.
func (a *AMRMClient) ReleaseContainer(id string) {
	a.mu.Lock()
	a.releases = append(a.releases, id)
	a.mu.Unlock()
	a.kick()
}

// SetProgress reports the application's progress (0..1).
func (a *AMRMClient) SetProgress(p float32) {
	a.mu.Lock()
	a.progress = p
	a.mu.Unlock()
}

// kick interrupts a held Allocate call so that a change goes out now.
func (a *AMRMClient) kick() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kicked = true
	if a.inflight != nil {
		a.inflight()
	}
}

// Start runs the heartbeat loop until Stop, Finish or ctx ends.
func (a *AMRMClient) Start(ctx context.Context) {
	ctx, a.cancel = context.WithCancel(ctx)
	a.done = make(chan struct{})
	go func() {
		defer close(a.done)
		a.loop(ctx)
	}()
}

// Stop ends the heartbeat loop and waits for it.
func (a *AMRMClient) Stop() {
	if a.cancel != nil {
		a.cancel()
		<-a.done
	}
}

func (a *AMRMClient) loop(ctx context.Context) {
	failingSince := time.Time{}
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		a.mu.Lock()
		req := &yarnpb.AllocateRequest{
			ApplicationAttemptId: a.attemptID,
			ResponseId:           a.responseID,
			Releases:             a.releases,
			Progress:             a.progress,
			WaitMs:               a.Wait.Milliseconds(),
			AmToken:              a.token,
		}
		if a.kicked {
			req.WaitMs = 0
		}
		a.kicked = false
		for _, ask := range a.asks {
			req.Asks = append(req.Asks, &yarnpb.ResourceRequest{
				AllocationRequestId: ask.AllocationRequestId, Priority: ask.Priority, Capability: ask.Capability,
				Count: ask.Count, Nodes: ask.Nodes, RelaxLocality: ask.RelaxLocality,
				Racks: ask.Racks, NodeLabel: ask.NodeLabel, MaxPerNode: ask.MaxPerNode,
			})
		}
		sentReleases := len(a.releases)
		callCtx, cancel := context.WithCancel(ctx)
		a.inflight = cancel
		a.mu.Unlock()

		var resp *yarnpb.AllocateResponse
		err := a.rm.callWait(callCtx, time.Duration(req.WaitMs)*time.Millisecond, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
			resp, err = yarnpb.NewApplicationMasterServiceClient(cc).Allocate(ctx, req)
			return err
		})
		cancel()
		a.mu.Lock()
		a.inflight = nil
		a.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if callCtx.Err() != nil {
				continue // interrupted by a change: send it now
			}
			if errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrFailedPrecondition) {
				if a.handler.ShutdownRequested != nil {
					a.handler.ShutdownRequested()
				}
				return
			}
			if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) > a.rm.RetryFor && a.handler.Error != nil {
				a.handler.Error(err)
				failingSince = time.Now()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		failingSince, backoff = time.Time{}, 50*time.Millisecond
		switch resp.Command {
		case yarnpb.AMCommand_AM_SHUTDOWN:
			if a.handler.ShutdownRequested != nil {
				a.handler.ShutdownRequested()
			}
			return
		case yarnpb.AMCommand_AM_RESYNC:
			a.mu.Lock()
			reg := a.reg
			a.mu.Unlock()
			if reg != nil {
				if _, err := a.Register(ctx, reg.Host, reg.RpcPort, reg.TrackingUrl); err != nil && a.handler.Error != nil {
					a.handler.Error(err)
				}
			}
			continue
		}
		a.mu.Lock()
		if len(resp.AmToken) > 0 {
			a.token = resp.AmToken // rolled over to a newer master key
		}
		a.responseID = resp.ResponseId
		a.available, a.nodes = resp.Available, resp.NumClusterNodes
		a.releases = a.releases[sentReleases:]
		// Withdrawn asks have been sent with count 0: forget them.
		for k, ask := range a.asks {
			if ask.Count == 0 {
				delete(a.asks, k)
			}
		}
		// Each allocated container fulfils one ask of its key.
		for _, c := range resp.Allocated {
			if ask := a.asks[keyOf(c.AllocationRequestId, c.Priority, c.Resource)]; ask != nil && ask.Count > 0 {
				ask.Count--
			}
		}
		var completed []*yarnpb.ContainerStatus
		for _, st := range resp.Completed {
			if a.seenDone.add(st.ContainerId) {
				completed = append(completed, st)
			}
		}
		var preempted []string
		for _, id := range resp.Preempt {
			if a.seenPreempt.add(id) {
				preempted = append(preempted, id)
			}
		}
		a.mu.Unlock()
		if len(preempted) > 0 && a.handler.ContainersPreempted != nil {
			a.handler.ContainersPreempted(preempted)
		}
		if len(resp.Allocated) > 0 && a.handler.ContainersAllocated != nil {
			a.handler.ContainersAllocated(resp.Allocated)
		}
		if len(completed) > 0 && a.handler.ContainersCompleted != nil {
			a.handler.ContainersCompleted(completed)
		}
	}
}

// Finish stops the heartbeat loop and unregisters with a final status.
func (a *AMRMClient) Finish(ctx context.Context, status yarnpb.FinalStatus, diag, trackingURL string) error {
	a.Stop()
	a.mu.Lock()
	tok := a.token
	a.mu.Unlock()
	return a.rm.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := yarnpb.NewApplicationMasterServiceClient(cc).FinishApplicationMaster(ctx, &yarnpb.FinishApplicationMasterRequest{
			ApplicationAttemptId: a.attemptID, FinalStatus: status, Diagnostics: diag, TrackingUrl: trackingURL, AmToken: tok,
		})
		return err
	})
}

// maxSeenDone bounds the completions an AM remembers. A leader sends
// again only completions of containers the AM had not released before the
// failover, far fewer than this.
const maxSeenDone = 1 << 16

// recentSet is a set of at most max strings, the oldest dropped first.
type recentSet struct {
	max   int
	has   map[string]bool
	order []string
}

func newRecentSet(max int) *recentSet { return &recentSet{max: max, has: map[string]bool{}} }

// add adds s and reports whether it was new.
func (r *recentSet) add(s string) bool {
	if r.has[s] {
		return false
	}
	r.has[s] = true
	r.order = append(r.order, s)
	if len(r.order) > r.max {
		delete(r.has, r.order[0])
		r.order = r.order[1:]
	}
	return true
}

// len is the number of strings held.
func (r *recentSet) len() int { return len(r.has) }
