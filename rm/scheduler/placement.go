package scheduler

import (
	"slices"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

// YARN's delay scheduling defaults: missed scheduling opportunities an ask
// with preferred nodes waits for one of them before it takes a node of a
// preferred rack (node-locality-delay), and how many more before it takes
// any node.
const (
	DefaultNodeLocalityDelay = 40
	DefaultRackLocalityDelay = 40
)

// amBlacklistThreshold is YARN's AM blacklisting threshold: nodes where
// an application's AM failed are avoided for its next AM unless they are
// this share of the cluster or more.
const amBlacklistThreshold = 0.8

// partition is the schedulable nodes of one node label ("" is the nodes
// without labels), in a stable order for round-robin.
type partition struct {
	label string
	nodes []*nodeView
}

// has reports whether node is one of the partition's.
func (p *partition) has(n *state.Node) bool {
	if p.label == "" {
		return len(n.Labels) == 0
	}
	return slices.Contains(n.Labels, p.label)
}

// askRef names an ask across passes, for its missed opportunities.
type askRef struct {
	attempt string
	key     AskKey
}

// request is one container to place and where it may go.
type request struct {
	app        *appView
	res        state.Resource
	prio       int32
	arid       int64
	label      string
	nodes      []string
	racks      []string
	relax      bool
	blacklist  map[string]bool
	maxPerNode int32
	ref        askRef
}

type unfitKey struct {
	res   state.Resource
	label string
}

type planner struct {
	s     *Scheduler
	v     *view
	epoch int64
	out   []*state.Container
	// unfit remembers sizes that fit on no node of a partition in this
	// pass.
	unfit map[unfitKey]bool
	// seq is the next container sequence per attempt within this plan.
	seq map[string]int64
	// missed are the missed opportunities of the asks seen this pass,
	// for the next.
	missed map[askRef]int
	// perNode counts, per application that limits it, its containers on
	// each node.
	perNode map[string]map[string]int32
}

// place finds a node for one container: a preferred node; then, if
// locality may be relaxed and the ask has missed enough opportunities, a
// node of a preferred rack; then, after more, any node of its partition,
// round-robin so containers spread. It returns nil when the container
// cannot be placed in this pass, or should wait for locality.
func (p *planner) place(rq request) *state.Container {
	part := p.v.parts[rq.label]
	if part == nil {
		return nil
	}
	fits := func(nv *nodeView) bool {
		return nv.free.Fits(rq.res) && !rq.blacklist[nv.node.ID] && p.roomFor(rq, nv.node.ID)
	}
	var chosen *nodeView
	local := len(rq.nodes) > 0 || len(rq.racks) > 0
	for _, id := range rq.nodes {
		if nv := p.v.byID[id]; nv != nil && part.has(nv.node) && fits(nv) {
			chosen = nv
			break
		}
	}
	if chosen == nil && local {
		missed := p.s.missed[rq.ref]
		p.missed[rq.ref] = missed
		racks := p.racksOf(rq)
		inRack := func(nv *nodeView) bool { return slices.Contains(racks, nv.node.Rack) }
		switch {
		case !rq.relax:
			// Strict: the preferred nodes, or the named racks.
			if len(rq.racks) > 0 {
				chosen = p.roundRobin(rq.label, part, func(nv *nodeView) bool { return inRack(nv) && fits(nv) })
			}
			if chosen == nil {
				return nil
			}
		case missed < p.s.NodeLocalityDelay:
			p.miss(rq, part, fits)
			return nil
		default:
			chosen = p.roundRobin(rq.label, part, func(nv *nodeView) bool { return inRack(nv) && fits(nv) })
			if chosen == nil && missed < p.s.NodeLocalityDelay+p.s.RackLocalityDelay {
				p.miss(rq, part, fits)
				return nil
			}
		}
	}
	if chosen == nil {
		key := unfitKey{rq.res, rq.label}
		if p.unfit[key] {
			return nil
		}
		chosen = p.roundRobin(rq.label, part, fits)
		if chosen == nil && len(rq.blacklist) == 0 && rq.maxPerNode == 0 {
			p.unfit[key] = true
		}
	}
	if chosen == nil {
		return nil
	}
	if slices.Contains(rq.nodes, chosen.node.ID) {
		delete(p.missed, rq.ref) // node-local: the count starts over
	}
	chosen.free = chosen.free.Sub(rq.res)
	if rq.label == "" {
		p.v.free = p.v.free.Sub(rq.res)
	}
	if rq.maxPerNode > 0 {
		p.perNode[rq.app.app.ID][chosen.node.ID]++
	}
	at := rq.app.at
	seq := max(p.seq[at.ID], at.NextContainerSeq)
	p.seq[at.ID] = seq + 1
	c := &state.Container{
		ID:                  yarnpb.ContainerID(p.epoch, at.AppID, at.Num, seq),
		AppID:               at.AppID,
		AttemptID:           at.ID,
		NodeID:              chosen.node.ID,
		Resource:            rq.res,
		Priority:            rq.prio,
		AllocationRequestID: rq.arid,
		Label:               rq.label,
	}
	p.out = append(p.out, c)
	return c
}

// miss counts the opportunities an ask waiting for locality passes up in
// this pass: the nodes of its partition that have room for it.
func (p *planner) miss(rq request, part *partition, fits func(*nodeView) bool) {
	limit := p.s.NodeLocalityDelay + p.s.RackLocalityDelay
	n := p.missed[rq.ref]
	for _, nv := range part.nodes {
		if n >= limit {
			break
		}
		if fits(nv) {
			n++
		}
	}
	p.missed[rq.ref] = n
	p.s.Delayed = true
}

// racksOf are an ask's preferred racks: those it names and those of its
// preferred nodes.
func (p *planner) racksOf(rq request) []string {
	racks := slices.Clone(rq.racks)
	for _, id := range rq.nodes {
		if n := p.v.r.Node(id); n != nil && n.Rack != "" && !slices.Contains(racks, n.Rack) {
			racks = append(racks, n.Rack)
		}
	}
	return racks
}

// roundRobin is the next node of a partition, from its cursor, that ok
// takes.
func (p *planner) roundRobin(label string, part *partition, ok func(*nodeView) bool) *nodeView {
	n := len(part.nodes)
	cur := p.s.cursors[label] % max(n, 1)
	for i := 0; i < n; i++ {
		nv := part.nodes[(cur+i)%n]
		if ok(nv) {
			p.s.cursors[label] = (cur + i + 1) % n
			return nv
		}
	}
	return nil
}

// roomFor reports whether the application may have one more container on
// node under its ask's max_per_node.
func (p *planner) roomFor(rq request, node string) bool {
	if rq.maxPerNode <= 0 {
		return true
	}
	id := rq.app.app.ID
	counts := p.perNode[id]
	if counts == nil {
		counts = map[string]int32{}
		for _, c := range p.v.r.ContainersByApp(nil, id) {
			if !c.Completed() && !c.IsAM {
				counts[c.NodeID]++
			}
		}
		for _, c := range p.v.inflight {
			if c.AppID == id && !c.IsAM && p.v.r.Container(c.ID) == nil {
				counts[c.NodeID]++
			}
		}
		p.perNode[id] = counts
	}
	return counts[node] < rq.maxPerNode
}
