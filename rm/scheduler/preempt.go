package scheduler

import (
	"container/heap"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/loom-project/loom/rm/state"
)

// Victim is a container the scheduler would take back, and why.
type Victim struct {
	Container *state.Container
	// Queue holds the container over its guarantee; For are the
	// queues below their guarantee that are owed the room.
	Queue, For string
}

// Preempt chooses the containers to take back so that leaf queues below
// their guarantee get what their pending work needs of it, after YARN's
// ProportionalCapacityPreemptionPolicy, in each partition (the default
// one, and each labeled one, with the guarantees its label blocks give):
//
//   - a queue is owed the smaller of its pending asks and what it lacks
//     of its guarantee; the room free on the partition's nodes pays for
//     that first;
//   - the rest comes from queues over their guarantee, the one holding
//     the largest share of its guarantee first, youngest container
//     first, and never so much that one falls below its guarantee;
//   - AM containers are not taken;
//   - one pass newly chooses at most PreemptionPerRound of each
//     partition (the last container may go past it), so that a burst of
//     asks takes the cluster back over a few rounds rather than at once.
//
// marked are the containers already chosen by an earlier pass: they are
// chosen first while still needed, so that a warned container is the one
// later killed, and none is warned twice for the same room. They do not
// count against the round's bound.
func (s *Scheduler) Preempt(r *state.ReadTxn, asks AskSource, marked map[string]bool) []Victim {
	v := s.newView(r, asks, nil)
	queueOf := map[string]*leafView{}
	for _, a := range v.apps {
		queueOf[a.app.ID] = a.leaf
	}
	// The live containers by partition: a container frees room only in
	// the partition it was placed in.
	byPart := map[string][]*state.Container{}
	for _, c := range r.LiveContainers() {
		if c.IsAM || queueOf[c.AppID] == nil || (c.Labeled && c.Label == "") {
			continue
		}
		byPart[c.Label] = append(byPart[c.Label], c)
	}
	var out []Victim
	for _, label := range slices.Sorted(maps.Keys(v.parts)) {
		out = append(out, s.preemptIn(v, label, v.partTotal(label), byPart[label], queueOf, marked)...)
	}
	return out
}

// preemptIn chooses the containers to take back in the partition of
// label, whose nodes offer total; conts are its live containers, not
// AMs.
func (s *Scheduler) preemptIn(v *view, label string, total state.Resource, conts []*state.Container, queueOf map[string]*leafView, marked map[string]bool) []Victim {
	var need, smallest state.Resource
	var owedTo []string
	for _, l := range v.order {
		lp := l.part(label)
		if lp == nil || lp.pendingRes == (state.Resource{}) {
			continue
		}
		lack := nonNegative(lp.guar.Sub(lp.used))
		owed := minRes(nonNegative(lp.pendingRes), lack)
		if owed.MemoryMB > 0 || owed.VCores > 0 {
			need = need.Add(owed)
			owedTo = append(owedTo, l.q.Name)
			if smallest == (state.Resource{}) || lp.minAsk.MemoryMB < smallest.MemoryMB {
				smallest = lp.minAsk
			}
		}
	}
	if need == (state.Resource{}) {
		return nil
	}
	// Room on the nodes pays first, where the smallest owed container
	// fits: slivers too small for any do not.
	for _, n := range v.parts[label].nodes {
		if n.free.Fits(smallest) {
			need = need.Sub(n.free)
		}
	}
	need = nonNegative(need)
	if need.MemoryMB <= 0 && need.VCores <= 0 {
		return nil
	}
	// Candidates per over-guarantee queue: marked first, then youngest.
	cands := map[string][]*state.Container{}
	for _, c := range conts {
		l := queueOf[c.AppID]
		if lp := l.part(label); lp == nil || share(lp.used, lp.guar) <= 1 {
			continue
		}
		cands[l.q.Name] = append(cands[l.q.Name], c)
	}
	h := &overHeap{}
	for name, cs := range cands {
		sort.Slice(cs, func(i, j int) bool {
			if marked[cs[i].ID] != marked[cs[j].ID] {
				return marked[cs[i].ID]
			}
			if cs[i].AllocatedAt != cs[j].AllocatedAt {
				return cs[i].AllocatedAt > cs[j].AllocatedAt
			}
			return cs[i].ID > cs[j].ID
		})
		l := v.leaves[name]
		heap.Push(h, &overQueue{name: name, part: l.part(label), cands: cs})
	}
	// What this pass newly chose, as a dominant share of the partition.
	bound, chosen := s.PreemptionPerRound, 0.0
	if bound <= 0 || bound >= 1 {
		bound = math.Inf(1)
	}
	var out []Victim
	for h.Len() > 0 && (need.MemoryMB > 0 || need.VCores > 0) {
		o := (*h)[0]
		c := o.cands[0]
		if !marked[c.ID] && chosen >= bound {
			heap.Pop(h) // the rest of its candidates are new: next round
			continue
		}
		o.cands = o.cands[1:]
		after := o.part.used.Sub(c.Resource)
		if share(after, o.part.guar) >= 1 {
			o.part.used = after
			need = need.Sub(c.Resource)
			if !marked[c.ID] {
				chosen += share(c.Resource, total)
			}
			out = append(out, Victim{Container: c, Queue: o.name, For: strings.Join(owedTo, ", ")})
		}
		if len(o.cands) == 0 || share(o.part.used, o.part.guar) <= 1 {
			heap.Pop(h)
		} else {
			heap.Fix(h, 0)
		}
	}
	return out
}

func nonNegative(r state.Resource) state.Resource {
	return state.Resource{MemoryMB: max(r.MemoryMB, 0), VCores: max(r.VCores, 0)}
}

type overQueue struct {
	name  string
	part  *leafPart
	cands []*state.Container
}

// overHeap orders queues over their guarantee by the share they hold,
// the largest first.
type overHeap []*overQueue

func (h overHeap) Len() int { return len(h) }
func (h overHeap) Less(i, j int) bool {
	si, sj := share(h[i].part.used, h[i].part.guar), share(h[j].part.used, h[j].part.guar)
	if si != sj {
		return si > sj
	}
	return h[i].name < h[j].name
}
func (h overHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *overHeap) Push(x any)   { *h = append(*h, x.(*overQueue)) }
func (h *overHeap) Pop() any {
	old := *h
	o := old[len(old)-1]
	*h = old[:len(old)-1]
	return o
}
