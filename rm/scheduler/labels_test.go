package scheduler

import (
	"math"
	"strings"
	"testing"
)

// labelQueues gives prod and dev 70/30 of the default partition and
// 25/75 of the gpu partition; dev may grow to half of gpu.
const labelQueues = `queue "root" {
  queue "prod" {
    capacity               = "70%"
    user_limit_factor      = 10
    accessible_node_labels = ["gpu"]
    label "gpu" {
      capacity = "25%"
    }
  }
  queue "dev" {
    capacity               = "30%"
    user_limit_factor      = 10
    accessible_node_labels = ["gpu"]
    label "gpu" {
      capacity         = "75%"
      maximum_capacity = "MAX"
    }
  }
}`

// gpuAsk is n containers of mem MB on gpu nodes.
func gpuAsk(mem int64, n int32) *Ask {
	a := ask(2, mem, n, nil, true)
	a.Label = "gpu"
	return a
}

// labelWorld has two gpu nodes of 2,000 MB each and a node without
// labels (the last by id, so the test AMs run there).
func labelWorld(t *testing.T) *world {
	return newNodes(t, node{id: "g1", labels: []string{"gpu"}, mem: 2000}, node{id: "g2", labels: []string{"gpu"}, mem: 2000},
		node{id: "n1", mem: 10_000})
}

// In a labeled partition, queues grow toward their label capacities
// together, as they do in the default one, and stay within their label
// maximums.
func TestLabeledPartitionCapacities(t *testing.T) {
	w := labelWorld(t)
	prod := w.queuedApp("application_1_0001", "root.prod", "ann")
	dev := w.queuedApp("application_1_0002", "root.dev", "bob")
	src := asks(map[string]*Asks{prod: one(gpuAsk(100, 100)), dev: one(gpuAsk(100, 100))})
	s := New(parse(t, strings.Replace(labelQueues, "MAX", "100%", 1)), 0)
	plan := s.Plan(w.s.Snapshot(), src, 1, nil)
	for _, c := range plan {
		if c.NodeID == "n1" || c.Label != "gpu" {
			t.Fatalf("a gpu container on %s, labeled %q", c.NodeID, c.Label)
		}
	}
	// 4,000 MB of gpu: 1,000 and 3,000.
	if got := byQueue(w, plan); got["root.prod"] != 1000 || got["root.dev"] != 3000 {
		t.Fatalf("gpu shares %v; want prod 1000 MB and dev 3000 MB (25%% and 75%%)", got)
	}
	w.commit(plan)
	r := w.s.Snapshot()
	if u := r.App(nil, "application_1_0002").UsedByLabel["gpu"]; u.MemoryMB != 3000 {
		t.Fatalf("dev's application holds %v of gpu in its record, want 3000 MB", u)
	}

	// Alone, dev grows past its gpu capacity (here a quarter) to its
	// maximum, half, and no further.
	w2 := labelWorld(t)
	dev = w2.queuedApp("application_1_0002", "root.dev", "bob")
	swapped := strings.NewReplacer(`"25%"`, `"75%"`, `"75%"`, `"25%"`, "MAX", "50%").Replace(labelQueues)
	s = New(parse(t, swapped), 0)
	plan = s.Plan(w2.s.Snapshot(), asks(map[string]*Asks{dev: one(gpuAsk(100, 100))}), 1, nil)
	if got := byQueue(w2, plan); got["root.dev"] != 2000 {
		t.Fatalf("dev alone took %v of gpu; want its maximum, 2000 MB", got)
	}
	// Its default-partition asks are not held back by its use of gpu.
	w2.commit(plan)
	both := &Asks{Asks: map[AskKey]*Ask{}}
	for _, a := range []*Ask{gpuAsk(100, 120), ask(1, 100, 5, nil, true)} {
		both.Asks[a.Key] = a
	}
	plan = s.Plan(w2.s.Snapshot(), asks(map[string]*Asks{dev: both}), 1, nil)
	if len(plan) != 5 {
		t.Fatalf("placed %d, want dev's 5 containers without a label and no more gpu", len(plan))
	}
	for _, c := range plan {
		if c.NodeID != "n1" || c.Label != "" {
			t.Fatalf("a default-partition container on %s, labeled %q", c.NodeID, c.Label)
		}
	}
}

// Plans take turns at the partitions: asks that fill every plan in one
// do not starve another.
func TestPartitionsTakeTurns(t *testing.T) {
	w := labelWorld(t)
	prod := w.queuedApp("application_1_0001", "root.prod", "ann")
	both := &Asks{Asks: map[AskKey]*Ask{}}
	for _, a := range []*Ask{gpuAsk(100, 10), ask(1, 1, 10_000, nil, true)} {
		both.Asks[a.Key] = a
	}
	s := New(parse(t, strings.Replace(labelQueues, "MAX", "100%", 1)), 8)
	gpu := 0
	for range 2 {
		plan := s.Plan(w.s.Snapshot(), asks(map[string]*Asks{prod: both}), 1, nil)
		if len(plan) != 8 {
			t.Fatalf("a plan of %d, want the batch of 8", len(plan))
		}
		for _, c := range plan {
			if c.Label == "gpu" {
				gpu++
			}
		}
		w.commit(plan)
	}
	if gpu == 0 {
		t.Fatal("two full plans placed no gpu container")
	}
}

// Preemption in a labeled partition takes back the partition's own
// containers, from the queue over its label guarantee, for the queue
// below its own; the default partition is left alone.
func TestPreemptionInALabeledPartition(t *testing.T) {
	w := labelWorld(t)
	s := New(parse(t, strings.Replace(labelQueues, "MAX", "100%", 1)), 0)
	prod := w.queuedApp("application_1_0001", "root.prod", "ann")
	both := &Asks{Asks: map[AskKey]*Ask{}}
	for _, a := range []*Ask{gpuAsk(500, 8), ask(1, 1000, 5, nil, true)} {
		both.Asks[a.Key] = a
	}
	plan := s.Plan(w.s.Snapshot(), asks(map[string]*Asks{prod: both}), 1, nil)
	if len(plan) != 13 {
		t.Fatalf("prod placed %d in the idle cluster, want all of gpu (8) and 5 more", len(plan))
	}
	w.commit(plan)
	dev := w.queuedApp("application_1_0002", "root.dev", "bob")
	victims := s.Preempt(w.s.Snapshot(), asks(map[string]*Asks{dev: one(gpuAsk(500, 8))}), nil)
	// dev is owed 3,000 MB of gpu, its 75%: prod keeps its 25%.
	if len(victims) != 6 {
		t.Fatalf("%d victims, want 6 of prod's gpu containers: %+v", len(victims), victims)
	}
	for _, v := range victims {
		if v.Container.Label != "gpu" || v.Queue != "root.prod" || v.For != "root.dev" {
			t.Fatalf("victim %+v: want prod's gpu containers for dev", v)
		}
	}
}

// A label block's percentages are of the parent's share of the
// partition; a queue that may use a label and gives no block is
// guaranteed none there and may grow to its parent's maximum.
func TestLabelShares(t *testing.T) {
	tree := parse(t, `queue "root" {
  queue "prod" {
    capacity               = "70%"
    accessible_node_labels = ["gpu"]
    label "gpu" {
      capacity         = "80%"
      maximum_capacity = "90%"
    }
    queue "etl" {
      capacity = "50%"
      label "gpu" { capacity = "100%" }
    }
    queue "serving" {
      capacity = "50%"
      label "gpu" { maximum_capacity = "50%" }
    }
  }
  queue "dev" {
    capacity               = "30%"
    accessible_node_labels = ["*"]
    label "gpu" { capacity = "20%" }
  }
}`)
	want := map[string]LabelShare{
		"root":              {1, 1},
		"root.prod":         {0.8, 0.9},
		"root.prod.etl":     {0.8, 0.9},
		"root.prod.serving": {0, 0.45},
		"root.dev":          {0.2, 1},
	}
	got := tree.LabelShares("gpu")
	for name, w := range want {
		if g := got[name]; math.Abs(g.Capacity-w.Capacity) > 1e-9 || math.Abs(g.Maximum-w.Maximum) > 1e-9 {
			t.Errorf("%s: %+v, want %+v", name, g, w)
		}
	}
	// ssd: only dev may use it ("*"), guaranteed none.
	if sh := tree.LabelShares("ssd"); sh["root.prod.etl"] != (LabelShare{}) || sh["root.dev"] != (LabelShare{0, 1}) {
		t.Errorf("ssd shares %+v", sh)
	}
}
