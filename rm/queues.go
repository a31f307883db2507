package rm

import (
	"bytes"
	"context"
	"fmt"
	"maps"
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
	var total state.Resource
	for _, n := range r.Nodes(nil) {
		if n.Live() {
			total = total.Add(n.Total)
		}
	}
	infos := map[string]*yarnpb.QueueInfo{}
	users := map[string]map[string]*yarnpb.QueueUser{}
	out := &yarnpb.QueueInfoResponse{}
	for _, q := range tree.Leaves(total) {
		if want != "" && q.Name != want {
			continue
		}
		info := &yarnpb.QueueInfo{
			Name: q.Name, Capacity: float32(q.Capacity), MaxCapacity: float32(q.MaxCapacity), MaxAmShare: float32(q.MaxAMShare),
			Guaranteed: scaleRes(total, q.Capacity).Proto(), Maximum: scaleRes(total, q.MaxCapacity).Proto(),
			MaxApplications: int32(q.MaxApplications), Ordering: q.Ordering,
			MinimumUserLimitPercent: float32(q.MinUserLimitPercent), UserLimitFactor: float32(q.UserLimitFactor),
		}
		infos[q.Name] = info
		users[q.Name] = map[string]*yarnpb.QueueUser{}
		out.Queues = append(out.Queues, info)
	}
	used := map[string]state.Resource{}
	amUsed := map[string]state.Resource{}
	pending := map[string]state.Resource{}
	userUsed := map[string]state.Resource{}
	preempting := s.soft.preemptingSet()
	for _, a := range r.LiveApps(nil) {
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
		for _, c := range liveContainers(r.ContainersByApp(nil, a.ID)) {
			used[a.Queue] = used[a.Queue].Add(c.Resource)
			userUsed[a.Queue+"\x00"+a.User] = userUsed[a.Queue+"\x00"+a.User].Add(c.Resource)
			info.NumContainers++
			if c.IsAM {
				amUsed[a.Queue] = amUsed[a.Queue].Add(c.Resource)
			}
			if preempting[c.ID] {
				info.Preempting++
			}
		}
		if asks := s.soft.asksFor(a.CurrentAttempt); asks != nil {
			for _, k := range asks.Asks {
				pending[a.Queue] = pending[a.Queue].Add(state.Resource{MemoryMB: k.Key.Capability.MemoryMB * int64(k.Count), VCores: k.Key.Capability.VCores * k.Count})
			}
		}
	}
	for name, info := range infos {
		info.Used, info.AmUsed, info.Pending = used[name].Proto(), amUsed[name].Proto(), pending[name].Proto()
		for _, user := range slices.Sorted(maps.Keys(users[name])) {
			u := users[name][user]
			u.Used = userUsed[name+"\x00"+user].Proto()
			info.Users = append(info.Users, user)
			info.UserUsage = append(info.UserUsage, u)
		}
	}
	return out, nil
}

func scaleRes(r state.Resource, f float64) state.Resource {
	return state.Resource{MemoryMB: int64(float64(r.MemoryMB) * f), VCores: int32(float64(r.VCores) * f)}
}
