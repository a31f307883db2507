// Package scheduler is loom's capacity scheduler. It turns a consistent
// view of the cluster and the outstanding asks into a plan: containers
// placed on nodes. It changes nothing itself; the ResourceManager commits
// the plan through raft, and the FSM drops any placement that no longer
// fits.
package scheduler

import (
	"container/heap"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

// Queue is a leaf queue of the capacity scheduler, its capacity and
// maximum resolved against the cluster (QueueTree.Leaves).
type Queue struct {
	// Name is the full path, as root.default.
	Name string
	// Capacity and MaxCapacity are fractions of the cluster (0..1].
	Capacity    float64
	MaxCapacity float64
	// MaxAMShare caps the resources that AM containers of the queue may
	// hold, as a fraction of the queue's maximum capacity.
	MaxAMShare float64
	// MinUserLimitPercent and UserLimitFactor are YARN's user limits.
	MinUserLimitPercent float64
	UserLimitFactor     float64
	// MaxApplications bounds the queue's live applications.
	MaxApplications int
	// Ordering is OrderFIFO or OrderFair.
	Ordering string
}

// The orderings of applications within a leaf queue.
const (
	// OrderFIFO serves higher application priority first, then the
	// earlier submission.
	OrderFIFO = "fifo"
	// OrderFair serves the application that holds the least first.
	OrderFair = "fair"
)

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
	// Racks are preferred racks beside the preferred nodes'.
	Racks []string
	// Label is the node label (partition) the containers go to; "" is the
	// nodes without labels.
	Label string
	// MaxPerNode, when set, bounds the application's containers on one
	// node.
	MaxPerNode int32
}

// Asks is what one attempt wants, as its AM last said it.
type Asks struct {
	Asks      map[AskKey]*Ask
	Blacklist map[string]bool
}

// AskSource gives the scheduler the asks of an attempt; nil when none.
// The scheduler only reads what it is given, and the source never
// changes an Asks it gave: it gives a new one instead.
type AskSource func(attemptID string) *Asks

// Scheduler plans placements. Its state is its queue tree, a
// round-robin cursor that spreads containers over nodes, and the reasons
// applications are waiting.
type Scheduler struct {
	tree     *QueueTree
	maxBatch int
	// cursors are the round-robin positions, per partition.
	cursors map[string]int
	// lastNodes is how many schedulable nodes the last pass saw.
	lastNodes int
	// buf is the node views' memory, reused pass after pass: a pass
	// over 10,000 nodes would otherwise allocate its views and index
	// anew, and a busy RM plans many times a second.
	buf viewBuffers
	// missed are the scheduling opportunities asks waiting for locality
	// have passed up (delay scheduling), for those seen in the last pass.
	missed map[askRef]int
	// NodeLocalityDelay and RackLocalityDelay are the missed
	// opportunities an ask waits for a preferred node, then for more
	// for a preferred rack, before it relaxes (YARN's node-locality-delay
	// and rack-locality-additional-delay).
	NodeLocalityDelay, RackLocalityDelay int
	// Delayed is set by a pass that held an ask back for locality: the
	// caller should plan again after the next round of heartbeats, as
	// each is an opportunity.
	Delayed bool
	// PreemptionPerRound is the most of each partition one Preempt
	// pass newly chooses, as a fraction (YARN's
	// total_preemption_per_round); 0 or 1 and over leave it unbounded.
	PreemptionPerRound float64
	// turn is which partition a pass plans first.
	turn int
	// Waiting holds, per application, why its AM container is not
	// placed yet (queue AM limit, no room); refreshed every Plan. A
	// caller may swap in another map between passes: a pass only clears
	// and fills it.
	Waiting map[string]WaitReason
}

// WaitKind is what holds an application's AM container back.
type WaitKind uint8

const (
	WaitAMLimit   WaitKind = iota + 1 // the queue's AM resource limit
	WaitQueueMax                      // the queue's maximum capacity
	WaitUserLimit                     // the user's limit in the queue
	WaitNoRoom                        // no node has room
)

// WaitReason is why an application's AM container waits. A pass records
// one for each such application, and says it in words only when asked.
type WaitReason struct {
	Kind  WaitKind
	Queue string
	User  string
	// Res is the limit (AM and user limits) or the AM's size (no room).
	Res   state.Resource
	Share float64 // the queue's AM share, for WaitAMLimit
}

func (w WaitReason) String() string {
	switch w.Kind {
	case WaitAMLimit:
		return fmt.Sprintf("waiting for an AM container: queue %s has reached its AM resource limit (%d MB, %.0f%% of the queue)", w.Queue, w.Res.MemoryMB, w.Share*100)
	case WaitQueueMax:
		return fmt.Sprintf("waiting for an AM container: queue %s is at its maximum capacity", w.Queue)
	case WaitUserLimit:
		return fmt.Sprintf("waiting for an AM container: user %s has reached the user limit of queue %s (%d MB)", w.User, w.Queue, w.Res.MemoryMB)
	case WaitNoRoom:
		return fmt.Sprintf("waiting for an AM container of %d MB, %d vcores: no node has room", w.Res.MemoryMB, w.Res.VCores)
	}
	return ""
}

// New returns a scheduler over a queue tree; maxBatch bounds a plan's
// size (256 when not set: a plan is one write transaction, and those stay
// small, as rm's MaxBatch says).
func New(tree *QueueTree, maxBatch int) *Scheduler {
	if maxBatch <= 0 {
		maxBatch = 256
	}
	return &Scheduler{tree: tree, maxBatch: maxBatch, Waiting: map[string]WaitReason{}, cursors: map[string]int{}, missed: map[askRef]int{},
		NodeLocalityDelay: DefaultNodeLocalityDelay, RackLocalityDelay: DefaultRackLocalityDelay}
}

// SetTree replaces the queue tree the next plans follow.
func (s *Scheduler) SetTree(t *QueueTree) { s.tree = t }

type nodeView struct {
	node *state.Node
	free state.Resource
	// base is what the node has free in the state, total what it
	// offers, unlabeled whether it is in the default partition: a pass
	// starts from them without reading the node.
	base, total state.Resource
	unlabeled   bool
}

// viewBuffers hold what one pass's node views are made of, for the next
// pass to refresh. A Scheduler makes one pass at a time.
type viewBuffers struct {
	slab  []nodeView
	nodes []*nodeView
	// byID indexes the slab by node id; ids are the slab's node ids in
	// order. A pass that finds the same nodes in the same places keeps
	// the index as it is.
	byID  map[string]*nodeView
	ids   []string
	parts map[string]*partition
	// labeled are the live nodes with labels; unschedulable what the
	// live nodes without labels that take no containers offer (they
	// count in the total capacities are of).
	labeled       map[string]bool
	unschedulable state.Resource
	// asideByLabel is what the live labeled nodes that take no
	// containers offer, by label.
	asideByLabel map[string]state.Resource
	// aside are the live nodes that take no containers.
	aside map[string]bool
	// cursor is where the views are in the state's node log, changed
	// the ids read from it: a pass refreshes only the nodes written
	// since the last, and reads every node only when that cannot tell.
	cursor  state.NodeCursor
	changed []string
	reads   int // how many times every node was read, for tests
	// appSlab and apps are the application views and their index.
	appSlab  []appView
	apps     map[string]*appView
	attempts map[string]*state.Attempt
	// appPtrs backs the view's application list, live and liveAttempts
	// the state's lists, leaves the leaf views with their lists and
	// maps: a pass refills them.
	appPtrs      []*appView
	live         []*state.Application
	liveAttempts []*state.Attempt
	leaves       map[string]*leafView
}

// refreshNodes brings the node views up to the state for the nodes
// written since they were made (ids), and reports whether it could: a
// node that joined, left, or changed what decides where its view is (a
// label, whether it takes containers) has the nodes read anew.
func (b *viewBuffers) refreshNodes(r *state.ReadTxn, ids []string) bool {
	if b.byID == nil {
		return false
	}
	for _, id := range ids {
		n, nv := r.Node(id), b.byID[id]
		if nv == nil {
			if (n != nil && n.Live()) || b.aside[id] {
				return false // joined, or live and taking no containers, now or before
			}
			continue
		}
		if n == nil || !n.Live() || !n.Schedulable() || !slices.Equal(n.Labels, nv.node.Labels) {
			return false
		}
		nv.node, nv.base, nv.total = n, n.Total.Sub(n.Used), n.Total
	}
	return true
}

// readNodes makes the node views from every node of the state, in id
// order, reusing the last views' slab and index.
func (b *viewBuffers) readNodes(r *state.ReadTxn, lastNodes int) {
	b.reads++
	if b.byID == nil {
		b.byID = make(map[string]*nodeView, lastNodes)
	}
	if cap(b.slab) < lastNodes+16 {
		b.slab = make([]nodeView, 0, lastNodes+16)
		b.ids = b.ids[:0]
	}
	// moved is whether a node's view is not where the index has it.
	moved := false
	old := b.parts
	b.parts, b.labeled, b.unschedulable, b.asideByLabel = map[string]*partition{}, map[string]bool{}, state.Resource{}, map[string]state.Resource{}
	if b.aside == nil {
		b.aside = map[string]bool{}
	}
	clear(b.aside)
	var def *partition // the default partition, the one most nodes are in
	addTo := func(label string, nv *nodeView) {
		part := def
		if label != "" || def == nil {
			part = b.parts[label]
		}
		if part == nil {
			part = &partition{label: label}
			if o := old[label]; o != nil {
				part.nodes = o.nodes[:0]
			}
			b.parts[label] = part
		}
		if label == "" {
			def = part
		}
		part.nodes = append(part.nodes, nv)
	}
	nodes := b.nodes[:0]
	// The node views in one allocation, sized by the last read.
	slab := b.slab[:0]
	r.EachNode(func(n *state.Node) {
		if !n.Live() {
			return
		}
		switch {
		case len(n.Labels) > 0:
			b.labeled[n.ID] = true
			if !n.Schedulable() {
				for _, l := range n.Labels {
					b.asideByLabel[l] = b.asideByLabel[l].Add(n.Total)
				}
			}
		case !n.Schedulable():
			b.unschedulable = b.unschedulable.Add(n.Total)
		}
		if !n.Schedulable() {
			b.aside[n.ID] = true
			return
		}
		nv0 := nodeView{node: n, base: n.Total.Sub(n.Used), total: n.Total, unlabeled: len(n.Labels) == 0}
		var nv *nodeView
		if i := len(slab); i < cap(slab) {
			slab = append(slab, nv0)
			nv = &slab[i]
			moved = moved || i >= len(b.ids) || b.ids[i] != n.ID
		} else {
			nv = &nv0
			moved = true
		}
		nodes = append(nodes, nv)
		if nv.unlabeled {
			addTo("", nv)
		}
		for _, l := range n.Labels {
			addTo(l, nv)
		}
	})
	b.nodes = nodes
	if moved || len(nodes) != len(b.ids) {
		clear(b.byID)
		b.ids = b.ids[:0]
		for _, nv := range nodes {
			b.byID[nv.node.ID] = nv
			b.ids = append(b.ids, nv.node.ID)
		}
	}
}

// refill empties buf, lets fill append to it, and clears what the last
// fill left beyond the new end: a buffer reused from pass to pass holds
// no row the state has dropped.
func refill[T any](buf []*T, fill func([]*T) []*T) []*T {
	old := len(buf)
	buf = fill(buf[:0])
	if len(buf) < old {
		clear(buf[len(buf):old])
	}
	return buf
}

// leafPart is a leaf queue in one partition during a pass: what it is
// owed there, what it holds, and what its applications ask for there.
type leafPart struct {
	guar, max state.Resource
	used      state.Resource
	users     map[string]state.Resource
	active    map[string]bool // users with something to place
	// pendingRes is what its applications still ask for that the
	// queue's limits would let them have; minAsk the smallest of it.
	pendingRes state.Resource
	minAsk     state.Resource
	// live marks the labeled parts this pass has, for the next to drop
	// the rest.
	live bool
}

// leafView is a leaf queue during one pass: what it is owed, what it
// holds and the applications that want more, in the default partition
// (the embedded leafPart) and in each labeled one it may use.
type leafView struct {
	q Queue
	leafPart
	labels    map[string]*leafPart
	amUsed    state.Resource
	apps      []*appView
	first     int // where its applications not yet done begin
	heapIndex int
	placed    int // containers placed in this pass
	amWanted  state.Resource
}

// part is l in the partition of label ("" the default one); nil when
// the queue may not use it.
func (l *leafView) part(label string) *leafPart {
	if label == "" {
		return &l.leafPart
	}
	return l.labels[label]
}

// want adds n containers of r to what l's applications ask for.
func (l *leafPart) want(r state.Resource, n int32) {
	l.pendingRes = l.pendingRes.Add(times(r, n))
	if l.minAsk == (state.Resource{}) || r.MemoryMB < l.minAsk.MemoryMB {
		l.minAsk = r
	}
}

// appView is an application during one pass.
type appView struct {
	app    *state.Application
	at     *state.Attempt
	leaf   *leafView
	needAM bool
	asks   []*Ask // by ask priority, then allocation request id
	next   int
	// pending counts, per ask, containers placed and not yet handed
	// to the AM: they count against its asks.
	pending   map[AskKey]int32
	used      state.Resource
	blacklist map[string]bool
	done      bool
	// blockedAt is its leaf's placement count, plus one, when its user
	// limit last stopped it.
	blockedAt int
}

// remaining is what an ask still wants.
func (a *appView) remaining(k *Ask) int32 { return k.Count - a.pending[k.Key] }

// countPending counts one more container placed for the ask k and not
// yet handed to the AM.
func (a *appView) countPending(k AskKey) {
	if a.pending == nil {
		a.pending = map[AskKey]int32{}
	}
	a.pending[k]++
}

// view is the cluster as one pass sees it. Queue capacities are of one
// partition each: total and free are the default partition's (the nodes
// without labels), and a leaf's labeled parts have theirs.
type view struct {
	r        *state.ReadTxn
	inflight []*state.Container
	total    state.Resource
	free     state.Resource
	nodes    []*nodeView
	byID     map[string]*nodeView
	// parts are the schedulable nodes by label; labeled the live nodes
	// with labels; asideByLabel what those that take no containers
	// offer, by label.
	parts        map[string]*partition
	labeled      map[string]bool
	asideByLabel map[string]state.Resource
	leaves       map[string]*leafView
	order        []*leafView // in the tree's order
	apps         []*appView
	// inflightAM are attempts whose AM container is being committed.
	inflightAM map[string]bool
	// seq is the next container sequence number per attempt.
	seq map[string]int64
}

// newView reads a snapshot, the asks, and the placements of earlier plans
// still being committed (which count as placed).
func (s *Scheduler) newView(r *state.ReadTxn, asks AskSource, inflight []*state.Container) *view {
	b := &s.buf
	v := &view{r: r, inflight: inflight, leaves: map[string]*leafView{}, inflightAM: map[string]bool{}, seq: map[string]int64{}}
	var ok bool
	b.changed, ok = r.NodesChangedSince(b.cursor, b.changed[:0])
	b.cursor = r.NodeCursor()
	if !ok || !b.refreshNodes(r, b.changed) {
		b.readNodes(r, s.lastNodes)
	}
	v.nodes, v.byID, v.parts, v.labeled, v.asideByLabel = b.nodes, b.byID, b.parts, b.labeled, b.asideByLabel
	v.total = b.unschedulable
	for _, nv := range b.nodes {
		nv.free = nv.base
		if nv.unlabeled {
			v.total = v.total.Add(nv.total)
			v.free = v.free.Add(nv.base)
		}
	}
	s.lastNodes = len(v.nodes)
	tree := s.tree
	if tree == nil {
		tree = DefaultTree()
	}
	if b.leaves == nil {
		b.leaves = map[string]*leafView{}
	}
	for _, q := range tree.Leaves(v.total) {
		l := b.leaves[q.Name]
		if l == nil {
			l = &leafView{leafPart: leafPart{users: map[string]state.Resource{}, active: map[string]bool{}}}
			b.leaves[q.Name] = l
		}
		clear(l.users)
		clear(l.active)
		clear(l.apps)
		for _, lp := range l.labels {
			lp.live = false
		}
		*l = leafView{q: q, leafPart: leafPart{guar: Scale(v.total, q.Capacity), max: Scale(v.total, q.MaxCapacity), users: l.users, active: l.active},
			labels: l.labels, apps: l.apps[:0]}
		v.leaves[q.Name] = l
		v.order = append(v.order, l)
	}
	v.labeledParts(tree)
	for name := range b.leaves {
		if v.leaves[name] == nil {
			delete(b.leaves, name)
		}
	}
	if b.apps == nil {
		b.apps = map[string]*appView{}
	}
	clear(b.apps)
	apps := b.apps
	// The live attempts, read in one pass over their index rather than
	// looked up one by one.
	if b.attempts == nil {
		b.attempts = map[string]*state.Attempt{}
	}
	clear(b.attempts)
	attempts := b.attempts
	b.liveAttempts = refill(b.liveAttempts, r.AppendLiveAttempts)
	for _, at := range b.liveAttempts {
		attempts[at.ID] = at
	}
	b.live = refill(b.live, r.AppendLiveApps)
	live := b.live
	clear(b.appPtrs)
	v.apps = b.appPtrs[:0]
	if cap(b.appSlab) < len(live) {
		b.appSlab = make([]appView, 0, len(live)+len(live)/4)
	}
	appSlab := b.appSlab[:0]
	for _, app := range live {
		l := v.leaves[app.Queue]
		if l == nil {
			continue // a queue the tree no longer has: its applications wait
		}
		appSlab = append(appSlab, appView{app: app, leaf: l})
		a := &appSlab[len(appSlab)-1]
		apps[app.ID] = a
		l.apps = append(l.apps, a)
		v.apps = append(v.apps, a)
		a.at = attempts[app.CurrentAttempt]
	}
	b.appPtrs = v.apps
	// What each application holds, from its record (the FSM keeps it),
	// in each partition.
	for _, a := range v.apps {
		held := a.app.Used.Sub(a.app.LabeledUsed)
		l, user := a.leaf, a.app.User
		l.used = l.used.Add(held)
		l.users[user] = l.users[user].Add(held)
		l.amUsed = l.amUsed.Add(a.app.AMUsed)
		a.used = held
		for label, u := range a.app.UsedByLabel {
			a.used = a.used.Add(u)
			if lp := l.labels[label]; lp != nil {
				lp.used = lp.used.Add(u)
				lp.users[user] = lp.users[user].Add(u)
			}
		}
	}
	charge := func(c *state.Container) *appView {
		a := apps[c.AppID]
		if a != nil {
			a.hold(c)
		}
		return a
	}
	// Placed and not yet handed to the AM: they count against its asks.
	for _, c := range r.AllocatedContainers() {
		if a := apps[c.AppID]; a != nil && a.at != nil && c.AttemptID == a.at.ID && !c.IsAM {
			a.countPending(AskKey{c.AllocationRequestID, c.Priority, c.Resource})
		}
	}
	for _, c := range inflight {
		if r.Container(c.ID) != nil {
			continue // applied: the snapshot has it
		}
		if nv := v.byID[c.NodeID]; nv != nil {
			nv.free = nv.free.Sub(c.Resource)
			if !v.labeled[c.NodeID] {
				v.free = v.free.Sub(c.Resource)
			}
		}
		a := charge(c)
		if c.IsAM {
			v.inflightAM[c.AttemptID] = true
		} else if a != nil {
			a.countPending(AskKey{c.AllocationRequestID, c.Priority, c.Resource})
		}
		if seq := yarnpb.ContainerSeq(c.ID); seq >= v.seq[c.AttemptID] {
			v.seq[c.AttemptID] = seq + 1
		}
	}
	for _, a := range v.apps {
		at := a.at
		if at == nil || v.inflightAM[at.ID] {
			a.done = true
			continue
		}
		if at.State == yarnpb.AttemptState_ATTEMPT_NEW && at.AMContainerID == "" {
			a.needAM = true
			a.blacklist = v.amBlacklist(a.app)
			a.leaf.active[a.app.User] = true
			l := a.leaf
			if amLimit := Scale(l.max, l.q.MaxAMShare); amLimit.Fits(l.amUsed.Add(l.amWanted).Add(a.app.AMResource)) || l.amUsed.Add(l.amWanted).MemoryMB == 0 {
				l.amWanted = l.amWanted.Add(a.app.AMResource)
				l.want(a.app.AMResource, 1)
			}
			continue
		}
		want := asks(at.ID)
		if want == nil || len(want.Asks) == 0 {
			a.done = true
			continue
		}
		a.blacklist = want.Blacklist
		for _, k := range want.Asks {
			if n := a.remaining(k); n > 0 {
				a.asks = append(a.asks, k)
				if lp := a.leaf.part(k.Label); lp != nil {
					lp.want(k.Key.Capability, n)
					lp.active[a.app.User] = true
				}
			}
		}
		if len(a.asks) == 0 {
			a.done = true
			continue
		}
		sort.Slice(a.asks, func(i, j int) bool {
			if a.asks[i].Key.Priority != a.asks[j].Key.Priority {
				return a.asks[i].Key.Priority < a.asks[j].Key.Priority
			}
			return a.asks[i].Key.AllocationRequestID < a.asks[j].Key.AllocationRequestID
		})
	}
	for _, l := range v.order {
		if l.q.Ordering != OrderFair {
			// FIFO with priorities: higher application priority
			// first, then submission order.
			sort.SliceStable(l.apps, func(i, j int) bool { return l.apps[i].app.Priority > l.apps[j].app.Priority })
		}
	}
	return v
}

// partTotal is what the live nodes of a partition offer, those that
// take no containers too: what capacities there are of, as the default
// partition's total is (a node with two labels counts in both).
func (v *view) partTotal(label string) state.Resource {
	if label == "" {
		return v.total
	}
	total := v.asideByLabel[label]
	if part := v.parts[label]; part != nil {
		for _, nv := range part.nodes {
			total = total.Add(nv.total)
		}
	}
	return total
}

// labeledParts gives each leaf its part of every labeled partition it
// may use that has nodes to place on: its guarantee and maximum there.
func (v *view) labeledParts(tree *QueueTree) {
	for label := range v.parts {
		if label == "" {
			continue
		}
		total := v.partTotal(label)
		shares := tree.LabelShares(label)
		for _, l := range v.order {
			sh := shares[l.q.Name]
			if sh.Maximum <= 0 {
				continue // it may not use the label
			}
			if l.labels == nil {
				l.labels = map[string]*leafPart{}
			}
			lp := l.labels[label]
			if lp == nil {
				lp = &leafPart{users: map[string]state.Resource{}, active: map[string]bool{}}
				l.labels[label] = lp
			}
			clear(lp.users)
			clear(lp.active)
			*lp = leafPart{guar: Scale(total, sh.Capacity), max: Scale(total, sh.Maximum), users: lp.users, active: lp.active, live: true}
		}
	}
	for _, l := range v.order {
		for label, lp := range l.labels {
			if !lp.live {
				delete(l.labels, label)
			}
		}
	}
}

// amBlacklist are the nodes where earlier AM attempts of app ran and
// failed: its next AM goes elsewhere (YARN's AM blacklisting), unless
// they are most of the default partition.
func (v *view) amBlacklist(app *state.Application) map[string]bool {
	if app.NumAttempts <= 1 {
		return nil
	}
	var out map[string]bool
	for _, at := range v.r.Attempts(nil, app.ID) {
		if at.State != yarnpb.AttemptState_ATTEMPT_FAILED || at.AMContainerID == "" {
			continue
		}
		if c := v.r.Container(at.AMContainerID); c != nil {
			if out == nil {
				out = map[string]bool{}
			}
			out[c.NodeID] = true
		}
	}
	if part := v.parts[""]; part == nil || float64(len(out)) >= amBlacklistThreshold*float64(len(part.nodes)) {
		return nil
	}
	return out
}

// userLimit is YARN's limit on what one user of a leaf q may hold in a
// partition (l) when asking for required more: an even share of the
// queue there among its active users, but at least
// minimum_user_limit_percent of it, and at most user_limit_factor times
// its capacity. The queue is its capacity, or what it holds and is asked
// for once it has grown past that. A queue guaranteed nothing limits its
// users to its maximum.
func userLimit(l *leafPart, q Queue, required state.Resource) state.Resource {
	if l.guar.MemoryMB <= 0 || l.guar.VCores <= 0 {
		return l.max
	}
	current := l.guar
	if !l.guar.Fits(l.used) {
		current = maxRes(l.guar, l.used.Add(required))
	}
	active := max(len(l.active), 1)
	limit := maxRes(Scale(current, 1/float64(active)), Scale(current, q.MinUserLimitPercent/100))
	return minRes(limit, Scale(l.guar, q.UserLimitFactor))
}

// userFits reports whether user may take res more in l: as in YARN,
// while it holds no more than its limit (so one container may take it
// past the limit).
func userFits(l *leafPart, q Queue, user string, res state.Resource) bool {
	return userLimit(l, q, res).Fits(l.users[user])
}

// DominantShare is r's dominant share of g: the larger of its memory and
// vcores fractions; a resource of g's that is zero counts as infinitely
// shared when r has some of it.
func DominantShare(r, g state.Resource) float64 { return share(r, g) }

func share(r, g state.Resource) float64 {
	var m, c float64
	if g.MemoryMB > 0 {
		m = float64(r.MemoryMB) / float64(g.MemoryMB)
	} else if r.MemoryMB > 0 {
		m = math.Inf(1)
	}
	if g.VCores > 0 {
		c = float64(r.VCores) / float64(g.VCores)
	} else if r.VCores > 0 {
		c = math.Inf(1)
	}
	return math.Max(m, c)
}

// leafHeap orders leaves by how much of their guarantee in one
// partition they hold: the least served first (YARN's queue ordering),
// then the tree's order.
type leafHeap struct {
	ls    []*leafView
	label string
}

func (h *leafHeap) Len() int { return len(h.ls) }
func (h *leafHeap) Less(i, j int) bool {
	pi, pj := h.ls[i].part(h.label), h.ls[j].part(h.label)
	si, sj := share(pi.used, pi.guar), share(pj.used, pj.guar)
	if si != sj {
		return si < sj
	}
	return h.ls[i].q.Name < h.ls[j].q.Name
}
func (h *leafHeap) Swap(i, j int) {
	h.ls[i], h.ls[j] = h.ls[j], h.ls[i]
	h.ls[i].heapIndex, h.ls[j].heapIndex = i, j
}
func (h *leafHeap) Push(x any) {
	l := x.(*leafView)
	l.heapIndex = len(h.ls)
	h.ls = append(h.ls, l)
}
func (h *leafHeap) Pop() any {
	l := h.ls[len(h.ls)-1]
	h.ls = h.ls[:len(h.ls)-1]
	return l
}

// Plan places what it can of the pending AM containers and asks. epoch is
// the RM epoch for container ids. inflight are placements of earlier plans
// still being committed: they count as placed.
//
// Each partition is planned in turn: the default one (AM containers and
// asks without a label) and each labeled one with asks. In a partition,
// one container at a time goes to the leaf queue that holds the smallest
// share of its guarantee there, and within it to the first application
// of the queue's ordering that can take one, so that queues grow toward
// their capacities together and into idle capacity up to their
// maximums. Which partition goes first turns from pass to pass, so that
// one whose asks fill every plan does not starve the others.
func (s *Scheduler) Plan(r *state.ReadTxn, asks AskSource, epoch int64, inflight []*state.Container) []*state.Container {
	clear(s.Waiting)
	s.Delayed = false
	v := s.newView(r, asks, inflight)
	for label := range s.cursors {
		if v.parts[label] == nil {
			delete(s.cursors, label)
		}
	}
	if len(v.nodes) == 0 {
		clear(s.missed)
		return nil
	}
	p := &planner{s: s, v: v, epoch: epoch, unfit: map[unfitKey]bool{}, seq: v.seq, missed: map[askRef]int{}, perNode: map[string]map[string]int32{}}
	defer func() { s.missed = p.missed }()
	labels := v.askedLabels()
	s.turn++
	for i := range labels {
		label := labels[(s.turn+i)%len(labels)]
		v.startPartition(label)
		h := &leafHeap{label: label}
		for _, l := range v.order {
			if len(l.apps) > 0 && l.part(label) != nil {
				heap.Push(h, l)
			}
		}
		for h.Len() > 0 && len(p.out) < s.maxBatch {
			l := h.ls[0]
			if p.step(l, label) {
				heap.Fix(h, 0)
			} else {
				heap.Pop(h)
			}
		}
	}
	return p.out
}

// askedLabels are the partitions this pass plans: the default one, then
// the labeled ones some application asks for, sorted.
func (v *view) askedLabels() []string {
	labels := []string{""}
	for _, a := range v.apps {
		for _, k := range a.asks {
			if k.Label != "" && v.parts[k.Label] != nil && !slices.Contains(labels, k.Label) {
				labels = append(labels, k.Label)
			}
		}
	}
	slices.Sort(labels[1:])
	return labels
}

// startPartition readies the applications for planning a partition:
// those with something to place there take part.
func (v *view) startPartition(label string) {
	for _, l := range v.order {
		l.first, l.placed = 0, 0
	}
	for _, a := range v.apps {
		a.next, a.blockedAt = 0, 0
		a.done = !a.wants(label)
	}
}

// wants reports whether a has something to place in the partition of
// label: its AM container, or an ask.
func (a *appView) wants(label string) bool {
	if label == "" && a.needAM {
		return true
	}
	for _, k := range a.asks {
		if k.Label == label && a.remaining(k) > 0 {
			return true
		}
	}
	return false
}

// step places one container in the partition of label for the first
// application of l that can take one; false when none can.
func (p *planner) step(l *leafView, label string) bool {
	for {
		a := nextApp(l)
		if a == nil {
			return false
		}
		switch p.placeFor(a, label) {
		case placed:
			l.placed++
			return true
		case userLimited:
			// Its limit grows with the queue: another user's
			// placement may let it take more.
			a.blockedAt = l.placed + 1
		default:
			a.done = true
		}
	}
}

// The outcomes of placeFor.
const (
	placed = iota
	userLimited
	cannot
)

// nextApp is the application of l to serve next: in FIFO order, or, in a
// fair queue, the one that holds the least (then FIFO).
func nextApp(l *leafView) *appView {
	// Applications that are done stay done for the pass: skip them once.
	for l.first < len(l.apps) && l.apps[l.first].done {
		l.first++
	}
	var best *appView
	for _, a := range l.apps[l.first:] {
		if a.done || a.blockedAt == l.placed+1 {
			continue
		}
		if l.q.Ordering != OrderFair {
			return a
		}
		if best == nil || a.used.MemoryMB < best.used.MemoryMB {
			best = a
		}
	}
	return best
}

// placeFor places one container for a in the partition of label: its
// AM (in the default partition), or one of its asks there.
func (p *planner) placeFor(a *appView, label string) int {
	l := a.leaf
	user := a.app.User
	if a.needAM && label == "" {
		a.needAM = false
		res := a.app.AMResource
		amLimit := Scale(l.max, l.q.MaxAMShare)
		switch {
		case !amLimit.Fits(l.amUsed.Add(res)) && l.amUsed.MemoryMB > 0:
			p.s.Waiting[a.app.ID] = WaitReason{Kind: WaitAMLimit, Queue: l.q.Name, Res: amLimit, Share: l.q.MaxAMShare}
		case !l.max.Fits(l.used.Add(res)):
			p.s.Waiting[a.app.ID] = WaitReason{Kind: WaitQueueMax, Queue: l.q.Name}
		case !userFits(&l.leafPart, l.q, user, res):
			p.s.Waiting[a.app.ID] = WaitReason{Kind: WaitUserLimit, Queue: l.q.Name, User: user, Res: userLimit(&l.leafPart, l.q, res)}
		default:
			c := p.place(request{app: a, res: res, relax: true, blacklist: a.blacklist})
			if c == nil {
				p.s.Waiting[a.app.ID] = WaitReason{Kind: WaitNoRoom, Res: res}
				return cannot
			}
			c.IsAM = true
			a.hold(c)
			// Its asks come once the AM has registered.
			a.done = true
			return placed
		}
		return cannot
	}
	lp := l.part(label)
	if lp == nil {
		return cannot
	}
	for a.next < len(a.asks) {
		k := a.asks[a.next]
		if k.Label != label || a.remaining(k) <= 0 {
			a.next++
			continue
		}
		res := k.Key.Capability
		if !lp.max.Fits(lp.used.Add(res)) {
			return cannot
		}
		if !userFits(lp, l.q, user, res) {
			return userLimited
		}
		c := p.place(request{app: a, res: res, prio: k.Key.Priority, arid: k.Key.AllocationRequestID, label: k.Label, nodes: k.Nodes, racks: k.Racks,
			relax: k.Relax, blacklist: a.blacklist, maxPerNode: k.MaxPerNode, ref: askRef{a.at.ID, k.Key}})
		if c == nil {
			a.next++
			continue
		}
		a.countPending(k.Key)
		a.hold(c)
		return placed
	}
	return cannot
}

// hold counts c as a's, and its leaf's and user's in c's partition.
func (a *appView) hold(c *state.Container) {
	l := a.leaf
	a.used = a.used.Add(c.Resource)
	if c.IsAM {
		l.amUsed = l.amUsed.Add(c.Resource)
	}
	if lp := l.part(c.Label); lp != nil {
		lp.used = lp.used.Add(c.Resource)
		lp.users[a.app.User] = lp.users[a.app.User].Add(c.Resource)
	}
}

// Scale is r times f, each resource rounded down.
func Scale(r state.Resource, f float64) state.Resource {
	return state.Resource{MemoryMB: int64(float64(r.MemoryMB) * f), VCores: int32(float64(r.VCores) * f)}
}

func times(r state.Resource, n int32) state.Resource {
	return state.Resource{MemoryMB: r.MemoryMB * int64(n), VCores: r.VCores * n}
}

func maxRes(a, b state.Resource) state.Resource {
	return state.Resource{MemoryMB: max(a.MemoryMB, b.MemoryMB), VCores: max(a.VCores, b.VCores)}
}

func minRes(a, b state.Resource) state.Resource {
	return state.Resource{MemoryMB: min(a.MemoryMB, b.MemoryMB), VCores: min(a.VCores, b.VCores)}
}
