package rm

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/scheduler"
	"github.com/loom-project/loom/rm/state"
)

// softState is what only the leader keeps, in memory, and rebuilds after a
// failover: AMs re-send their asks and NMs heartbeat again.
type softState struct {
	mu sync.Mutex
	// asks are each attempt's asks, by attempt id. An Asks and its maps
	// are never changed once stored: an update stores a changed copy, so
	// that a scheduling pass reads them without copying or locking.
	asks      map[string]*scheduler.Asks
	nodeSeen  map[string]time.Time
	nodeResp  map[string]int32
	nodeUtil  map[string]*yarnpb.Resource
	amSeen    map[string]time.Time
	amLast    map[string]*yarnpb.AllocateResponse
	amLocks   map[string]*sync.Mutex
	delivered map[string]uint64               // attempt id -> highest completion index handed to the AM
	waiting   map[string]scheduler.WaitReason // app id -> why it waits for its AM container
	// preempting are the containers being taken back, by container id;
	// preemptCh is closed and replaced whenever that set changes, and
	// preemptSent is what each attempt's AM was last told of it.
	preempting  map[string]preemption
	preemptCh   chan struct{}
	preemptSent map[string][]string
	// preemptOf is preempting by attempt, each attempt's ids sorted:
	// what an Allocate answer tells its AM, looked up, not searched for.
	preemptOf map[string][]string
}

// preemption is a container the scheduler takes back: its AM was warned,
// and the container is killed at deadline.
type preemption struct {
	attemptID string
	nodeID    string
	deadline  time.Time
	why       string
}

func newSoftState() *softState {
	s := &softState{}
	s.reset(time.Now(), nil)
	return s
}

// reset starts a leadership: every node and running AM gets a full
// liveness period from now.
func (s *softState) reset(now time.Time, r *state.ReadTxn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asks = map[string]*scheduler.Asks{}
	s.nodeSeen = map[string]time.Time{}
	s.nodeResp = map[string]int32{}
	s.nodeUtil = map[string]*yarnpb.Resource{}
	s.amSeen = map[string]time.Time{}
	s.amLast = map[string]*yarnpb.AllocateResponse{}
	s.amLocks = map[string]*sync.Mutex{}
	s.delivered = map[string]uint64{}
	s.waiting = map[string]scheduler.WaitReason{}
	s.preempting = map[string]preemption{}
	s.preemptOf = map[string][]string{}
	s.preemptSent = map[string][]string{}
	if s.preemptCh == nil {
		s.preemptCh = make(chan struct{})
	}
	if r == nil {
		return
	}
	for _, n := range r.Nodes() {
		if n.Live() {
			s.nodeSeen[n.ID] = now
		}
	}
	// Completions recorded before this leadership may be handed to an AM
	// once more: AMs ignore a completion they already know.
	for _, at := range r.LiveAttempts(nil) {
		s.amSeen[at.ID] = now
	}
}

func (s *softState) asksFor(attemptID string) *scheduler.Asks {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asks[attemptID]
}

// updateAsks replaces the asks an AM sent; it reports whether anything
// changed.
func (s *softState) updateAsks(attemptID string, asks []*scheduler.Ask, add, remove []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.asks[attemptID]
	if old == nil {
		old = &scheduler.Asks{}
		s.asks[attemptID] = old
	}
	if len(asks)+len(add)+len(remove) == 0 {
		return false // most calls: the AM polls, its asks as they were
	}
	next := &scheduler.Asks{Asks: maps.Clone(old.Asks), Blacklist: old.Blacklist}
	if next.Asks == nil {
		next.Asks = map[scheduler.AskKey]*scheduler.Ask{}
	}
	changed := false
	for _, a := range asks {
		prev := next.Asks[a.Key]
		if a.Count == 0 {
			if prev != nil {
				delete(next.Asks, a.Key)
				changed = true
			}
			continue
		}
		if prev == nil || prev.Count != a.Count || prev.Relax != a.Relax || len(prev.Nodes) != len(a.Nodes) {
			changed = true
		}
		next.Asks[a.Key] = a
	}
	if len(add)+len(remove) > 0 {
		bl := maps.Clone(old.Blacklist)
		if bl == nil {
			bl = map[string]bool{}
		}
		for _, n := range add {
			bl[n] = true
		}
		for _, n := range remove {
			delete(bl, n)
		}
		next.Blacklist = bl
		changed = true
	}
	s.asks[attemptID] = next
	return changed
}

// delivered decrements asks by the containers handed to the AM: the AM
// will lower its totals the same way in its next request.
func (s *softState) markDelivered(attemptID string, cs []*state.Container, completedIndex uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if completedIndex > s.delivered[attemptID] {
		s.delivered[attemptID] = completedIndex
	}
	cur := s.asks[attemptID]
	if cur == nil {
		return
	}
	var next map[scheduler.AskKey]*scheduler.Ask
	for _, c := range cs {
		k := scheduler.AskKey{AllocationRequestID: c.AllocationRequestID, Priority: c.Priority, Capability: c.Resource}
		src := next
		if src == nil {
			src = cur.Asks
		}
		if a := src[k]; a != nil {
			if next == nil {
				next = maps.Clone(cur.Asks)
			}
			na := *a
			na.Count--
			if na.Count <= 0 {
				delete(next, k)
			} else {
				next[k] = &na
			}
		}
	}
	if next != nil {
		s.asks[attemptID] = &scheduler.Asks{Asks: next, Blacklist: cur.Blacklist}
	}
}

func (s *softState) deliveredIndex(attemptID string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered[attemptID]
}

func (s *softState) amLock(attemptID string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.amLocks[attemptID]
	if l == nil {
		l = &sync.Mutex{}
		s.amLocks[attemptID] = l
	}
	return l
}

func (s *softState) touchAM(attemptID string, now time.Time) {
	s.mu.Lock()
	s.amSeen[attemptID] = now
	s.mu.Unlock()
}

func (s *softState) lastResponse(attemptID string) *yarnpb.AllocateResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.amLast[attemptID]
}

func (s *softState) setLastResponse(attemptID string, r *yarnpb.AllocateResponse) {
	s.mu.Lock()
	s.amLast[attemptID] = r
	s.mu.Unlock()
}

// forgetAttempt drops an ended attempt's soft state.
func (s *softState) forgetAttempt(attemptID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.asks, attemptID)
	delete(s.amSeen, attemptID)
	delete(s.amLast, attemptID)
	delete(s.amLocks, attemptID)
	delete(s.delivered, attemptID)
	delete(s.preemptSent, attemptID)
}

// retain forgets what it holds of attempts and nodes that are not live:
// every way an attempt or a node ends (a finish, a kill, an AM container's
// exit, a node's loss, retention) leaves nothing behind past the next
// liveness pass.
func (s *softState) retain(attempts []*state.Attempt, nodes []*state.Node) {
	liveAt := make(map[string]bool, len(attempts))
	for _, at := range attempts {
		liveAt[at.ID] = true
	}
	liveNode := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		if n.Live() {
			liveNode[n.ID] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keepOnly(s.asks, liveAt)
	keepOnly(s.amSeen, liveAt)
	keepOnly(s.amLast, liveAt)
	keepOnly(s.amLocks, liveAt)
	keepOnly(s.delivered, liveAt)
	keepOnly(s.preemptSent, liveAt)
	keepOnly(s.nodeSeen, liveNode)
	keepOnly(s.nodeResp, liveNode)
	keepOnly(s.nodeUtil, liveNode)
}

// keepOnly deletes the entries of m whose keys live does not hold.
func keepOnly[V any](m map[string]V, live map[string]bool) {
	maps.DeleteFunc(m, func(k string, _ V) bool { return !live[k] })
}

// sizes are the entries of the soft state's maps, for tests.
func (s *softState) sizes() (attempts, nodes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(len(s.asks), len(s.amSeen), len(s.amLast), len(s.amLocks), len(s.delivered), len(s.preemptSent)), max(len(s.nodeSeen), len(s.nodeResp), len(s.nodeUtil))
}

// amSeenAt returns when the AM of an attempt last called, starting its
// clock now when it has none.
func (s *softState) amSeenAt(attemptID string, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.amSeen[attemptID]
	if !ok {
		s.amSeen[attemptID] = now
		return now
	}
	return t
}

func (s *softState) touchNode(id string, now time.Time, util *yarnpb.Resource) {
	s.mu.Lock()
	s.nodeSeen[id] = now
	if util != nil {
		s.nodeUtil[id] = util
	}
	s.mu.Unlock()
}

func (s *softState) nodeSeenAt(id string, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.nodeSeen[id]
	if !ok {
		s.nodeSeen[id] = now
		return now
	}
	return t
}

func (s *softState) forgetNode(id string) {
	s.mu.Lock()
	delete(s.nodeSeen, id)
	delete(s.nodeResp, id)
	delete(s.nodeUtil, id)
	s.mu.Unlock()
}

func (s *softState) nextNodeResponse(id string) int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodeResp[id]++
	return s.nodeResp[id]
}

func (s *softState) utilization(id string) *yarnpb.Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodeUtil[id]
}

// swapWaiting keeps a pass's waiting reasons and gives back the map it
// held, emptied, for the next pass to fill: nothing is copied.
func (s *softState) swapWaiting(w map[string]scheduler.WaitReason) map[string]scheduler.WaitReason {
	s.mu.Lock()
	old := s.waiting
	s.waiting = w
	s.mu.Unlock()
	if old == nil {
		return map[string]scheduler.WaitReason{}
	}
	clear(old)
	return old
}

func (s *softState) waitingReason(appID string) string {
	s.mu.Lock()
	w, ok := s.waiting[appID]
	s.mu.Unlock()
	if !ok {
		return ""
	}
	return w.String()
}

func (s *softState) lastSeen(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.nodeSeen[id]
	return t, ok
}

// setPreempting replaces the set of containers being taken back (the
// preemption pass computes it whole from the live containers, so it holds
// no ended one) and wakes AMs' held Allocate calls when it changed.
func (s *softState) setPreempting(next map[string]preemption) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if maps.EqualFunc(s.preempting, next, func(a, b preemption) bool { return a.deadline.Equal(b.deadline) }) {
		return
	}
	s.preempting = next
	s.preemptOf = map[string][]string{}
	for id, p := range next {
		s.preemptOf[p.attemptID] = append(s.preemptOf[p.attemptID], id)
	}
	for _, ids := range s.preemptOf {
		slices.Sort(ids)
	}
	close(s.preemptCh)
	s.preemptCh = make(chan struct{})
}

// preemptingSet are the containers being taken back.
func (s *softState) preemptingSet() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.preempting))
	for id := range s.preempting {
		out[id] = true
	}
	return out
}

// preemptionFor are the containers of an attempt being taken back,
// sorted, whether its AM has yet to hear of that set, and a channel
// closed when the set changes.
func (s *softState) preemptionFor(attemptID string) (ids []string, news bool, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids = slices.Clone(s.preemptOf[attemptID])
	return ids, !slices.Equal(ids, s.preemptSent[attemptID]), s.preemptCh
}

// preemptionSent records what an attempt's AM was told.
func (s *softState) preemptionSent(attemptID string, ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(ids) == 0 {
		delete(s.preemptSent, attemptID)
		return
	}
	s.preemptSent[attemptID] = ids
}

// preemptions is a copy of the containers being taken back.
func (s *softState) preemptions() map[string]preemption {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.preempting)
}

// pendingOf is what an attempt's AM asks for that is not placed yet.
func (s *softState) pendingOf(attemptID string) state.Resource {
	var out state.Resource
	s.eachPending(attemptID, func(_ string, r state.Resource) { out = out.Add(r) })
	return out
}

// eachPending calls f with what an attempt's AM asks for that is not
// placed yet, an ask at a time, with the label of the nodes it asks for
// ("" for the nodes without labels). f must not call the soft state.
func (s *softState) eachPending(attemptID string, f func(label string, r state.Resource)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.asks[attemptID]; a != nil {
		for _, k := range a.Asks {
			f(k.Label, state.Resource{MemoryMB: k.Key.Capability.MemoryMB * int64(k.Count), VCores: k.Key.Capability.VCores * k.Count})
		}
	}
}
