package scheduler

import (
	"strings"
	"testing"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

type world struct {
	t     testing.TB
	s     *state.Store
	index uint64
}

func newWorld(t testing.TB, nodes map[string]int64) *world {
	s, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, s: s}
	for id, mem := range nodes {
		w.write(func(tx *state.WriteTxn) error {
			return tx.RegisterNode(&state.Node{ID: id, State: yarnpb.NodeState_NODE_RUNNING, Total: state.Resource{MemoryMB: mem, VCores: 10000}}, nil, 1)
		})
	}
	return w
}

func (w *world) write(fn func(tx *state.WriteTxn) error) {
	w.t.Helper()
	w.index++
	if err := w.s.Write(w.index, fn); err != nil {
		w.t.Fatal(err)
	}
}

// app submits an application whose AM is running, so that its asks are
// scheduled.
func (w *world) app(id string, prio int32) string {
	w.write(func(tx *state.WriteTxn) error {
		return tx.SubmitApp(&state.Application{ID: id, Queue: "root.default", Priority: prio, AMResource: state.Resource{MemoryMB: 1, VCores: 1}, MaxAttempts: 1}, 1)
	})
	at := yarnpb.AttemptID(id, 1)
	w.write(func(tx *state.WriteTxn) error {
		r := tx.Read()
		var node string
		for _, n := range r.Nodes() {
			node = n.ID
		}
		_, err := tx.PlaceContainers([]*state.Container{{ID: yarnpb.ContainerID(1, id, 1, 1), AttemptID: at, NodeID: node, Resource: state.Resource{MemoryMB: 1, VCores: 1}, IsAM: true}})
		return err
	})
	return at
}

func (w *world) commit(plan []*state.Container) {
	w.write(func(tx *state.WriteTxn) error {
		n, err := tx.PlaceContainers(plan)
		if n != len(plan) {
			w.t.Fatalf("the FSM refused %d of %d planned placements", len(plan)-n, len(plan))
		}
		return err
	})
}

func asks(m map[string]*Asks) AskSource { return func(id string) *Asks { return m[id] } }

func ask(prio int32, mem int64, count int32, nodes []string, relax bool) *Ask {
	return &Ask{Key: AskKey{Priority: prio, Capability: state.Resource{MemoryMB: mem, VCores: 1}}, Count: count, Nodes: nodes, Relax: relax}
}

func one(a *Ask) *Asks { return &Asks{Asks: map[AskKey]*Ask{a.Key: a}} }

func TestPlacesAMContainersFirstInFIFOOrder(t *testing.T) {
	w := newWorld(t, map[string]int64{"n1:1": 1000})
	for _, id := range []string{"application_1_0001", "application_1_0002"} {
		w.write(func(tx *state.WriteTxn) error {
			return tx.SubmitApp(&state.Application{ID: id, Queue: "root.default", AMResource: state.Resource{MemoryMB: 400, VCores: 1}, MaxAttempts: 1}, 1)
		})
	}
	s := New(DefaultTree(), 0)
	plan := s.Plan(w.s.Snapshot(), asks(nil), 1, nil)
	// The AM share is 50%: one 400 MB AM fits under 500 MB, two do not.
	if len(plan) != 1 || !plan[0].IsAM || plan[0].AppID != "application_1_0001" {
		t.Fatalf("plan %+v: want the first application's AM only", plan)
	}
	w.commit(plan)
	plan = s.Plan(w.s.Snapshot(), asks(nil), 1, nil)
	if len(plan) != 0 || !strings.Contains(s.Waiting["application_1_0002"].String(), "AM resource limit") {
		t.Fatalf("plan %+v, waiting %v: want the second AM held by the AM share", plan, s.Waiting)
	}
}

func TestAsksAreTotalsNotDeltas(t *testing.T) {
	w := newWorld(t, map[string]int64{"n1:1": 10000})
	at := w.app("application_1_0001", 0)
	a := ask(1, 100, 3, nil, true)
	src := asks(map[string]*Asks{at: one(a)})
	s := New(DefaultTree(), 0)
	plan := s.Plan(w.s.Snapshot(), src, 1, nil)
	if len(plan) != 3 {
		t.Fatalf("planned %d containers for an ask of 3", len(plan))
	}
	w.commit(plan)
	// The AM has not seen them yet and still asks for 3: nothing more.
	if plan := s.Plan(w.s.Snapshot(), src, 1, nil); len(plan) != 0 {
		t.Fatalf("planned %d more containers for an ask already met", len(plan))
	}
	seen := map[string]bool{}
	for _, c := range plan {
		if seen[c.ID] {
			t.Fatalf("container id %s planned twice", c.ID)
		}
		seen[c.ID] = true
	}
}

func TestPriorityAndLocality(t *testing.T) {
	w := newWorld(t, map[string]int64{"n1:1": 1000, "n2:1": 1000, "n3:1": 1000})
	at := w.app("application_1_0001", 0)
	tests := []struct {
		name  string
		asks  []*Ask
		check func(t *testing.T, plan []*state.Container)
	}{
		{"strict locality stays on its node", []*Ask{ask(1, 100, 4, []string{"n2:1"}, false)}, func(t *testing.T, plan []*state.Container) {
			for _, c := range plan {
				if c.NodeID != "n2:1" {
					t.Errorf("container on %s, want n2:1", c.NodeID)
				}
			}
		}},
		{"strict locality on a full node waits", []*Ask{ask(1, 2000, 1, []string{"n2:1"}, false)}, func(t *testing.T, plan []*state.Container) {
			if len(plan) != 0 {
				t.Errorf("placed %+v", plan)
			}
		}},
		{"relaxed locality without delay moves on", []*Ask{ask(1, 600, 2, []string{"n2:1"}, true)}, func(t *testing.T, plan []*state.Container) {
			if len(plan) != 2 || plan[0].NodeID != "n2:1" || plan[1].NodeID == "n2:1" {
				t.Errorf("plan %+v: want n2:1 then another node", plan)
			}
		}},
		{"lower priority number first", []*Ask{ask(5, 900, 3, nil, true), ask(1, 900, 3, nil, true)}, func(t *testing.T, plan []*state.Container) {
			if len(plan) != 3 {
				t.Fatalf("plan %+v", plan)
			}
			for _, c := range plan {
				if c.Priority != 1 {
					t.Errorf("placed priority %d before priority 1 was met", c.Priority)
				}
			}
		}},
		{"spread over nodes", []*Ask{ask(1, 10, 6, nil, true)}, func(t *testing.T, plan []*state.Container) {
			per := map[string]int{}
			for _, c := range plan {
				per[c.NodeID]++
			}
			if len(per) != 3 || per["n1:1"] != 2 {
				t.Errorf("placement %v: want 2 per node", per)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &Asks{Asks: map[AskKey]*Ask{}}
			for _, a := range tc.asks {
				m.Asks[a.Key] = a
			}
			s := New(DefaultTree(), 0)
			s.NodeLocalityDelay, s.RackLocalityDelay = 0, 0
			tc.check(t, s.Plan(w.s.Snapshot(), asks(map[string]*Asks{at: m}), 1, nil))
		})
	}
}

func TestBlacklistedNodesAreSkipped(t *testing.T) {
	w := newWorld(t, map[string]int64{"n1:1": 1000, "n2:1": 1000})
	at := w.app("application_1_0001", 0)
	a := ask(1, 10, 4, nil, true)
	m := one(a)
	m.Blacklist = map[string]bool{"n1:1": true}
	for _, c := range New(DefaultTree(), 0).Plan(w.s.Snapshot(), asks(map[string]*Asks{at: m}), 1, nil) {
		if c.NodeID == "n1:1" {
			t.Fatalf("placed on blacklisted node: %+v", c)
		}
	}
}

func TestHigherApplicationPriorityFirst(t *testing.T) {
	w := newWorld(t, map[string]int64{"n1:1": 1000})
	low := w.app("application_1_0001", 0)
	high := w.app("application_1_0002", 10)
	src := asks(map[string]*Asks{low: one(ask(1, 500, 2, nil, true)), high: one(ask(1, 500, 2, nil, true))})
	plan := New(DefaultTree(), 0).Plan(w.s.Snapshot(), src, 1, nil)
	if len(plan) != 1 || plan[0].AttemptID != high {
		t.Fatalf("plan %+v: want one container for the high-priority application", plan)
	}
}

func TestResolveQueue(t *testing.T) {
	for _, name := range []string{"", "default", "root.default"} {
		if q, err := DefaultTree().Resolve(name); err != nil || q != "root.default" {
			t.Errorf("Resolve(%q) = %q, %v", name, q, err)
		}
	}
	if _, err := DefaultTree().Resolve("nope"); err == nil || !strings.Contains(err.Error(), "the leaf queues: root.default") {
		t.Errorf("unknown queue: %v", err)
	}
	tree := parse(t, `queue "root" {
  queue "a" {
    capacity = "50%"
    queue "x" { capacity = "100%" }
  }
  queue "b" {
    capacity = "50%"
    queue "x" { capacity = "50%" }
    queue "y" { capacity = "50%" }
  }
}`)
	for name, want := range map[string]string{"y": "root.b.y", "b.x": "root.b.x", "root.a.x": "root.a.x"} {
		if q, err := tree.Resolve(name); err != nil || q != want {
			t.Errorf("Resolve(%q) = %q, %v; want %s", name, q, err, want)
		}
	}
	for name, want := range map[string]string{
		"x":    `queue "x" is ambiguous: root.a.x, root.b.x`,
		"b":    "queue root.b is a parent queue; applications go to its leaves: root.b.x, root.b.y",
		"root": "queue root is a parent queue",
	} {
		if _, err := tree.Resolve(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Resolve(%q): %v; want %q", name, err, want)
		}
	}
}

func TestInflightPlacementsCountAsPlaced(t *testing.T) {
	w := newWorld(t, map[string]int64{"n1:1": 1000})
	at := w.app("application_1_0001", 0)
	src := asks(map[string]*Asks{at: one(ask(1, 300, 4, nil, true))})
	s := New(DefaultTree(), 0)
	first := s.Plan(w.s.Snapshot(), src, 1, nil)
	if len(first) != 3 {
		t.Fatalf("first plan placed %d, want 3 (room for 3 of 300 MB)", len(first))
	}
	// While the first plan commits, a second one must not place on the
	// same room nor reuse its container ids.
	if second := s.Plan(w.s.Snapshot(), src, 1, first); len(second) != 0 {
		t.Fatalf("second plan placed %+v over in-flight placements", second)
	}
	w.commit(first)
	if third := s.Plan(w.s.Snapshot(), src, 1, first); len(third) != 0 {
		t.Fatalf("plan after commit placed %+v", third)
	}
}
