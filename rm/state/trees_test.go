package state

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/loom-project/loom/proto/yarnpb"
)

// putContainers writes containers straight into the table, as the
// lifecycle helpers do, at the fixture's next index.
func (f *fixture) putContainers(cs ...*Container) {
	f.t.Helper()
	f.write(func(tx *WriteTxn) error {
		for _, c := range cs {
			cc := *c
			if err := tx.PutContainer(&cc); err != nil {
				return err
			}
		}
		return nil
	})
}

func testContainer(attempt, seq int, node string) *Container {
	app := yarnpb.AppID(1, uint64(attempt))
	return &Container{
		ID:        yarnpb.ContainerID(1, app, 1, int64(seq)),
		AppID:     app,
		AttemptID: yarnpb.AttemptID(app, 1),
		NodeID:    node,
		State:     yarnpb.ContainerState_CONTAINER_ALLOCATED,
		Resource:  Resource{MemoryMB: 128, VCores: 1},
	}
}

func TestASnapshotKeepsTheContainersItWasTakenWith(t *testing.T) {
	f := newFixture(t)
	a := testContainer(1, 1, "n1:1")
	f.putContainers(a)
	before := f.read()

	done := *a
	done.State = yarnpb.ContainerState_CONTAINER_COMPLETED
	f.putContainers(&done, testContainer(1, 2, "n1:1"))

	if c := before.Container(a.ID); c == nil || c.Completed() {
		t.Fatalf("the earlier snapshot reads %+v; want the container as it was, allocated", c)
	}
	if n := len(before.ContainersByAttempt(nil, a.AttemptID)); n != 1 {
		t.Errorf("the earlier snapshot holds %d containers of the attempt; want 1", n)
	}
	if n := len(before.LiveContainers()); n != 1 {
		t.Errorf("the earlier snapshot holds %d live containers; want 1", n)
	}
	now := f.read()
	if c := now.Container(a.ID); c == nil || !c.Completed() {
		t.Fatalf("a new snapshot reads %+v; want the container completed", c)
	}
	if n := len(now.ContainersByAttempt(nil, a.AttemptID)); n != 2 {
		t.Errorf("a new snapshot holds %d containers of the attempt; want 2", n)
	}
}

func TestAFailedWriteLeavesTheContainersAsTheyWere(t *testing.T) {
	f := newFixture(t)
	a := testContainer(1, 1, "n1:1")
	f.putContainers(a)
	failed := errors.New("refused")
	err := f.s.Write(f.index+1, func(tx *WriteTxn) error {
		if err := tx.PutContainer(testContainer(1, 2, "n1:1")); err != nil {
			return err
		}
		if err := tx.DeleteContainer(a); err != nil {
			return err
		}
		if tx.Read().Container(a.ID) != nil {
			t.Error("the transaction still reads the container it deleted")
		}
		if err := tx.PutNode(&Node{ID: "n9:1"}); err != nil {
			return err
		}
		if tx.Read().Node("n9:1") == nil {
			t.Error("the transaction does not read the node it wrote")
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("Write returned %v; want the function's error", err)
	}
	r := f.read()
	if r.Container(a.ID) == nil || r.Container(testContainer(1, 2, "").ID) != nil || r.Counts().Containers != 1 {
		t.Fatalf("after a failed write the store holds %v; want only %s", ids(r.Dump().Containers), a.ID)
	}
	if r.Node("n9:1") != nil || r.Counts().Nodes != 0 {
		t.Fatalf("after a failed write the store holds %d nodes; want none", r.Counts().Nodes)
	}
	// The next write starts from the committed containers, not the
	// failed one's.
	f.putContainers(testContainer(1, 3, "n1:1"))
	if got := ids(f.read().Dump().Containers); len(got) != 2 {
		t.Fatalf("after the next write the store holds %v; want 2 containers", got)
	}
}

func ids(cs []*Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

func fired(ws memdb.WatchSet) bool {
	for ch := range ws {
		select {
		case <-ch:
			return true
		default:
		}
	}
	return false
}

func TestWatchingAnAttemptsContainers(t *testing.T) {
	f := newFixture(t)
	one, two := testContainer(1, 1, "n1:1"), testContainer(2, 1, "n1:1")
	f.putContainers(one)

	watch := func(attempt string) memdb.WatchSet {
		ws := memdb.NewWatchSet()
		f.read().ContainersByAttempt(ws, attempt)
		return ws
	}
	wsOne, wsTwo := watch(one.AttemptID), watch(two.AttemptID)
	f.putContainers(two) // the second attempt's first container
	if fired(wsOne) {
		t.Error("a watch on one attempt fired when another attempt's containers changed")
	}
	if !fired(wsTwo) {
		t.Error("a watch on an attempt without containers did not fire when it got its first")
	}

	wsOne, wsTwo = watch(one.AttemptID), watch(two.AttemptID)
	running := *one
	running.State = yarnpb.ContainerState_CONTAINER_RUNNING
	f.putContainers(&running)
	if !fired(wsOne) {
		t.Error("a watch on an attempt did not fire when its container changed")
	}
	if fired(wsTwo) {
		t.Error("a watch on the second attempt fired when only the first's container changed")
	}

	// A reader that registers its watch after a change has committed,
	// on a snapshot taken before it, is woken at once.
	stale := f.read()
	f.putContainers(one)
	ws := memdb.NewWatchSet()
	stale.ContainersByAttempt(ws, one.AttemptID)
	if !fired(ws) {
		t.Error("a watch from a snapshot older than the last change did not fire")
	}
}

func TestAnAttemptsWatchGoesWithItsLastContainer(t *testing.T) {
	f := newFixture(t)
	for i := 1; i <= 100; i++ {
		c := testContainer(i, 1, "n1:1")
		f.putContainers(c)
		f.write(func(tx *WriteTxn) error { return tx.DeleteContainer(c) })
	}
	r := f.read()
	if n := r.t.watches.Len(); n != 0 {
		t.Fatalf("100 attempts whose containers were all forgotten leave %d watch channels; want 0", n)
	}
	if n := r.Counts().Containers; n != 0 {
		t.Fatalf("%d containers left; want 0", n)
	}
}

func TestContainerIndexesFollowEachChange(t *testing.T) {
	f := newFixture(t)
	c := testContainer(1, 1, "n1:1")
	f.putContainers(c)
	moved := *c
	moved.NodeID = "n2:1"
	f.putContainers(&moved)
	r := f.read()
	if got := r.ContainersByNode("n1:1"); len(got) != 0 {
		t.Errorf("the container's old node still lists it: %v", ids(got))
	}
	if got := r.ContainersByNode("n2:1"); len(got) != 1 {
		t.Errorf("the container's new node lists %v; want it", ids(got))
	}
	if err := f.s.Write(f.index+1, func(tx *WriteTxn) error { return tx.DeleteContainer(testContainer(9, 9, "")) }); err == nil {
		t.Error("deleting a container that is not there succeeded")
	}
	if err := f.s.Write(f.index+1, func(tx *WriteTxn) error { return tx.PutContainer(&Container{AttemptID: "x"}) }); err == nil {
		t.Error("writing a container without an id succeeded")
	}
}

// TestReadersAndAWriterShareTheContainers reads every index while a
// writer places, changes and forgets containers; run with -race.
func TestReadersAndAWriterShareTheContainers(t *testing.T) {
	f := newFixture(t)
	const attempts, perAttempt, rounds = 8, 40, 30
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := f.s.Snapshot()
				live := r.LiveContainers()
				for i := 1; i <= attempts; i++ {
					cs := r.ContainersByAttempt(nil, testContainer(i, 1, "").AttemptID)
					if len(cs) != 0 && len(cs) != perAttempt {
						t.Errorf("a snapshot holds %d of an attempt's containers; want 0 or %d, never part of a write", len(cs), perAttempt)
						return
					}
				}
				for _, c := range live {
					if r.Container(c.ID) != c {
						t.Errorf("container %s is live in a snapshot but not found by id in it", c.ID)
						return
					}
				}
				_ = r.ContainersByNode("n1:1")
				_ = r.AllocatedContainers()
			}
		}()
	}
	for round := range rounds {
		var cs []*Container
		for i := 1; i <= attempts; i++ {
			for seq := 1; seq <= perAttempt; seq++ {
				c := testContainer(i, seq, fmt.Sprintf("n%d:1", seq%3))
				if round%2 == 1 {
					c.State = yarnpb.ContainerState_CONTAINER_COMPLETED
				}
				cs = append(cs, c)
			}
		}
		f.putContainers(cs...)
		if round%5 == 4 {
			f.write(func(tx *WriteTxn) error {
				for _, c := range cs {
					if err := tx.DeleteContainer(c); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	close(stop)
	wg.Wait()
}

func TestAnAMsWatchFiresOnlyWithNews(t *testing.T) {
	f := newFixture(t)
	f.write(func(tx *WriteTxn) error {
		app := &Application{ID: yarnpb.AppID(1, 1), Queue: "root.default", AMResource: Resource{MemoryMB: 128, VCores: 1}, MaxAttempts: 1}
		return tx.SubmitApp(app, 1)
	})
	c := testContainer(1, 2, "n1:1")
	watch := func() (all, news memdb.WatchSet) {
		all, news = memdb.NewWatchSet(), memdb.NewWatchSet()
		r := f.read()
		r.ContainersByApp(all, c.AppID)
		r.WatchNewsForAM(news, c.AppID)
		return all, news
	}
	step := func(what string, st yarnpb.ContainerState, wantNews bool) {
		t.Helper()
		all, news := watch()
		next := *c
		next.State = st
		f.putContainers(&next)
		if !fired(all) {
			t.Errorf("%s: the attempt's watch did not fire", what)
		}
		if fired(news) != wantNews {
			t.Errorf("%s: the AM's watch fired %v, want %v", what, !wantNews, wantNews)
		}
	}
	step("placed", yarnpb.ContainerState_CONTAINER_ALLOCATED, true)
	step("handed over", yarnpb.ContainerState_CONTAINER_ACQUIRED, false)
	step("started", yarnpb.ContainerState_CONTAINER_RUNNING, false)
	step("completed", yarnpb.ContainerState_CONTAINER_COMPLETED, true)

	// A watch taken after news, on a snapshot from before it, fires.
	stale := f.read()
	second := testContainer(1, 3, "n1:1")
	f.putContainers(second)
	ws := memdb.NewWatchSet()
	stale.WatchNewsForAM(ws, c.AppID)
	if !fired(ws) {
		t.Error("a watch from a snapshot older than the news did not fire")
	}
	// The last container forgotten: the watch goes, and fires.
	_, news := watch()
	f.write(func(tx *WriteTxn) error {
		for _, id := range []string{c.ID, second.ID} {
			if err := tx.DeleteContainer(&Container{ID: id}); err != nil {
				return err
			}
		}
		return nil
	})
	if !fired(news) {
		t.Error("the AM's watch did not fire when its containers were forgotten")
	}
}

// A view tells which nodes were written since an earlier view of the same
// store, and says when it cannot: another store, or changes older than
// the log keeps.
func TestNodesChangedSince(t *testing.T) {
	s, err := NewStore()
	if err != nil {
		t.Fatal(err)
	}
	index := uint64(0)
	put := func(ids ...string) {
		t.Helper()
		index++
		if err := s.Write(index, func(tx *WriteTxn) error {
			for _, id := range ids {
				if err := tx.PutNode(&Node{ID: id, State: yarnpb.NodeState_NODE_RUNNING}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	put("a:1", "b:1", "c:1")
	first := s.Snapshot().NodeCursor()
	if got, ok := s.Snapshot().NodesChangedSince(first, nil); !ok || len(got) != 0 {
		t.Fatalf("nothing written since: %v, %v", got, ok)
	}
	put("b:1")
	mid := s.Snapshot()
	put("c:1", "a:1")
	// A write that fails changes nothing and logs nothing.
	_ = s.Write(index+1, func(tx *WriteTxn) error {
		_ = tx.PutNode(&Node{ID: "z:1"})
		return errors.New("refused")
	})
	got, ok := s.Snapshot().NodesChangedSince(first, nil)
	if !ok || !slices.Equal(got, []string{"b:1", "c:1", "a:1"}) {
		t.Fatalf("since the first view: %v, %v", got, ok)
	}
	// The middle view sees only what was written before it.
	if got, ok := mid.NodesChangedSince(first, nil); !ok || !slices.Equal(got, []string{"b:1"}) {
		t.Fatalf("the middle view, since the first: %v, %v", got, ok)
	}
	other, _ := NewStore()
	if _, ok := other.Snapshot().NodesChangedSince(first, nil); ok {
		t.Fatal("another store's view told changes since this store's cursor")
	}
	// Past the log's bound an old cursor can no longer be answered, a
	// recent one still can.
	for range nodeLogMax/256 + 1 {
		ids := make([]string, 256)
		for i := range ids {
			ids[i] = fmt.Sprintf("n%d:1", i)
		}
		put(ids...)
	}
	recent := s.Snapshot().NodeCursor()
	put("a:1")
	if _, ok := s.Snapshot().NodesChangedSince(first, nil); ok {
		t.Fatal("a cursor older than the log was answered")
	}
	if got, ok := s.Snapshot().NodesChangedSince(recent, nil); !ok || !slices.Equal(got, []string{"a:1"}) {
		t.Fatalf("since a recent view: %v, %v", got, ok)
	}
	s.mu.RLock()
	n := len(s.nodeLog)
	s.mu.RUnlock()
	if n > nodeLogMax {
		t.Fatalf("the node log holds %d changes, more than %d", n, nodeLogMax)
	}
}

// The cluster record reads back as written, inside the writing
// transaction and after it, and a write that fails leaves it as it was.
func TestMetaReadsAsWritten(t *testing.T) {
	s, err := NewStore()
	if err != nil {
		t.Fatal(err)
	}
	if m := s.Snapshot().Meta(); m.Epoch != 0 {
		t.Fatalf("a new store's record: %+v", m)
	}
	if err := s.Write(1, func(tx *WriteTxn) error {
		if err := tx.PutMeta(Meta{Epoch: 3, Cluster: 7}); err != nil {
			return err
		}
		if m := tx.Read().Meta(); m.Epoch != 3 {
			return fmt.Errorf("inside the write: %+v", m)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_ = s.Write(2, func(tx *WriteTxn) error {
		_ = tx.PutMeta(Meta{Epoch: 4})
		return errors.New("refused")
	})
	if m := s.Snapshot().Meta(); m.Epoch != 3 || m.Cluster != 7 {
		t.Fatalf("after a refused write: %+v", m)
	}
	r, err := Restore(s.Snapshot().Dump())
	if err != nil {
		t.Fatal(err)
	}
	if m := r.Snapshot().Meta(); m.Epoch != 3 || m.Cluster != 7 {
		t.Fatalf("restored: %+v", m)
	}
}
