// Package scheduler is loom's capacity scheduler. It turns a consistent
// view of the cluster and the outstanding asks into a plan: containers
// placed on nodes. It changes nothing itself; the ResourceManager commits
// the plan through raft, and the FSM drops any placement that no longer
// fits.
package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

// Queue is a leaf queue of the capacity scheduler.
type Queue struct {
	// Name is the full path, as root.default.
	Name string
	// Capacity and MaxCapacity are fractions of the cluster (0..1].
	Capacity    float64
	MaxCapacity float64
	// MaxAMShare caps the resources that AM containers of the queue may
	// hold, as a fraction of the queue's maximum capacity.
	MaxAMShare float64
}

// DefaultQueues is the queue tree loom starts with: root.default.
func DefaultQueues() []Queue {
	return []Queue{{Name: "root.default", Capacity: 1, MaxCapacity: 1, MaxAMShare: 0.5}}
}

// ResolveQueue maps a queue name as a user writes it ("default",
// "root.default", "") to a configured leaf queue.
func ResolveQueue(queues []Queue, name string) (string, error) {
	if name == "" {
		name = "default"
	}
	var names []string
	for _, q := range queues {
		if q.Name == name || strings.TrimPrefix(q.Name, "root.") == name {
			return q.Name, nil
		}
		names = append(names, q.Name)
	}
	return "", fmt.Errorf("queue %q does not exist; known queues: %s", name, strings.Join(names, ", "))
}

// AskKey identifies an ask: its count is the outstanding total for the key.
type AskKey struct {
	AllocationRequestID int64
	Priority            int32
	Capability          state.Resource
}

// Ask is an AM's outstanding request for containers.
type Ask struct {
	Key   AskKey
	Count int32
	Nodes []string
	Relax bool
}

// Asks is what one attempt wants, as its AM last said it.
type Asks struct {
	Asks      map[AskKey]*Ask
	Blacklist map[string]bool
}

// AskSource gives the scheduler the asks of an attempt; nil when none.
type AskSource func(attemptID string) *Asks

// Scheduler plans placements. Its only state is a round-robin cursor that
// spreads containers over nodes, and the reasons apps are waiting.
type Scheduler struct {
	queues   []Queue
	maxBatch int
	cursor   int
	// Waiting holds, per application, why its AM container is not
	// placed yet (queue AM limit, no room); refreshed every Plan.
	Waiting map[string]string
}

// New returns a scheduler over queues; maxBatch bounds a plan's size.
func New(queues []Queue, maxBatch int) *Scheduler {
	if maxBatch <= 0 {
		maxBatch = 2048
	}
	return &Scheduler{queues: queues, maxBatch: maxBatch, Waiting: map[string]string{}}
}

type nodeView struct {
	node *state.Node
	free state.Resource
}

// Plan places what it can of the pending AM containers and asks. epoch is
// the RM epoch for container ids. inflight are placements of earlier plans
// still being committed: they count as placed.
func (s *Scheduler) Plan(r *state.ReadTxn, asks AskSource, epoch int64, inflight []*state.Container) []*state.Container {
	nodes := r.Nodes(nil)
	views := make([]*nodeView, 0, len(nodes))
	byID := make(map[string]*nodeView, len(nodes))
	var total state.Resource
	for _, n := range nodes {
		if !n.Live() {
			continue
		}
		total = total.Add(n.Total)
		if !n.Schedulable() {
			continue
		}
		v := &nodeView{node: n, free: n.Total.Sub(n.Used)}
		views = append(views, v)
		byID[n.ID] = v
	}
	clear(s.Waiting)
	if len(views) == 0 {
		return nil
	}

	live := r.LiveApps(nil)
	// FIFO with priorities: higher application priority first, then
	// submission order.
	sort.SliceStable(live, func(i, j int) bool { return live[i].Priority > live[j].Priority })

	queueAMUsed := map[string]state.Resource{}
	queueUsed := map[string]state.Resource{}
	for _, c := range r.LiveContainers() {
		app := r.App(nil, c.AppID)
		if app == nil {
			continue
		}
		queueUsed[app.Queue] = queueUsed[app.Queue].Add(c.Resource)
		if c.IsAM {
			queueAMUsed[app.Queue] = queueAMUsed[app.Queue].Add(c.Resource)
		}
	}

	p := &planner{s: s, views: views, byID: byID, epoch: epoch, unfit: map[state.Resource]bool{}, seq: map[string]int64{}}
	// Placements still being committed hold their resources already.
	pendingIn := map[string]map[AskKey]int32{}
	inflightAM := map[string]bool{}
	for _, c := range inflight {
		if r.Container(nil, c.ID) != nil {
			continue // applied: the snapshot has it
		}
		if v := byID[c.NodeID]; v != nil {
			v.free = v.free.Sub(c.Resource)
		}
		if app := r.App(nil, c.AppID); app != nil {
			queueUsed[app.Queue] = queueUsed[app.Queue].Add(c.Resource)
			if c.IsAM {
				queueAMUsed[app.Queue] = queueAMUsed[app.Queue].Add(c.Resource)
			}
		}
		if c.IsAM {
			inflightAM[c.AttemptID] = true
		} else {
			if pendingIn[c.AttemptID] == nil {
				pendingIn[c.AttemptID] = map[AskKey]int32{}
			}
			pendingIn[c.AttemptID][AskKey{c.AllocationRequestID, c.Priority, c.Resource}]++
		}
		if seq := yarnpb.ContainerSeq(c.ID); seq >= p.seq[c.AttemptID] {
			p.seq[c.AttemptID] = seq + 1
		}
	}
	for _, app := range live {
		if len(p.out) >= s.maxBatch {
			break
		}
		q := s.queue(app.Queue)
		qMax := scale(total, q.MaxCapacity)
		at := r.Attempt(nil, app.CurrentAttempt)
		if at == nil || at.Terminal() {
			continue
		}
		if inflightAM[at.ID] {
			continue
		}
		if at.State == yarnpb.AttemptState_ATTEMPT_NEW && at.AMContainerID == "" {
			amLimit := scale(qMax, q.MaxAMShare)
			switch {
			case !amLimit.Fits(queueAMUsed[app.Queue].Add(app.AMResource)) && queueAMUsed[app.Queue].MemoryMB > 0:
				s.Waiting[app.ID] = fmt.Sprintf("waiting for an AM container: queue %s has reached its AM resource limit (%d MB, %.0f%% of the queue)", app.Queue, amLimit.MemoryMB, q.MaxAMShare*100)
			case !qMax.Fits(queueUsed[app.Queue].Add(app.AMResource)):
				s.Waiting[app.ID] = fmt.Sprintf("waiting for an AM container: queue %s is at its maximum capacity", app.Queue)
			default:
				c := p.place(at, app.AMResource, 0, 0, nil, true, nil)
				if c == nil {
					s.Waiting[app.ID] = fmt.Sprintf("waiting for an AM container of %d MB, %d vcores: no node has room", app.AMResource.MemoryMB, app.AMResource.VCores)
					continue
				}
				c.IsAM = true
				queueAMUsed[app.Queue] = queueAMUsed[app.Queue].Add(c.Resource)
				queueUsed[app.Queue] = queueUsed[app.Queue].Add(c.Resource)
			}
			continue
		}
		want := asks(at.ID)
		if want == nil || len(want.Asks) == 0 {
			continue
		}
		// Containers placed but not yet handed to the AM still count
		// against its asks.
		pending := map[AskKey]int32{}
		for k, n := range pendingIn[at.ID] {
			pending[k] = n
		}
		for _, c := range r.ContainersByAttempt(nil, at.ID) {
			if c.State == yarnpb.ContainerState_CONTAINER_ALLOCATED && !c.IsAM {
				pending[AskKey{c.AllocationRequestID, c.Priority, c.Resource}]++
			}
		}
		ordered := make([]*Ask, 0, len(want.Asks))
		for _, a := range want.Asks {
			ordered = append(ordered, a)
		}
		sort.Slice(ordered, func(i, j int) bool {
			if ordered[i].Key.Priority != ordered[j].Key.Priority {
				return ordered[i].Key.Priority < ordered[j].Key.Priority
			}
			return ordered[i].Key.AllocationRequestID < ordered[j].Key.AllocationRequestID
		})
		for _, a := range ordered {
			n := a.Count - pending[a.Key]
			for ; n > 0 && len(p.out) < s.maxBatch; n-- {
				if !qMax.Fits(queueUsed[app.Queue].Add(a.Key.Capability)) {
					break
				}
				c := p.place(at, a.Key.Capability, a.Key.Priority, a.Key.AllocationRequestID, a.Nodes, a.Relax, want.Blacklist)
				if c == nil {
					break
				}
				queueUsed[app.Queue] = queueUsed[app.Queue].Add(c.Resource)
			}
		}
	}
	return p.out
}

func (s *Scheduler) queue(name string) Queue {
	for _, q := range s.queues {
		if q.Name == name {
			return q
		}
	}
	return Queue{Name: name, Capacity: 1, MaxCapacity: 1, MaxAMShare: 0.5}
}

func scale(r state.Resource, f float64) state.Resource {
	return state.Resource{MemoryMB: int64(float64(r.MemoryMB) * f), VCores: int32(float64(r.VCores) * f)}
}

type planner struct {
	s     *Scheduler
	views []*nodeView
	byID  map[string]*nodeView
	epoch int64
	out   []*state.Container
	// unfit remembers capabilities that fit on no node in this pass.
	unfit map[state.Resource]bool
	// seq is the next container sequence per attempt within this plan.
	seq map[string]int64
}

// place finds a node for one container: a preferred node first, then, if
// locality may be relaxed, any node in round-robin order.
func (p *planner) place(at *state.Attempt, r state.Resource, prio int32, arid int64, prefer []string, relax bool, blacklist map[string]bool) *state.Container {
	var chosen *nodeView
	for _, id := range prefer {
		if v := p.byID[id]; v != nil && !blacklist[id] && v.free.Fits(r) {
			chosen = v
			break
		}
	}
	if chosen == nil && (relax || len(prefer) == 0) && !p.unfit[r] {
		n := len(p.views)
		for i := 0; i < n; i++ {
			v := p.views[(p.s.cursor+i)%n]
			if v.free.Fits(r) && !blacklist[v.node.ID] {
				chosen = v
				p.s.cursor = (p.s.cursor + i + 1) % n
				break
			}
		}
		if chosen == nil && len(blacklist) == 0 {
			p.unfit[r] = true
		}
	}
	if chosen == nil {
		return nil
	}
	chosen.free = chosen.free.Sub(r)
	seq := max(p.seq[at.ID], at.NextContainerSeq)
	p.seq[at.ID] = seq + 1
	c := &state.Container{
		ID:                  yarnpb.ContainerID(p.epoch, at.AppID, at.Num, seq),
		AppID:               at.AppID,
		AttemptID:           at.ID,
		NodeID:              chosen.node.ID,
		Resource:            r,
		Priority:            prio,
		AllocationRequestID: arid,
	}
	p.out = append(p.out, c)
	return c
}
