package state

import (
	"cmp"
	"fmt"
	"iter"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/loom-project/loom/proto/yarnpb"
)

// Store is the ResourceManager's state. Objects read from it are shared
// and must be copied before they are changed.
type Store struct {
	db    *memdb.MemDB
	index atomic.Uint64 // last applied raft index
	// mu makes a commit of db and containers one step for readers.
	mu    sync.RWMutex
	trees *trees // committed, read-only
	// base is a private clone of trees that the next write transaction
	// clones again, so that no writer marks a version readers hold. Only
	// the writer, holding db's write lock, uses it.
	base *trees
	// abandon is closed when the store is replaced by a restore, so that
	// blocked readers wake up and read the new one.
	abandon chan struct{}
	// nodeLog names the nodes each committed write changed, in order,
	// for a reader that keeps a view of every node (the scheduler) to
	// refresh only those. nodeSeq counts the writes that changed nodes;
	// the log holds every change after nodeFloor, at most nodeLogMax.
	// Guarded by mu.
	nodeLog   []nodeChange
	nodeSeq   uint64
	nodeFloor uint64
}

// nodeChange is one node a write changed.
type nodeChange struct {
	seq uint64
	id  string
}

// nodeLogMax bounds the node log: a reader further behind rebuilds its
// view from the nodes themselves.
const nodeLogMax = 1 << 16

// NewStore returns an empty store.
func NewStore() (*Store, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("creating state store: %w", err)
	}
	t := newTrees()
	return &Store{db: db, trees: t, base: t.clone(), abandon: make(chan struct{})}, nil
}

// Abandon marks the store as replaced.
func (s *Store) Abandon() { close(s.abandon) }

// AbandonCh is closed when the store is replaced.
func (s *Store) AbandonCh() <-chan struct{} { return s.abandon }

// Index returns the last raft index applied to the store.
func (s *Store) Index() uint64 { return s.index.Load() }

// Snapshot returns a read transaction: a consistent view.
func (s *Store) Snapshot() *ReadTxn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &ReadTxn{txn: s.db.Txn(false), t: s.trees, Index: s.Index(), s: s, nodeSeq: s.nodeSeq}
}

// ReadTxn is a consistent read-only view of the store.
type ReadTxn struct {
	txn   *memdb.Txn
	t     *trees
	Index uint64
	// s and nodeSeq place the view in its store's node log; s is nil
	// in a write transaction's view.
	s       *Store
	nodeSeq uint64
}

// NodeCursor marks the nodes as one view holds them, for a later view's
// NodesChangedSince.
type NodeCursor struct {
	s   *Store
	seq uint64
}

// NodeCursor returns where r is in its store's node log.
func (r *ReadTxn) NodeCursor() NodeCursor { return NodeCursor{s: r.s, seq: r.nodeSeq} }

// NodesChangedSince appends to dst the ids of the nodes written between
// the view c marks and r (a node written twice is named twice), and
// reports whether it could tell: not when c is of another store (a
// restore replaced it) or older than what the log holds.
func (r *ReadTxn) NodesChangedSince(c NodeCursor, dst []string) ([]string, bool) {
	s := r.s
	if s == nil || c.s != s || c.seq > r.nodeSeq {
		return dst, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c.seq < s.nodeFloor {
		return dst, false
	}
	i, _ := slices.BinarySearchFunc(s.nodeLog, c.seq+1, func(e nodeChange, seq uint64) int { return cmp.Compare(e.seq, seq) })
	for ; i < len(s.nodeLog) && s.nodeLog[i].seq <= r.nodeSeq; i++ {
		dst = append(dst, s.nodeLog[i].id)
	}
	return dst, true
}

func addWatch(ws memdb.WatchSet, ch <-chan struct{}) {
	if ws != nil {
		ws.Add(ch)
	}
}

// Node returns a node or nil.
func (r *ReadTxn) Node(id string) *Node { return r.t.node(id) }

// Nodes returns every node, sorted by id.
func (r *ReadTxn) Nodes() []*Node { return all(r.t.nodes) }

// App returns an application or nil.
func (r *ReadTxn) App(ws memdb.WatchSet, id string) *Application {
	ch, obj, err := r.txn.FirstWatch(TableApps, "id", id)
	if err != nil {
		return nil
	}
	addWatch(ws, ch)
	if obj == nil {
		return nil
	}
	return obj.(*Application)
}

// Apps returns every application in submission order.
func (r *ReadTxn) Apps(ws memdb.WatchSet) []*Application {
	it, err := r.txn.Get(TableApps, "id")
	if err != nil {
		return nil
	}
	addWatch(ws, it.WatchCh())
	var out []*Application
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*Application))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Attempt returns an attempt or nil.
func (r *ReadTxn) Attempt(ws memdb.WatchSet, id string) *Attempt {
	ch, obj, err := r.txn.FirstWatch(TableAttempts, "id", id)
	if err != nil {
		return nil
	}
	addWatch(ws, ch)
	if obj == nil {
		return nil
	}
	return obj.(*Attempt)
}

// Attempts returns an application's attempts, oldest first.
func (r *ReadTxn) Attempts(ws memdb.WatchSet, appID string) []*Attempt {
	it, err := r.txn.Get(TableAttempts, "app", appID)
	if err != nil {
		return nil
	}
	addWatch(ws, it.WatchCh())
	var out []*Attempt
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*Attempt))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Num < out[j].Num })
	return out
}

// AllAttempts returns every attempt.
func (r *ReadTxn) AllAttempts(ws memdb.WatchSet) []*Attempt {
	it, err := r.txn.Get(TableAttempts, "id")
	if err != nil {
		return nil
	}
	addWatch(ws, it.WatchCh())
	var out []*Attempt
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*Attempt))
	}
	return out
}

// Container returns a container or nil.
func (r *ReadTxn) Container(id string) *Container { return r.t.container(id) }

// ContainersByApp returns an application's containers, attempt by
// attempt, each sorted by id.
func (r *ReadTxn) ContainersByApp(ws memdb.WatchSet, appID string) []*Container {
	var out []*Container
	for _, at := range r.Attempts(ws, appID) {
		r.t.watch(ws, at.ID, false)
		out = append(out, r.t.ofAttempt(at.ID)...)
	}
	return out
}

// EachContainerOfApp yields each container of an application, as
// ContainersByApp orders them; it copies nothing.
func (r *ReadTxn) EachContainerOfApp(appID string) iter.Seq[*Container] {
	return func(yield func(*Container) bool) {
		for _, at := range r.Attempts(nil, appID) {
			if !r.t.eachOfAttempt(at.ID, yield) {
				return
			}
		}
	}
}

// EachContainerOfAttempt yields each container of an attempt, by id; it
// copies nothing.
func (r *ReadTxn) EachContainerOfAttempt(attemptID string) iter.Seq[*Container] {
	return func(yield func(*Container) bool) { r.t.eachOfAttempt(attemptID, yield) }
}

// WatchNewsForAM adds to ws what fires when an application's AM may have
// news: a container placed for one of its attempts, or one completed or
// forgotten, or a change to its attempts. A container handed over or
// started does not fire it.
func (r *ReadTxn) WatchNewsForAM(ws memdb.WatchSet, appID string) {
	for _, at := range r.Attempts(ws, appID) {
		r.t.watch(ws, at.ID, true)
	}
}

// ContainersByAttempt returns an attempt's containers, sorted by id.
func (r *ReadTxn) ContainersByAttempt(ws memdb.WatchSet, attemptID string) []*Container {
	r.t.watch(ws, attemptID, false)
	return r.t.ofAttempt(attemptID)
}

// ContainersByNode returns the containers on a node that have not
// completed, by id.
func (r *ReadTxn) ContainersByNode(nodeID string) []*Container { return r.t.onNode(nodeID, nil) }

// AppendContainersByNode appends ContainersByNode to dst: a heartbeat
// reads its node's containers in one seek, into a buffer of its own.
func (r *ReadTxn) AppendContainersByNode(dst []*Container, nodeID string) []*Container {
	return r.t.onNode(nodeID, dst)
}

// CompletedContainers counts the containers the state holds completed.
func (r *ReadTxn) CompletedContainers() int { return r.t.byID.Len() - r.t.live.Len() }

// LiveContainers returns every container that has not completed, by id.
func (r *ReadTxn) LiveContainers() []*Container { return all(r.t.live) }

// EachNode calls fn with every node, by id, without collecting them.
func (r *ReadTxn) EachNode(fn func(*Node)) {
	r.t.nodes.Ascend(func(n *Node) bool {
		fn(n)
		return true
	})
}

// AllocatedContainers returns the containers placed and not yet handed
// to their AM (ALLOCATED), by id: few at any time, whatever runs.
func (r *ReadTxn) AllocatedContainers() []*Container { return all(r.t.allocated) }

// LiveAttempts returns every attempt that has not ended, by id.
func (r *ReadTxn) LiveAttempts(ws memdb.WatchSet) []*Attempt {
	return getAll[*Attempt](r, ws, TableAttempts, "live", true)
}

// AppendLiveAttempts appends LiveAttempts to dst.
func (r *ReadTxn) AppendLiveAttempts(dst []*Attempt) []*Attempt {
	return appendAll(dst, r, nil, TableAttempts, "live", true)
}

// AppendLiveApps appends LiveApps to dst, which it sorts: a caller that
// reads them often keeps one buffer.
func (r *ReadTxn) AppendLiveApps(dst []*Application) []*Application {
	n := len(dst)
	dst = appendAll(dst, r, nil, TableApps, "live", true)
	bySeq(dst[n:])
	return dst
}

// LiveApps returns every application that has not ended, in submission
// order.
func (r *ReadTxn) LiveApps(ws memdb.WatchSet) []*Application {
	return bySeq(getAll[*Application](r, ws, TableApps, "live", true))
}

// EndedApps returns every application that has ended, in submission
// order.
func (r *ReadTxn) EndedApps(ws memdb.WatchSet) []*Application {
	return bySeq(getAll[*Application](r, ws, TableApps, "live", false))
}

func bySeq(apps []*Application) []*Application {
	sort.Slice(apps, func(i, j int) bool { return apps[i].Seq < apps[j].Seq })
	return apps
}

// getAll reads every object of table whose index matches args.
func getAll[T any](r *ReadTxn, ws memdb.WatchSet, table, index string, args ...any) []T {
	return appendAll[T](nil, r, ws, table, index, args...)
}

// appendAll is getAll appending to out.
func appendAll[T any](out []T, r *ReadTxn, ws memdb.WatchSet, table, index string, args ...any) []T {
	it, err := r.txn.Get(table, index, args...)
	if err != nil {
		return out
	}
	addWatch(ws, it.WatchCh())
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(T))
	}
	return out
}

// Counts are the rows of each table, for the GC's figures and tests.
type Counts struct {
	Nodes, Apps, Attempts, Containers int
}

// Counts counts the rows of each table.
func (r *ReadTxn) Counts() Counts {
	n := func(table string) int {
		it, err := r.txn.Get(table, "id")
		if err != nil {
			return 0
		}
		c := 0
		for obj := it.Next(); obj != nil; obj = it.Next() {
			c++
		}
		return c
	}
	return Counts{Nodes: r.t.nodes.Len(), Apps: n(TableApps), Attempts: n(TableAttempts), Containers: r.t.byID.Len()}
}

// Meta returns the cluster record.
func (r *ReadTxn) Meta() Meta {
	if r.t.meta == nil {
		return Meta{}
	}
	return *r.t.meta
}

// ---------------------------------------------------------------- writes

// WriteTxn is a write transaction; commands compose its helpers.
type WriteTxn struct {
	txn   *memdb.Txn
	index uint64
	read  *ReadTxn
	s     *Store
	// t is the trees this transaction writes, cloned on its first write
	// to them; changed names the attempts whose containers it wrote,
	// true for those whose AMs have news (newsForAM).
	t       *trees
	changed map[string]bool
	// nodes are the ids of the nodes it wrote, for the node log.
	nodes []string
}

// Write runs fn in a write transaction at raft index index and commits it
// when fn returns nil.
func (s *Store) Write(index uint64, fn func(tx *WriteTxn) error) error {
	txn := s.db.Txn(true) // holds the write lock until Commit or Abort
	defer txn.Abort()
	tx := &WriteTxn{txn: txn, index: index, s: s, read: &ReadTxn{txn: txn, t: s.trees, Index: index}}
	if err := fn(tx); err != nil {
		return err
	}
	var fire []chan struct{}
	if tx.t != nil {
		fire = tx.t.commitWatches(tx.changed)
		s.base = tx.t.clone() // before readers can see tx.t
	}
	s.mu.Lock()
	txn.Commit()
	if tx.t != nil {
		s.trees = tx.t
	}
	if len(tx.nodes) > 0 {
		s.logNodes(tx.nodes)
	}
	if index > s.index.Load() {
		s.index.Store(index)
	}
	s.mu.Unlock()
	for _, ch := range fire {
		close(ch)
	}
	return nil
}

// logNodes appends a write's nodes to the node log, dropping its older
// half when it is full. The caller holds mu.
func (s *Store) logNodes(ids []string) {
	s.nodeSeq++
	for _, id := range ids {
		s.nodeLog = append(s.nodeLog, nodeChange{seq: s.nodeSeq, id: id})
	}
	if len(s.nodeLog) > nodeLogMax {
		drop := len(s.nodeLog) - nodeLogMax/2
		s.nodeFloor = s.nodeLog[drop-1].seq
		// A write's changes go together: a reader at nodeFloor reads
		// from the first change after it.
		for drop < len(s.nodeLog) && s.nodeLog[drop].seq == s.nodeFloor {
			drop++
		}
		s.nodeLog = append(s.nodeLog[:0], s.nodeLog[drop:]...)
	}
}

// writable returns the transaction's own trees, cloning the committed
// ones on the first write.
func (tx *WriteTxn) writable() *trees {
	if tx.t == nil {
		tx.t = tx.s.base.clone()
		tx.read.t = tx.t
		tx.changed = map[string]bool{}
	}
	return tx.t
}

// changedContainers records a write to an attempt's containers, with
// news for its AM or not.
func (tx *WriteTxn) changedContainers(attemptID string, news bool) {
	tx.changed[attemptID] = tx.changed[attemptID] || news
}

// Read returns the transaction's view, including its own writes.
func (tx *WriteTxn) Read() *ReadTxn { return tx.read }

// Index is the raft index of the transaction.
func (tx *WriteTxn) Index() uint64 { return tx.index }

func (tx *WriteTxn) insert(table string, obj any) error {
	if err := tx.txn.Insert(table, obj); err != nil {
		return fmt.Errorf("writing %s: %w", table, err)
	}
	return nil
}

// PutNode inserts or replaces a node.
func (tx *WriteTxn) PutNode(n *Node) error {
	if n.ID == "" {
		return fmt.Errorf("writing nodes: a node without an id")
	}
	n.ModifyIndex = tx.index
	tx.writable().nodes.ReplaceOrInsert(n)
	tx.nodes = append(tx.nodes, n.ID)
	return nil
}

// PutApp inserts or replaces an application.
func (tx *WriteTxn) PutApp(a *Application) error {
	a.ModifyIndex = tx.index
	return tx.insert(TableApps, a)
}

// PutAttempt inserts or replaces an attempt.
func (tx *WriteTxn) PutAttempt(a *Attempt) error {
	a.ModifyIndex = tx.index
	return tx.insert(TableAttempts, a)
}

// PutContainer inserts or replaces a container.
func (tx *WriteTxn) PutContainer(c *Container) error {
	if c.ID == "" {
		return fmt.Errorf("writing containers: a container without an id")
	}
	c.ModifyIndex = tx.index
	old := tx.writable().put(c)
	tx.changedContainers(c.AttemptID, newsForAM(old, c))
	return nil
}

// DeleteContainer removes a container record.
func (tx *WriteTxn) DeleteContainer(c *Container) error {
	old := tx.read.t.container(c.ID)
	if old == nil {
		return fmt.Errorf("deleting container %s: not found", c.ID)
	}
	tx.writable().remove(old)
	tx.changedContainers(old.AttemptID, true)
	return nil
}

// DeleteCompletedContainer forgets a container that has completed and
// is not an AM's; it reports false, and changes nothing, for any other.
func (tx *WriteTxn) DeleteCompletedContainer(id string) (bool, error) {
	c := tx.Read().Container(id)
	if c == nil || !c.Completed() || c.IsAM {
		return false, nil
	}
	return true, tx.DeleteContainer(c)
}

// DeleteApp forgets an application that has ended, with its attempts
// and containers; it reports false, and changes nothing, when the
// application is not there, has not ended or still has a live container.
func (tx *WriteTxn) DeleteApp(id string) (bool, error) {
	r := tx.Read()
	app := r.App(nil, id)
	if app == nil || !app.Terminal() {
		return false, nil
	}
	cs := r.ContainersByApp(nil, id)
	for _, c := range cs {
		if !c.Completed() {
			return false, nil
		}
	}
	for _, c := range cs {
		if err := tx.DeleteContainer(c); err != nil {
			return false, err
		}
	}
	for _, at := range r.Attempts(nil, id) {
		if err := tx.txn.Delete(TableAttempts, at); err != nil {
			return false, fmt.Errorf("deleting attempt %s: %w", at.ID, err)
		}
	}
	if err := tx.txn.Delete(TableApps, app); err != nil {
		return false, fmt.Errorf("deleting application %s: %w", id, err)
	}
	return true, nil
}

// DeleteAppContainers forgets the containers of an application that has
// ended, keeping the application and its attempts; it reports how many it
// forgot (none while one still runs).
func (tx *WriteTxn) DeleteAppContainers(id string) (int, error) {
	r := tx.Read()
	app := r.App(nil, id)
	if app == nil || !app.Terminal() {
		return 0, nil
	}
	cs := r.ContainersByApp(nil, id)
	for _, c := range cs {
		if !c.Completed() {
			return 0, nil
		}
	}
	for _, c := range cs {
		if err := tx.DeleteContainer(c); err != nil {
			return 0, err
		}
	}
	return len(cs), nil
}

// DeleteNode forgets a node that has left the cluster and runs nothing;
// it reports false, and changes nothing, otherwise.
func (tx *WriteTxn) DeleteNode(id string) (bool, error) {
	r := tx.Read()
	n := r.Node(id)
	if n == nil || n.Live() {
		return false, nil
	}
	for _, c := range r.ContainersByNode(id) {
		if !c.Completed() {
			return false, nil
		}
	}
	tx.writable().nodes.Delete(n)
	tx.nodes = append(tx.nodes, n.ID)
	return true, nil
}

// PutMeta replaces the cluster record.
func (tx *WriteTxn) PutMeta(m Meta) error {
	tx.writable().meta = &m
	return nil
}

// ---------------------------------------------------------- snapshots

// Dump is the whole state, for raft snapshots.
type Dump struct {
	Index      uint64         `json:"index"`
	Meta       Meta           `json:"meta"`
	Nodes      []*Node        `json:"nodes"`
	Apps       []*Application `json:"apps"`
	Attempts   []*Attempt     `json:"attempts"`
	Containers []*Container   `json:"containers"`
}

// Dump copies out the whole state.
func (r *ReadTxn) Dump() *Dump {
	d := &Dump{Index: r.Index, Meta: r.Meta(), Nodes: r.Nodes(), Apps: r.Apps(nil), Attempts: r.AllAttempts(nil)}
	d.Containers = r.t.everyContainer()
	return d
}

// Restore builds a new store from a dump.
func Restore(d *Dump) (*Store, error) {
	s, err := NewStore()
	if err != nil {
		return nil, err
	}
	err = s.Write(d.Index, func(tx *WriteTxn) error {
		if err := tx.PutMeta(d.Meta); err != nil {
			return err
		}
		for _, n := range d.Nodes {
			if n == nil || n.ID == "" {
				return fmt.Errorf("a node without an id")
			}
			tx.writable().nodes.ReplaceOrInsert(n)
		}
		// What each application holds is derived from its live
		// containers: counted again, so a snapshot of an RM that did
		// not keep it restores right.
		held := map[string]*Application{}
		for _, a := range d.Apps {
			a.Used, a.AMUsed, a.LabeledUsed, a.UsedByLabel, a.NumContainers = Resource{}, Resource{}, Resource{}, nil, 0
			held[a.ID] = a
		}
		for _, c := range d.Containers {
			if a := held[c.AppID]; a != nil && !c.Completed() {
				a.charge(c, 1)
			}
		}
		for _, a := range d.Apps {
			if err := tx.insert(TableApps, a); err != nil {
				return err
			}
		}
		for _, a := range d.Attempts {
			if err := tx.insert(TableAttempts, a); err != nil {
				return err
			}
		}
		for _, c := range d.Containers {
			if c == nil || c.ID == "" {
				return fmt.Errorf("a container without an id")
			}
			tx.writable().put(c)
			tx.changedContainers(c.AttemptID, true)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("restoring state: %w", err)
	}
	return s, nil
}

// NodeStateName is the user-facing name of a node state (RUNNING, LOST).
func NodeStateName(s yarnpb.NodeState) string { return trimEnum(s.String(), "NODE_") }

// AppStateName is the user-facing name of an application state.
func AppStateName(s yarnpb.AppState) string { return trimEnum(s.String(), "APP_") }

// AttemptStateName is the user-facing name of an attempt state.
func AttemptStateName(s yarnpb.AttemptState) string { return trimEnum(s.String(), "ATTEMPT_") }

// ContainerStateName is the user-facing name of a container state.
func ContainerStateName(s yarnpb.ContainerState) string { return trimEnum(s.String(), "CONTAINER_") }

func trimEnum(s, prefix string) string {
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}
