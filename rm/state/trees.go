package state

import (
	"sync"

	"github.com/google/btree"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/loom-project/loom/proto/yarnpb"
)

// The containers are most of the state's rows and most of its writes:
// each is placed, handed out, started and completed, four writes in its
// life, and a busy cluster places thousands a second; each placement
// also rewrites its node, and every scheduling pass reads every node.
// Nodes and containers live in persistent B-trees of their own rather
// than in go-memdb, whose radix trees copy a node, a channel and an LRU
// entry for every tree node a write passes through (some 120
// allocations and 8 KiB a container placed, measured by
// BenchmarkPlaceContainers), and whose iterators cost a scheduling pass
// a third of a microsecond a node. A B-tree node a transaction has
// copied is its own for the rest of the transaction, so a batch of
// writes copies each leaf it touches once.

// btreeDegree is the trees' fan-out: nodes of at most 31 items, so a
// leaf copied by a write is a few hundred bytes.
const btreeDegree = 16

// trees is one version of the nodes and containers. A committed version
// is never changed again; a write transaction works on a clone, which
// shares every node it has not written.
type trees struct {
	nodes *btree.BTreeG[*Node] // by id

	byID      *btree.BTreeG[idItem]     // every container
	byAttempt *btree.BTreeG[*Container] // by attempt, then id
	live      *btree.BTreeG[*Container] // those that have not completed
	byNode    *btree.BTreeG[*Container] // live ones with a node, by node, then id
	allocated *btree.BTreeG[*Container] // placed and not yet handed out
	// watches holds the channels of each attempt that has containers,
	// closed and replaced when a transaction changes them.
	watches *btree.BTreeG[*attemptWatch]
	// born is closed when an attempt gets its first container: what a
	// reader of an attempt without containers watches.
	born chan struct{}
	// meta is the cluster record (nil before its first write), which
	// every heartbeat reads: a read of it costs nothing.
	meta *Meta
}

// attemptWatch is what fires when an attempt's containers change: ch at
// every change, news only at what its AM is told of (a container placed
// for it, completed or forgotten), not at a container handed over or
// started. An AM's Allocate call waits on news: a busy application's
// containers start by the hundred, and each start would wake its AM to
// find nothing to say.
type attemptWatch struct {
	attempt string
	ch      chan struct{}
	news    chan struct{}
}

// newsForAM reports whether a change of a container from old (nil when
// new) to c is one its AM is told of.
func newsForAM(old, c *Container) bool {
	return old == nil || (c.Completed() && !old.Completed())
}

// idItem is a container in the by-id tree, its id beside it: a lookup,
// the most frequent read (a heartbeat looks up each container it
// reports), compares ids without reaching through to the container, and
// its probe is a value, not an allocation.
type idItem struct {
	id string
	c  *Container
}

func byIDLess(a, b *Container) bool { return a.ID < b.ID }

func byAttemptLess(a, b *Container) bool {
	if a.AttemptID != b.AttemptID {
		return a.AttemptID < b.AttemptID
	}
	return a.ID < b.ID
}

func byNodeLess(a, b *Container) bool {
	if a.NodeID != b.NodeID {
		return a.NodeID < b.NodeID
	}
	return a.ID < b.ID
}

// newTree returns an empty tree. It has no free list: a tree node freed
// by one version may still be read through another.
func newTree[T any](less btree.LessFunc[T]) *btree.BTreeG[T] {
	return btree.NewWithFreeListG(btreeDegree, less, btree.NewFreeListG[T](0))
}

func newTrees() *trees {
	tree := newTree[*Container]
	return &trees{
		nodes:     newTree(func(a, b *Node) bool { return a.ID < b.ID }),
		byID:      newTree(func(a, b idItem) bool { return a.id < b.id }),
		byAttempt: tree(byAttemptLess),
		live:      tree(byIDLess),
		byNode:    tree(byNodeLess),
		allocated: tree(byIDLess),
		watches:   newTree(func(a, b *attemptWatch) bool { return a.attempt < b.attempt }),
		born:      make(chan struct{}),
	}
}

// clone returns a version that shares t's nodes and copies them as it is
// written. t must not be read concurrently: cloning marks its trees as
// shared.
func (t *trees) clone() *trees {
	return &trees{
		nodes:     t.nodes.Clone(),
		byID:      t.byID.Clone(),
		byAttempt: t.byAttempt.Clone(),
		live:      t.live.Clone(),
		byNode:    t.byNode.Clone(),
		allocated: t.allocated.Clone(),
		watches:   t.watches.Clone(),
		born:      t.born,
		meta:      t.meta,
	}
}

func (t *trees) node(id string) *Node {
	pivot := nodePivots.Get().(*Node)
	pivot.ID = id
	n, _ := t.nodes.Get(pivot)
	pivot.ID = ""
	nodePivots.Put(pivot)
	return n
}

// nodePivots are the empty nodes node looks a node up with: a heartbeat's
// lookup allocates none.
var nodePivots = sync.Pool{New: func() any { return new(Node) }}

func (t *trees) container(id string) *Container {
	it, _ := t.byID.Get(idItem{id: id})
	return it.c
}

// ofAttempt returns an attempt's containers, by id.
func (t *trees) ofAttempt(attemptID string) []*Container {
	var out []*Container
	t.eachOfAttempt(attemptID, func(c *Container) bool {
		out = append(out, c)
		return true
	})
	return out
}

// eachOfAttempt calls fn with an attempt's containers, by id, until fn
// returns false; false when fn did.
func (t *trees) eachOfAttempt(attemptID string, fn func(*Container) bool) bool {
	return ascendRun(t.byAttempt, func(p *Container) { p.AttemptID = attemptID },
		func(c *Container) bool { return c.AttemptID == attemptID }, fn)
}

// onNode appends the live containers on a node to dst, by id.
func (t *trees) onNode(nodeID string, dst []*Container) []*Container {
	ascendRun(t.byNode, func(p *Container) { p.NodeID = nodeID },
		func(c *Container) bool { return c.NodeID == nodeID },
		func(c *Container) bool {
			dst = append(dst, c)
			return true
		})
	return dst
}

// ascendRun calls fn with the containers of tree from the pivot that
// set makes on, for as long as in holds and fn returns true; false when
// fn stopped it. The pivot is an empty container from a pool: a seek
// allocates none.
func ascendRun(tree *btree.BTreeG[*Container], set func(*Container), in, fn func(*Container) bool) bool {
	pivot := pivots.Get().(*Container)
	set(pivot)
	more := true
	tree.AscendGreaterOrEqual(pivot, func(c *Container) bool {
		if !in(c) {
			return false
		}
		more = fn(c)
		return more
	})
	*pivot = Container{}
	pivots.Put(pivot)
	return more
}

var pivots = sync.Pool{New: func() any { return new(Container) }}

// everyContainer returns every container, by id.
func (t *trees) everyContainer() []*Container {
	out := make([]*Container, 0, t.byID.Len())
	t.byID.Ascend(func(it idItem) bool {
		out = append(out, it.c)
		return true
	})
	return out
}

func all[T any](t *btree.BTreeG[T]) []T {
	out := make([]T, 0, t.Len())
	t.Ascend(func(c T) bool {
		out = append(out, c)
		return true
	})
	return out
}

// watch adds to ws what fires when the attempt's containers change, or
// with news only, when one changes as its AM is told (newsForAM).
func (t *trees) watch(ws memdb.WatchSet, attemptID string, news bool) {
	if ws == nil {
		return
	}
	if w, ok := t.watches.Get(&attemptWatch{attempt: attemptID}); ok {
		if news {
			ws.Add(w.news)
		} else {
			ws.Add(w.ch)
		}
		return
	}
	ws.Add(t.born)
}

func (c *Container) isLive() bool { return !c.Completed() }

func (c *Container) onANode() bool { return !c.Completed() && c.NodeID != "" }

func (c *Container) allocated() bool {
	return c.State == yarnpb.ContainerState_CONTAINER_ALLOCATED
}

// put inserts or replaces c in every tree it belongs to, and takes it out
// of those its earlier version was in and it is not; it returns that
// earlier version, nil when there was none.
func (t *trees) put(c *Container) *Container {
	prev, _ := t.byID.ReplaceOrInsert(idItem{c.ID, c})
	old := prev.c
	if old != nil && old.AttemptID != c.AttemptID {
		t.byAttempt.Delete(old)
	}
	t.byAttempt.ReplaceOrInsert(c)
	if old != nil && old.onANode() && (!c.onANode() || old.NodeID != c.NodeID) {
		t.byNode.Delete(old)
	}
	if c.onANode() {
		t.byNode.ReplaceOrInsert(c)
	}
	index(t.live, old, c, (*Container).isLive)
	index(t.allocated, old, c, (*Container).allocated)
	return old
}

// index keeps c in a tree keyed by id while in holds for it.
func index(tree *btree.BTreeG[*Container], old, c *Container, in func(*Container) bool) {
	switch {
	case in(c):
		tree.ReplaceOrInsert(c)
	case old != nil && in(old):
		tree.Delete(old)
	}
}

// remove takes c out of every tree.
func (t *trees) remove(c *Container) {
	it, ok := t.byID.Delete(idItem{id: c.ID})
	if !ok {
		return
	}
	old := it.c
	t.byAttempt.Delete(old)
	t.live.Delete(old)
	t.byNode.Delete(old)
	t.allocated.Delete(old)
}

// commitWatches replaces the channels of the attempts whose containers
// changed (with news for their AMs, where the value is true) and returns
// the old ones, to close once the version is visible to readers.
func (t *trees) commitWatches(changed map[string]bool) []chan struct{} {
	var fire []chan struct{}
	newAttempt := false
	for id, news := range changed {
		key := &attemptWatch{attempt: id}
		has := false
		t.byAttempt.AscendGreaterOrEqual(&Container{AttemptID: id}, func(c *Container) bool {
			has = c.AttemptID == id
			return false
		})
		if !has {
			if old, ok := t.watches.Delete(key); ok {
				fire = append(fire, old.ch, old.news)
			}
			continue
		}
		w := &attemptWatch{attempt: id, ch: make(chan struct{})}
		old, _ := t.watches.ReplaceOrInsert(w)
		switch {
		case old == nil:
			w.news = make(chan struct{})
			newAttempt = true
		case news:
			w.news = make(chan struct{})
			fire = append(fire, old.ch, old.news)
		default:
			w.news = old.news
			fire = append(fire, old.ch)
		}
	}
	if newAttempt {
		fire = append(fire, t.born)
		t.born = make(chan struct{})
	}
	return fire
}
