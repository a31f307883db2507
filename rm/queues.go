package rm

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/loom-project/loom/errdefs"
	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/scheduler"
	"github.com/loom-project/loom/rm/state"
	"github.com/loom-project/loom/tlsutil"
)

// The queue tree lives in raft as the text of its queue file (state.Meta):
// every replica parses the same bytes to the same tree, a snapshot
// carries it, and a new leader schedules by it before reading any file.
// A replica started with --queues commits its file when it becomes the
// leader, and `loom admin refresh-queues` commits it again after an
// edit; a file that does not parse, or that would drop a queue with live
// applications, changes nothing.

// trees caches parsed queue files by their text: the scheduler asks for
// the tree on every pass.
var trees struct {
	mu   sync.Mutex
	src  []byte
	tree *scheduler.QueueTree
}

// queueTreeOf is the tree a state's meta record holds.
func queueTreeOf(m state.Meta) *scheduler.QueueTree {
	if len(m.QueueSource) == 0 {
		return scheduler.DefaultTree()
	}
	trees.mu.Lock()
	defer trees.mu.Unlock()
	if trees.tree != nil && bytes.Equal(trees.src, m.QueueSource) {
		return trees.tree
	}
	t, err := scheduler.ParseQueueFile(m.QueueFile, m.QueueSource)
	if err != nil {
		// The FSM commits only files that parse; a newer RM's file
		// this one cannot read leaves the built-in tree.
		return scheduler.DefaultTree()
	}
	trees.src, trees.tree = m.QueueSource, t
	return t
}

// queueTree is the tree the current state holds.
func (s *Server) queueTree() *scheduler.QueueTree {
	return queueTreeOf(s.State().Snapshot().Meta())
}

// checkQueueChange parses a queue file and checks it may replace the
// tree of r: every live application's queue is a leaf of it.
func checkQueueChange(r *state.ReadTxn, filename string, src []byte) (*scheduler.QueueTree, error) {
	tree, err := scheduler.ParseQueueFile(filename, src)
	if err != nil {
		return nil, err
	}
	stranded := map[string]int{}
	for _, a := range r.LiveApps(nil) {
		if tree.Leaf(a.Queue) == nil {
			stranded[a.Queue]++
		}
	}
	if len(stranded) > 0 {
		var parts []string
		for _, q := range slices.Sorted(maps.Keys(stranded)) {
			parts = append(parts, fmt.Sprintf("%s (%d)", q, stranded[q]))
		}
		return nil, fmt.Errorf("%s drops queues that have live applications: %s; move them (loom app move) or let them end first", filename, strings.Join(parts, ", "))
	}
	return tree, nil
}

// readQueueFile reads and parses the replica's --queues file.
func (s *Server) readQueueFile() (*scheduler.QueueTree, error) {
	src, err := os.ReadFile(s.cfg.QueueFile)
	if err != nil {
		return nil, fmt.Errorf("reading the queue file: %w", err)
	}
	return scheduler.ParseQueueFile(s.cfg.QueueFile, src)
}

// commitQueueFile commits the replica's queue file when it differs from
// the tree in raft; it reports whether it did.
func (s *Server) commitQueueFile() (bool, error) {
	tree, err := s.readQueueFile()
	if err != nil {
		return false, errdefs.InvalidArgument("%v; the queues are unchanged", err)
	}
	m := s.State().Snapshot().Meta()
	if m.QueueFile == tree.Filename && bytes.Equal(m.QueueSource, tree.Source) {
		return false, nil
	}
	if _, err := checkQueueChange(s.State().Snapshot(), tree.Filename, tree.Source); err != nil {
		return false, errdefs.FailedPrecondition("%v; the queues are unchanged", err)
	}
	// commit, not raftApply: establishing leadership commits it too.
	if _, _, err := s.commit(CmdSetQueues, setQueuesCmd{Filename: tree.Filename, Source: tree.Source}); err != nil {
		return false, err
	}
	s.logger.Info("queue tree replaced", "file", tree.Filename, "leaves", strings.Join(tree.LeafNames(), ","))
	s.kickScheduler()
	return true, nil
}

// who is an identity as queue ACLs see it.
func who(id tlsutil.Identity) scheduler.Who {
	return scheduler.Who{User: id.Name, Groups: id.Groups}
}

// maySubmit is the queue's submit ACL; cluster admins may submit anywhere.
func (s *Server) maySubmit(ctx context.Context, tree *scheduler.QueueTree, queue string) error {
	id := caller(ctx)
	if id.Kind != tlsutil.KindUser {
		return errdefs.PermissionDenied("%s may not submit applications to queue %s", id, queue)
	}
	if s.isAdmin(id) || tree.MaySubmit(queue, who(id)) {
		return nil
	}
	return errdefs.PermissionDenied("user %s may not submit applications to queue %s: its acl_submit does not name the user or a group of theirs (ask an administrator of the queue)", id.Name, queue)
}

// mayAdministerQueue reports whether the caller administers queue: a
// cluster admin, or one its acl_administer names.
func (s *Server) mayAdministerQueue(ctx context.Context, tree *scheduler.QueueTree, queue string) bool {
	id := caller(ctx)
	return id.Kind == tlsutil.KindUser && (s.isAdmin(id) || tree.MayAdminister(queue, who(id)))
}

// checkQueueRoom refuses an application a queue at its max_applications
// cannot take.
func checkQueueRoom(r *state.ReadTxn, tree *scheduler.QueueTree, queue string) error {
	leaf := tree.Leaf(queue)
	if leaf == nil {
		return errdefs.InvalidArgument("queue %s does not exist", queue)
	}
	n := 0
	for _, a := range r.LiveApps(nil) {
		if a.Queue == queue {
			n++
		}
	}
	if n >= leaf.MaxApplications {
		return errdefs.FailedPrecondition("queue %s already has %d live applications, its max_applications; wait for some to end or use another queue", queue, n)
	}
	return nil
}

// RefreshQueues reloads the leader's queue file.
func (e *adminEndpoint) RefreshQueues(ctx context.Context, _ *yarnpb.RefreshQueuesRequest) (*yarnpb.RefreshQueuesResponse, error) {
	s := e.s
	if err := s.requireLeader(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if s.cfg.QueueFile == "" {
		return nil, errdefs.ToGRPC(errdefs.FailedPrecondition("the leader, %s, was started without --queues: it runs the built-in root.default queue and has no file to reload", s.cfg.AdvertiseAddr))
	}
	changed, err := s.commitQueueFile()
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	tree := s.queueTree()
	return &yarnpb.RefreshQueuesResponse{File: tree.Filename, Changed: changed, Leaves: tree.LeafNames()}, nil
}

// QueueInfo reports the leaf queues: their settings, what they are owed
// and hold now, their applications and users.
func (e *clientEndpoint) QueueInfo(ctx context.Context, req *yarnpb.QueueInfoRequest) (*yarnpb.QueueInfoResponse, error) {
	s := e.s
	if err := s.waitReadable(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	r := s.State().Snapshot()
	tree := queueTreeOf(r.Meta())
	want := ""
	if req.Queue != "" {
		q, err := tree.Resolve(req.Queue)
		if err != nil {
			return nil, errdefs.ToGRPC(errdefs.InvalidArgument("%v", err))
		}
		want = q
	}
	total, byLabel := partitions(r)
	infos := map[string]*yarnpb.QueueInfo{}
	users := map[string]map[string]*yarnpb.QueueUser{}
	// parts are each leaf's labeled partitions, by label.
	parts := map[string]map[string]*yarnpb.QueuePartition{}
	out := &yarnpb.QueueInfoResponse{}
	for _, q := range tree.Leaves(total) {
		if want != "" && q.Name != want {
			continue
		}
		info := &yarnpb.QueueInfo{
			Name: q.Name, Capacity: float32(q.Capacity), MaxCapacity: float32(q.MaxCapacity), MaxAmShare: float32(q.MaxAMShare),
			Guaranteed: scheduler.Scale(total, q.Capacity).Proto(), Maximum: scheduler.Scale(total, q.MaxCapacity).Proto(),
			MaxApplications: int32(q.MaxApplications), Ordering: q.Ordering,
			MinimumUserLimitPercent: float32(q.MinUserLimitPercent), UserLimitFactor: float32(q.UserLimitFactor),
			NodeLabels: tree.NodeLabelsOf(q.Name),
		}
		infos[q.Name] = info
		users[q.Name] = map[string]*yarnpb.QueueUser{}
		parts[q.Name] = map[string]*yarnpb.QueuePartition{}
		out.Queues = append(out.Queues, info)
	}
	// What the queues' applications ask for, by queue and partition: a
	// labeled partition with asks is reported even when no node has its
	// label.
	apps := r.LiveApps(nil)
	pending := map[string]map[string]state.Resource{}
	asked := map[string]state.Resource{}
	for _, a := range apps {
		if infos[a.Queue] == nil {
			continue
		}
		s.soft.eachPending(a.CurrentAttempt, func(label string, p state.Resource) {
			if pending[a.Queue] == nil {
				pending[a.Queue] = map[string]state.Resource{}
			}
			pending[a.Queue][label] = pending[a.Queue][label].Add(p)
			if label != "" {
				asked[label] = state.Resource{}
			}
		})
	}
	for _, label := range partitionLabels(tree, byLabel, asked) {
		shares := tree.LabelShares(label)
		for _, info := range out.Queues {
			sh := shares[info.Name]
			if sh.Maximum <= 0 {
				continue // it may not use the label
			}
			pt := &yarnpb.QueuePartition{Label: label, Capacity: float32(sh.Capacity), MaxCapacity: float32(sh.Maximum),
				Guaranteed: scheduler.Scale(byLabel[label], sh.Capacity).Proto(), Maximum: scheduler.Scale(byLabel[label], sh.Maximum).Proto(),
				Pending: pending[info.Name][label].Proto()}
			parts[info.Name][label] = pt
			info.Partitions = append(info.Partitions, pt)
		}
	}
	used := map[string]state.Resource{}
	amUsed := map[string]state.Resource{}
	userUsed := map[string]state.Resource{}
	for _, a := range apps {
		info := infos[a.Queue]
		if info == nil {
			continue
		}
		u := users[a.Queue][a.User]
		if u == nil {
			u = &yarnpb.QueueUser{User: a.User}
			users[a.Queue][a.User] = u
		}
		u.NumApplications++
		info.NumApplications++
		if a.State != yarnpb.AppState_APP_RUNNING {
			info.NumPending++
		}
		// Capacities are of the nodes without labels: so is use.
		held := a.Used.Sub(a.LabeledUsed)
		used[a.Queue] = used[a.Queue].Add(held)
		amUsed[a.Queue] = amUsed[a.Queue].Add(a.AMUsed)
		userUsed[a.Queue+"\x00"+a.User] = userUsed[a.Queue+"\x00"+a.User].Add(held)
		info.NumContainers += a.NumContainers
		for label, u := range a.UsedByLabel {
			if pt := parts[a.Queue][label]; pt != nil {
				pt.Used = state.ResourceFrom(pt.Used).Add(u).Proto()
			}
		}
	}
	for id := range s.soft.preemptingSet() {
		if c := r.Container(id); c != nil {
			if a := r.App(nil, c.AppID); a != nil && infos[a.Queue] != nil {
				infos[a.Queue].Preempting++
			}
		}
	}
	for name, info := range infos {
		info.Used, info.AmUsed, info.Pending = used[name].Proto(), amUsed[name].Proto(), pending[name][""].Proto()
		for _, user := range slices.Sorted(maps.Keys(users[name])) {
			u := users[name][user]
			u.Used = userUsed[name+"\x00"+user].Proto()
			info.Users = append(info.Users, user)
			info.UserUsage = append(info.UserUsage, u)
		}
	}
	return out, nil
}

// schedulerInfo is /ws/v1/cluster/scheduler: the queue tree with YARN's
// CapacityScheduler field names. Percentages are of the parent
// (capacity, maxCapacity), of the whole cluster (absolute…), and of the
// queue's own capacity (usedCapacity).
func (s *Server) schedulerInfo(ctx context.Context) (map[string]any, error) {
	resp, err := (&clientEndpoint{s: s}).QueueInfo(ctx, &yarnpb.QueueInfoRequest{})
	if err != nil {
		return nil, err
	}
	leaves := map[string]*yarnpb.QueueInfo{}
	for _, q := range resp.Queues {
		leaves[q.Name] = q
	}
	r := s.State().Snapshot()
	total, byLabel := partitions(r)
	type share struct{ capacity, maximum float64 }
	shares := map[string]share{}
	tree := queueTreeOf(r.Meta())
	tree.Walk(total, func(q *scheduler.QueueConf, capacity, maximum float64) { shares[q.Name] = share{capacity, maximum} })
	labels := partitionLabels(tree, byLabel, nil)
	for _, q := range resp.Queues {
		for _, pt := range q.Partitions {
			if !slices.Contains(labels, pt.Label) {
				labels = append(labels, pt.Label) // asked for, on no node
			}
		}
	}
	slices.Sort(labels)
	labelShares := map[string]map[string]scheduler.LabelShare{}
	for _, l := range labels {
		labelShares[l] = tree.LabelShares(l)
	}
	resJSON := func(p *yarnpb.Resource) map[string]any {
		return map[string]any{"memory": p.GetMemoryMb(), "vCores": p.GetVcores()}
	}
	pct := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return 100 * a / b
	}
	// byPartition are a queue's capacities and use in each partition
	// (YARN's queueCapacitiesByPartition and resourceUsagesByPartition),
	// the default one ("") first; a labeled one only where it may use the
	// label.
	byPartition := func(q *scheduler.QueueConf, parent string, in map[string]partUse) (caps, uses []map[string]any) {
		add := func(label string, sh, parentSh share, total state.Resource, use partUse) {
			used := use.used
			guar, max := scheduler.Scale(total, sh.capacity), scheduler.Scale(total, sh.maximum)
			caps = append(caps, map[string]any{
				"partitionName": label, "capacity": pct(sh.capacity, parentSh.capacity), "maxCapacity": pct(sh.maximum, parentSh.maximum),
				"absoluteCapacity": 100 * sh.capacity, "absoluteMaxCapacity": 100 * sh.maximum,
				"usedCapacity": finitePct(scheduler.DominantShare(used, guar)), "absoluteUsedCapacity": finitePct(scheduler.DominantShare(used, total)),
				"effectiveMinResource": resJSON(guar.Proto()), "effectiveMaxResource": resJSON(max.Proto()),
			})
			uses = append(uses, map[string]any{"partitionName": label, "used": resJSON(used.Proto()), "pending": resJSON(use.pending.Proto())})
		}
		parentSh := share{1, 1}
		if parent != "" {
			parentSh = shares[parent]
		}
		add("", shares[q.Name], parentSh, total, in[""])
		for _, l := range labels {
			sh := labelShares[l][q.Name]
			if sh.Maximum <= 0 {
				continue
			}
			psh := scheduler.LabelShare{Capacity: 1, Maximum: 1}
			if parent != "" {
				psh = labelShares[l][parent]
			}
			add(l, share{sh.Capacity, sh.Maximum}, share{psh.Capacity, psh.Maximum}, byLabel[l], in[l])
		}
		return caps, uses
	}
	// node is a queue's JSON, the number of its applications, and its use
	// by partition, its children's summed.
	var node func(q *scheduler.QueueConf, parent string) (map[string]any, int32, map[string]partUse)
	node = func(q *scheduler.QueueConf, parent string) (map[string]any, int32, map[string]partUse) {
		parentShare := share{1, 1}
		if parent != "" {
			parentShare = shares[parent]
		}
		sh := shares[q.Name]
		out := map[string]any{
			"queueName": q.Leaf, "queuePath": q.Name, "state": "RUNNING",
			"capacity": pct(sh.capacity, parentShare.capacity), "maxCapacity": pct(sh.maximum, parentShare.maximum),
			"absoluteCapacity": 100 * sh.capacity, "absoluteMaxCapacity": 100 * sh.maximum,
			"nodeLabels": nonNil(tree.NodeLabelsOf(q.Name)),
		}
		var apps int32
		in := map[string]partUse{}
		if len(q.Children) == 0 {
			info := leaves[q.Name]
			apps = info.GetNumApplications()
			in[""] = partUse{state.ResourceFrom(info.GetUsed()), state.ResourceFrom(info.GetPending())}
			for _, pt := range info.GetPartitions() {
				in[pt.Label] = partUse{state.ResourceFrom(pt.Used), state.ResourceFrom(pt.Pending)}
			}
			users := []map[string]any{}
			for _, u := range info.GetUserUsage() {
				users = append(users, map[string]any{"username": u.User, "resourcesUsed": resJSON(u.Used), "numActiveApplications": u.NumApplications})
			}
			maxAM := scheduler.Scale(state.ResourceFrom(info.GetMaximum()), q.MaxAMShare)
			out["type"] = "capacitySchedulerLeafQueueInfo"
			out["numActiveApplications"] = info.GetNumApplications() - info.GetNumPending()
			out["numPendingApplications"] = info.GetNumPending()
			out["numContainers"] = info.GetNumContainers()
			out["maxApplications"] = q.MaxApplications
			out["userLimit"] = q.MinUserLimitPercent
			out["userLimitFactor"] = q.UserLimitFactor
			out["users"] = map[string]any{"user": users}
			out["AMResourceLimit"] = resJSON(maxAM.Proto())
			out["usedAMResource"] = resJSON(info.GetAmUsed())
			out["pendingResources"] = resJSON(info.GetPending())
			out["orderingPolicyInfo"] = q.Ordering
			out["preemptionDisabled"] = !s.cfg.Preemption
			out["numContainersPreempting"] = info.GetPreempting()
		} else {
			var children []map[string]any
			for _, c := range q.Children {
				cj, ca, cin := node(c, q.Name)
				children = append(children, cj)
				apps += ca
				for l, u := range cin {
					in[l] = partUse{in[l].used.Add(u.used), in[l].pending.Add(u.pending)}
				}
			}
			out["queues"] = map[string]any{"queue": children}
		}
		used := in[""].used
		guar := scheduler.Scale(total, sh.capacity)
		out["usedCapacity"] = finitePct(scheduler.DominantShare(used, guar))
		out["absoluteUsedCapacity"] = finitePct(scheduler.DominantShare(used, total))
		out["numApplications"] = apps
		out["resourcesUsed"] = resJSON(used.Proto())
		out["usedResources"] = fmt.Sprintf("<memory:%d, vCores:%d>", used.MemoryMB, used.VCores)
		caps, uses := byPartition(q, parent, in)
		out["capacities"] = map[string]any{"queueCapacitiesByPartition": caps}
		out["resources"] = map[string]any{"resourceUsagesByPartition": uses}
		return out, apps, in
	}
	root, _, _ := node(tree.Root, "")
	root["type"] = "capacityScheduler"
	return map[string]any{"scheduler": map[string]any{"schedulerInfo": root}}, nil
}

// partUse is what a queue's containers hold in a partition, and what its
// applications ask for there.
type partUse struct{ used, pending state.Resource }

// nonNil is s, or an empty list for JSON's [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// finitePct is a share as a percentage; a share of nothing (a queue of
// 0% capacity that holds some) is 0, as JSON has no infinity.
func finitePct(f float64) float64 {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0
	}
	return 100 * f
}

// partitions are what the live nodes offer: those without labels, which
// queues' capacities are of, and those of each label, which label
// capacities are of, as the scheduler's.
func partitions(r *state.ReadTxn) (state.Resource, map[string]state.Resource) {
	var total state.Resource
	byLabel := map[string]state.Resource{}
	r.EachNode(func(n *state.Node) {
		switch {
		case !n.Live():
		case len(n.Labels) == 0:
			total = total.Add(n.Total)
		default:
			for _, l := range n.Labels {
				byLabel[l] = byLabel[l].Add(n.Total)
			}
		}
	})
	return total, byLabel
}

// partitionLabels are the labeled partitions a queue report shows,
// sorted: those with live nodes, those asked for, and those the queue
// file names.
func partitionLabels(tree *scheduler.QueueTree, live, asked map[string]state.Resource) []string {
	labels := slices.Collect(maps.Keys(live))
	for l := range asked {
		if _, ok := live[l]; !ok {
			labels = append(labels, l)
		}
	}
	for _, l := range tree.NamedLabels() {
		if !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	slices.Sort(labels)
	return labels
}
