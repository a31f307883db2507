package scheduler

import (
	"testing"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

// node is a node of a test world: its rack and labels.
type node struct {
	id, rack string
	labels   []string
	mem      int64
}

func newNodes(t *testing.T, nodes ...node) *world {
	w := newWorld(t, nil)
	for _, n := range nodes {
		w.write(func(tx *state.WriteTxn) error {
			return tx.RegisterNode(&state.Node{ID: n.id, Rack: n.rack, Labels: n.labels, State: yarnpb.NodeState_NODE_RUNNING, Total: state.Resource{MemoryMB: n.mem, VCores: 100}}, nil, 1)
		})
	}
	return w
}

func nodesOf(plan []*state.Container) []string {
	var out []string
	for _, c := range plan {
		out = append(out, c.NodeID)
	}
	return out
}

// Delay scheduling, as YARN's: an ask whose preferred node is full waits
// node-locality-delay missed opportunities (each node with room in a
// pass is one), then takes a node of the preferred node's rack, and after
// rack-locality-delay more, any node.
func TestDelaySchedulingNodeThenRackThenAny(t *testing.T) {
	w := newNodes(t, node{id: "a1", rack: "/r1", mem: 1000}, node{id: "a2", rack: "/r1", mem: 1000},
		node{id: "b1", rack: "/r2", mem: 1000}, node{id: "b2", rack: "/r2", mem: 1000})
	at := w.app("application_1_0001", 0) // its AM, 1 MB, on one of the nodes
	s := New(DefaultTree(), 0)
	s.NodeLocalityDelay, s.RackLocalityDelay = 8, 8
	// a1 has room for one: node-local at once, and the count starts over.
	a := ask(1, 600, 1, []string{"a1"}, true)
	plan := s.Plan(w.s.Snapshot(), asks(map[string]*Asks{at: one(a)}), 1, nil)
	if got := nodesOf(plan); len(got) != 1 || got[0] != "a1" {
		t.Fatalf("placed on %v, want a1", got)
	}
	w.commit(plan)
	// a1 is full: the next waits, 3 opportunities a pass (a2, b1, b2);
	// a1's container, not yet handed to the AM, counts against the 2.
	a = ask(1, 600, 2, []string{"a1"}, true)
	src := asks(map[string]*Asks{at: one(a)})
	for pass := 1; pass <= 3; pass++ {
		if plan := s.Plan(w.s.Snapshot(), src, 1, nil); len(plan) != 0 || !s.Delayed {
			t.Fatalf("pass %d placed on %v (delayed %v); want it to wait for a1", pass, nodesOf(plan), s.Delayed)
		}
	}
	// 9 missed: the rack.
	plan = s.Plan(w.s.Snapshot(), src, 1, nil)
	if got := nodesOf(plan); len(got) != 1 || got[0] != "a2" {
		t.Fatalf("after the node delay placed on %v, want a2 of a1's rack", got)
	}
	w.commit(plan)
	// The rack is full now: one more waits again, then takes any node.
	// (Asks are outstanding totals: containers placed and not yet
	// handed to the AM count against them.)
	src = asks(map[string]*Asks{at: one(ask(1, 600, 3, []string{"a1"}, true))})
	for pass := 1; ; pass++ {
		plan = s.Plan(w.s.Snapshot(), src, 1, nil)
		if len(plan) > 0 {
			if got := nodesOf(plan); got[0] != "b1" && got[0] != "b2" || pass < 2 {
				t.Fatalf("pass %d placed on %v; want another rack's node after the rack delay", pass, got)
			}
			break
		}
		if pass > 10 {
			t.Fatal("the ask never relaxed to any node")
		}
	}
}

// Strict locality may name racks; a node label keeps containers on its
// nodes, and the nodes without labels are the default partition.
func TestRacksAndLabels(t *testing.T) {
	w := newNodes(t, node{id: "a1", rack: "/r1", mem: 1000}, node{id: "b1", rack: "/r2", mem: 1000},
		node{id: "g1", rack: "/r2", labels: []string{"gpu"}, mem: 1000})
	at := w.app("application_1_0001", 0)
	rack := &Ask{Key: AskKey{Priority: 1, Capability: state.Resource{MemoryMB: 100, VCores: 1}}, Count: 3, Racks: []string{"/r2"}, Relax: false}
	for _, c := range New(DefaultTree(), 0).Plan(w.s.Snapshot(), asks(map[string]*Asks{at: one(rack)}), 1, nil) {
		if c.NodeID != "b1" {
			t.Errorf("a container of a strict /r2 ask on %s; want b1 (g1 is gpu's)", c.NodeID)
		}
	}
	gpu := &Ask{Key: AskKey{Priority: 1, Capability: state.Resource{MemoryMB: 100, VCores: 1}}, Count: 4, Relax: true, Label: "gpu"}
	if plan := New(DefaultTree(), 0).Plan(w.s.Snapshot(), asks(map[string]*Asks{at: one(gpu)}), 1, nil); len(plan) != 0 {
		t.Fatalf("placed %d gpu containers for a queue that may not use gpu", len(plan))
	}
	gpuTree := parse(t, `queue "root" {
  queue "default" {
    capacity               = "100%"
    accessible_node_labels = ["gpu"]
  }
}`)
	plan := New(gpuTree, 0).Plan(w.s.Snapshot(), asks(map[string]*Asks{at: one(gpu)}), 1, nil)
	if len(plan) != 4 {
		t.Fatalf("placed %d gpu containers, want 4", len(plan))
	}
	for _, c := range plan {
		if c.NodeID != "g1" {
			t.Errorf("a gpu container on %s", c.NodeID)
		}
	}
	plain := ask(1, 100, 30, nil, true)
	for _, c := range New(DefaultTree(), 0).Plan(w.s.Snapshot(), asks(map[string]*Asks{at: one(plain)}), 1, nil) {
		if c.NodeID == "g1" {
			t.Error("an unlabeled container on the gpu node")
		}
	}
}

// max_per_node spreads an application's containers: one per node.
func TestAntiAffinity(t *testing.T) {
	w := newNodes(t, node{id: "n1", mem: 1000}, node{id: "n2", mem: 1000}, node{id: "n3", mem: 1000})
	at := w.app("application_1_0001", 0)
	spread := &Ask{Key: AskKey{Priority: 1, Capability: state.Resource{MemoryMB: 100, VCores: 1}}, Count: 5, Relax: true, MaxPerNode: 1}
	s := New(DefaultTree(), 0)
	plan := s.Plan(w.s.Snapshot(), asks(map[string]*Asks{at: one(spread)}), 1, nil)
	per := map[string]int{}
	for _, c := range plan {
		per[c.NodeID]++
	}
	if len(plan) != 3 || len(per) != 3 {
		t.Fatalf("placed %v: want one container on each of the 3 nodes", per)
	}
	w.commit(plan)
	if more := s.Plan(w.s.Snapshot(), asks(map[string]*Asks{at: one(spread)}), 1, nil); len(more) != 0 {
		t.Fatalf("placed %v past one a node", nodesOf(more))
	}
}

// An application's next AM avoids the node where its last one failed.
func TestAMBlacklisting(t *testing.T) {
	w := newNodes(t, node{id: "n1", mem: 1000}, node{id: "n2", mem: 1000}, node{id: "n3", mem: 1000})
	id := "application_1_0001"
	w.write(func(tx *state.WriteTxn) error {
		return tx.SubmitApp(&state.Application{ID: id, Queue: "root.default", AMResource: state.Resource{MemoryMB: 100, VCores: 1}, MaxAttempts: 2}, 1)
	})
	s := New(DefaultTree(), 0)
	plan := s.Plan(w.s.Snapshot(), asks(nil), 1, nil)
	if len(plan) != 1 || !plan[0].IsAM {
		t.Fatalf("plan %+v", plan)
	}
	first := plan[0].NodeID
	w.commit(plan)
	w.write(func(tx *state.WriteTxn) error {
		return tx.FailAttempt(tx.Read().Attempt(nil, yarnpb.AttemptID(id, 1)), "the AM exited with code 1", 2)
	})
	for range 5 {
		plan = s.Plan(w.s.Snapshot(), asks(nil), 1, nil)
		if len(plan) != 1 || !plan[0].IsAM || plan[0].NodeID == first {
			t.Fatalf("second AM planned %+v; want it off %s", plan, first)
		}
	}
}
