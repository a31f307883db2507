package state

import (
	"slices"
	"strings"
	"testing"

	"github.com/loom-project/loom/proto/yarnpb"
)

// fixture drives a store through write transactions at increasing
// indexes, as the FSM does.
type fixture struct {
	t     *testing.T
	s     *Store
	index uint64
}

func newFixture(t *testing.T) *fixture {
	s, err := NewStore()
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, s: s}
}

func (f *fixture) write(fn func(tx *WriteTxn) error) {
	f.t.Helper()
	f.index++
	if err := f.s.Write(f.index, fn); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) read() *ReadTxn { return f.s.Snapshot() }

const appID = "application_1_0001"

func (f *fixture) node(id string, mem int64) {
	f.write(func(tx *WriteTxn) error {
		return tx.RegisterNode(&Node{ID: id, State: yarnpb.NodeState_NODE_RUNNING, Total: Resource{mem, 8}}, nil, 1)
	})
}

func (f *fixture) submit(maxAttempts int32) {
	f.write(func(tx *WriteTxn) error {
		return tx.SubmitApp(&Application{ID: appID, Queue: "root.default", AMResource: Resource{128, 1}, MaxAttempts: maxAttempts}, 1)
	})
}

// place places one container for the app's current attempt.
func (f *fixture) place(node string, am bool, seq int64) *Container {
	f.t.Helper()
	return f.placeIn(node, "", am, seq, 1)
}

// placeIn places one container in the partition of label, and fails
// the test unless want of them (0 or 1) are placed.
func (f *fixture) placeIn(node, label string, am bool, seq int64, want int) *Container {
	f.t.Helper()
	app := f.read().App(nil, appID)
	at := f.read().Attempt(nil, app.CurrentAttempt)
	c := &Container{ID: yarnpb.ContainerID(1, appID, at.Num, seq), AttemptID: at.ID, NodeID: node, Resource: Resource{128, 1}, IsAM: am, Label: label}
	f.write(func(tx *WriteTxn) error {
		n, err := tx.PlaceContainers([]*Container{c})
		if n != want {
			f.t.Fatalf("placing %s on %s: placed %d, want %d", c.ID, node, n, want)
		}
		return err
	})
	return f.read().Container(c.ID)
}

func (f *fixture) status(node, id string, st yarnpb.ContainerState, exit int32) {
	f.write(func(tx *WriteTxn) error {
		return tx.ContainerStatuses(node, []*yarnpb.ContainerStatus{{ContainerId: id, State: st, ExitStatus: exit}}, 2)
	})
}

func TestApplicationSucceeds(t *testing.T) {
	f := newFixture(t)
	f.node("n1:1", 1024)
	f.submit(2)
	am := f.place("n1:1", true, 1)
	if at := f.read().Attempt(nil, am.AttemptID); at.State != yarnpb.AttemptState_ATTEMPT_ALLOCATED || at.AMContainerID != am.ID {
		t.Fatalf("attempt after AM placement: %+v", at)
	}
	f.status("n1:1", am.ID, yarnpb.ContainerState_CONTAINER_RUNNING, 0)
	f.write(func(tx *WriteTxn) error { return tx.RegisterAttempt(am.AttemptID, "h", 1, "http://x", 3) })
	if app := f.read().App(nil, appID); app.State != yarnpb.AppState_APP_RUNNING || app.TrackingURL != "http://x" {
		t.Fatalf("app after registration: %+v", app)
	}
	task := f.place("n1:1", false, 2)
	if n := f.read().Node("n1:1"); n.Used != (Resource{256, 2}) || n.NumContainers != 2 {
		t.Fatalf("node use with two containers: %+v", n)
	}
	f.status("n1:1", task.ID, yarnpb.ContainerState_CONTAINER_COMPLETED, 0)
	if c := f.read().Container(task.ID); !c.Completed() || c.CompletedIndex != f.index {
		t.Fatalf("completed container: %+v", c)
	}
	f.write(func(tx *WriteTxn) error {
		return tx.UnregisterAttempt(am.AttemptID, yarnpb.FinalStatus_SUCCEEDED, "done", "", 4)
	})
	app := f.read().App(nil, appID)
	if app.State != yarnpb.AppState_APP_FINISHED || app.FinalStatus != yarnpb.FinalStatus_SUCCEEDED || app.Progress != 1 {
		t.Fatalf("app after unregistering: %+v", app)
	}
	// The AM exits by itself after unregistering: its attempt finishes.
	f.status("n1:1", am.ID, yarnpb.ContainerState_CONTAINER_COMPLETED, 0)
	if at := f.read().Attempt(nil, am.AttemptID); at.State != yarnpb.AttemptState_ATTEMPT_FINISHED {
		t.Fatalf("attempt after the AM exited: %+v", at)
	}
	if n := f.read().Node("n1:1"); n.Used != (Resource{}) || n.NumContainers != 0 {
		t.Fatalf("node use after everything ended: %+v", n)
	}
}

func TestAMFailureRetriesThenFails(t *testing.T) {
	f := newFixture(t)
	f.node("n1:1", 1024)
	f.submit(2)
	am1 := f.place("n1:1", true, 1)
	task := f.place("n1:1", false, 2)
	f.status("n1:1", am1.ID, yarnpb.ContainerState_CONTAINER_COMPLETED, 1)

	app := f.read().App(nil, appID)
	if app.State != yarnpb.AppState_APP_ACCEPTED || app.NumAttempts != 2 || app.CurrentAttempt != yarnpb.AttemptID(appID, 2) {
		t.Fatalf("app after the first AM failed: %+v", app)
	}
	if at := f.read().Attempt(nil, am1.AttemptID); at.State != yarnpb.AttemptState_ATTEMPT_FAILED || !strings.Contains(at.Diagnostics, "exit code 1") {
		t.Fatalf("first attempt: %+v", at)
	}
	if c := f.read().Container(task.ID); !c.Completed() || c.ExitStatus != ExitKilledByRM {
		t.Fatalf("task of the failed attempt: %+v", c)
	}
	am2 := f.place("n1:1", true, 1)
	f.status("n1:1", am2.ID, yarnpb.ContainerState_CONTAINER_COMPLETED, 137)
	app = f.read().App(nil, appID)
	if app.State != yarnpb.AppState_APP_FAILED || app.FinalStatus != yarnpb.FinalStatus_FAILED || !strings.Contains(app.Diagnostics, "failed 2 times") {
		t.Fatalf("app after the second AM failed: %+v", app)
	}
}

func TestKillEndsEverything(t *testing.T) {
	f := newFixture(t)
	f.node("n1:1", 1024)
	f.submit(2)
	am := f.place("n1:1", true, 1)
	task := f.place("n1:1", false, 2)
	f.write(func(tx *WriteTxn) error {
		killed, err := tx.KillApp(appID, "by test", 5)
		if !killed {
			t.Error("KillApp reported the app had already ended")
		}
		return err
	})
	r := f.read()
	if app := r.App(nil, appID); app.State != yarnpb.AppState_APP_KILLED || app.FinalStatus != yarnpb.FinalStatus_KILLED {
		t.Fatalf("app: %+v", app)
	}
	if at := r.Attempt(nil, am.AttemptID); at.State != yarnpb.AttemptState_ATTEMPT_KILLED {
		t.Fatalf("attempt: %+v, want KILLED (not FAILED: a kill is no AM failure)", at)
	}
	for _, id := range []string{am.ID, task.ID} {
		if c := r.Container(id); !c.Completed() || c.ExitStatus != ExitKilledByRM {
			t.Fatalf("container %s: %+v", id, c)
		}
	}
	if n := r.Node("n1:1"); n.NumContainers != 0 {
		t.Fatalf("node: %+v", n)
	}
	f.write(func(tx *WriteTxn) error {
		if killed, _ := tx.KillApp(appID, "again", 6); killed {
			t.Error("killing a killed app reported a kill")
		}
		return nil
	})
}

func TestLostNodeTakesItsContainers(t *testing.T) {
	f := newFixture(t)
	f.node("n1:1", 1024)
	f.node("n2:1", 1024)
	f.submit(2)
	am := f.place("n1:1", true, 1)
	task := f.place("n2:1", false, 2)
	f.write(func(tx *WriteTxn) error { return tx.SetNodeState("n2:1", yarnpb.NodeState_NODE_LOST, "gone", 0, 9) })
	c := f.read().Container(task.ID)
	if !c.Completed() || c.ExitStatus != ExitAborted || !strings.Contains(c.Diagnostics, "*lost* node") {
		t.Fatalf("container on the lost node: %+v", c)
	}
	if f.read().Attempt(nil, am.AttemptID).Terminal() {
		t.Fatal("the attempt ended with a task container's node")
	}
	// Losing the AM's node fails the attempt and starts another.
	f.write(func(tx *WriteTxn) error { return tx.SetNodeState("n1:1", yarnpb.NodeState_NODE_LOST, "gone", 0, 10) })
	if app := f.read().App(nil, appID); app.NumAttempts != 2 || app.State != yarnpb.AppState_APP_ACCEPTED {
		t.Fatalf("app after its AM's node was lost: %+v", app)
	}
}

func TestPlacementRefusesWhatNoLongerFits(t *testing.T) {
	f := newFixture(t)
	f.node("n1:1", 200)
	f.submit(2)
	app := f.read().App(nil, appID)
	mk := func(seq int64) *Container {
		return &Container{ID: yarnpb.ContainerID(1, appID, 1, seq), AttemptID: app.CurrentAttempt, NodeID: "n1:1", Resource: Resource{128, 1}}
	}
	f.write(func(tx *WriteTxn) error {
		n, err := tx.PlaceContainers([]*Container{mk(1), mk(2), {ID: "x", AttemptID: app.CurrentAttempt, NodeID: "nope:1", Resource: Resource{1, 1}}})
		if n != 1 {
			t.Errorf("placed %d containers on a node with room for 1 (and one on an unknown node)", n)
		}
		return err
	})
}

func TestSnapshotRoundTrip(t *testing.T) {
	f := newFixture(t)
	f.node("n1:1", 1024)
	f.submit(2)
	am := f.place("n1:1", true, 1)
	f.write(func(tx *WriteTxn) error { return tx.PutMeta(Meta{Epoch: 3, AppSeq: 1, Cluster: 42}) })

	restored, err := Restore(f.read().Dump())
	if err != nil {
		t.Fatal(err)
	}
	r := restored.Snapshot()
	if m := r.Meta(); r.Index != f.index || m.Epoch != 3 || m.AppSeq != 1 || m.Cluster != 42 || m.Keys != nil {
		t.Fatalf("restored index %d meta %+v", r.Index, r.Meta())
	}
	if c := r.Container(am.ID); c == nil || *c != *am {
		t.Fatalf("restored container %+v, want %+v", c, am)
	}
	if app := r.App(nil, appID); app == nil || app.CurrentAttempt != am.AttemptID {
		t.Fatalf("restored app %+v", app)
	}
	if got := len(r.ContainersByNode("n1:1")); got != 1 {
		t.Fatalf("restored node index has %d containers", got)
	}
}

// An application's record holds what its live containers hold, as they
// are placed and complete, and a restore counts it again from the
// containers whatever the snapshot says.
func TestApplicationHoldsItsContainers(t *testing.T) {
	f := newFixture(t)
	f.node("n1:1", 4096)
	f.write(func(tx *WriteTxn) error {
		return tx.RegisterNode(&Node{ID: "g1:1", State: yarnpb.NodeState_NODE_RUNNING, Labels: []string{"gpu"}, Total: Resource{4096, 8}}, nil, 1)
	})
	f.submit(1)
	am := f.place("n1:1", true, 1)
	a := f.place("n1:1", false, 2)
	// A container planned for a label its node lacks is not placed.
	f.placeIn("n1:1", "gpu", false, 3, 0)
	f.placeIn("g1:1", "ssd", false, 3, 0)
	f.placeIn("g1:1", "gpu", false, 3, 1)
	app := f.read().App(nil, appID)
	if app.Used != (Resource{384, 3}) || app.AMUsed != (Resource{128, 1}) || app.LabeledUsed != (Resource{128, 1}) || app.NumContainers != 3 {
		t.Fatalf("with the AM and two containers, one labeled: %+v", app)
	}
	if len(app.UsedByLabel) != 1 || app.UsedByLabel["gpu"] != (Resource{128, 1}) {
		t.Fatalf("by label: %v, want gpu's one container", app.UsedByLabel)
	}
	// A committed record keeps its own: the next placement copies it.
	before := f.read()
	g2 := f.placeIn("g1:1", "gpu", false, 4, 1)
	if got := before.App(nil, appID).UsedByLabel["gpu"]; got != (Resource{128, 1}) {
		t.Fatalf("an older snapshot's record changed: gpu %v", got)
	}
	if got := f.read().App(nil, appID).UsedByLabel["gpu"]; got != (Resource{256, 2}) {
		t.Fatalf("two gpu containers: %v", got)
	}
	f.status("g1:1", g2.ID, yarnpb.ContainerState_CONTAINER_COMPLETED, 0)
	if got := f.read().App(nil, appID).UsedByLabel["gpu"]; got != (Resource{128, 1}) {
		t.Fatalf("after one gpu container completed: %v", got)
	}
	f.status("n1:1", a.ID, yarnpb.ContainerState_CONTAINER_COMPLETED, 0)
	if app := f.read().App(nil, appID); app.Used != (Resource{256, 2}) || app.NumContainers != 2 {
		t.Fatalf("after one completed: %+v", app)
	}
	d := f.read().Dump()
	for _, x := range d.Apps {
		x.Used, x.NumContainers = Resource{9999, 99}, 42 // a snapshot that says otherwise
		x.UsedByLabel = map[string]Resource{"ssd": {1, 1}}
	}
	r, err := Restore(d)
	if err != nil {
		t.Fatal(err)
	}
	if app := r.Snapshot().App(nil, appID); app.Used != (Resource{256, 2}) || app.AMUsed != (Resource{128, 1}) || app.LabeledUsed != (Resource{128, 1}) || app.NumContainers != 2 ||
		len(app.UsedByLabel) != 1 || app.UsedByLabel["gpu"] != (Resource{128, 1}) {
		t.Fatalf("restored: %+v", app)
	}
	f.status("n1:1", am.ID, yarnpb.ContainerState_CONTAINER_COMPLETED, 1)
	if app := f.read().App(nil, appID); app.AMUsed != (Resource{}) {
		t.Fatalf("after the AM exited: %+v", app)
	}
}

// The sparse indexes follow a container through its life: placed, it is
// allocated, live and on its node; handed to its AM it is no longer
// allocated; completed it is in none of them, and still found by id and
// by its attempt.
func TestContainersLeaveTheIndexesTheyAreNoLongerReadFor(t *testing.T) {
	f := newFixture(t)
	f.node("n1:1", 4096)
	f.submit(1)
	f.place("n1:1", true, 1)
	c := f.place("n1:1", false, 2)
	ids := func(cs []*Container) (out []string) {
		for _, x := range cs {
			if !x.IsAM {
				out = append(out, x.ID)
			}
		}
		return out
	}
	check := func(when string, allocated, live, onNode bool) {
		t.Helper()
		r := f.read()
		for _, x := range []struct {
			index string
			got   []string
			want  bool
		}{
			{"allocated", ids(r.AllocatedContainers()), allocated},
			{"live", ids(r.LiveContainers()), live},
			{"node", ids(r.ContainersByNode("n1:1")), onNode},
		} {
			if in := len(x.got) == 1 && x.got[0] == c.ID; in != x.want || len(x.got) > 1 {
				t.Errorf("%s: the %s index holds %v; want the container in it: %v", when, x.index, x.got, x.want)
			}
		}
		if r.Container(c.ID) == nil || len(ids(r.ContainersByAttempt(nil, c.AttemptID))) != 1 {
			t.Errorf("%s: the container is not found by id or by attempt", when)
		}
		if !slices.Equal(slices.Collect(r.EachContainerOfApp(c.AppID)), r.ContainersByApp(nil, c.AppID)) ||
			!slices.Equal(slices.Collect(r.EachContainerOfAttempt(c.AttemptID)), r.ContainersByAttempt(nil, c.AttemptID)) {
			t.Errorf("%s: the iterators of an application's and an attempt's containers differ from their lists", when)
		}
		if !slices.Equal(r.AppendContainersByNode(make([]*Container, 0, 1), "n1:1"), r.ContainersByNode("n1:1")) {
			t.Errorf("%s: AppendContainersByNode differs from ContainersByNode", when)
		}
	}
	check("placed", true, true, true)
	f.write(func(tx *WriteTxn) error { return tx.AcquireContainers([]string{c.ID}, 1) })
	check("handed to the AM", false, true, true)
	f.status("n1:1", c.ID, yarnpb.ContainerState_CONTAINER_RUNNING, 0)
	check("running", false, true, true)
	f.status("n1:1", c.ID, yarnpb.ContainerState_CONTAINER_COMPLETED, 0)
	check("completed", false, false, false)
}
