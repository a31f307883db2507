package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

// A pass refreshes only the nodes written since the last one; whatever
// the writes (use, state, labels, nodes joining and leaving), its views
// are those a scheduler reading every node makes.
func TestRefreshedNodeViewsMatchFreshOnes(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { refreshedNodeViews(t, seed) })
	}
}

func refreshedNodeViews(t *testing.T, seed uint64) {
	nodes := map[string]int64{}
	for i := range 40 {
		nodes[fmt.Sprintf("n%02d:1", i)] = 8192
	}
	w := newWorld(t, nodes)
	sch := New(nil, 0)
	rng := rand.New(rand.NewPCG(seed, 2))
	states := []yarnpb.NodeState{yarnpb.NodeState_NODE_RUNNING, yarnpb.NodeState_NODE_UNHEALTHY, yarnpb.NodeState_NODE_DECOMMISSIONING, yarnpb.NodeState_NODE_LOST}
	joined := 40
	const steps = 1000
	for step := range steps {
		// Most steps change what nodes hold, as placements and
		// completions do; a few change more.
		w.write(func(tx *state.WriteTxn) error {
			all := tx.Read().Nodes()
			for range 1 + rng.IntN(5) {
				n := *all[rng.IntN(len(all))]
				switch k := rng.IntN(100); {
				case k == 0:
					n.State = states[rng.IntN(len(states))]
				case k == 1:
					n.Labels = [][]string{nil, {"gpu"}, {"gpu", "ssd"}}[rng.IntN(3)]
				case k == 2:
					joined++
					n = state.Node{ID: fmt.Sprintf("n%02d:1", joined), State: yarnpb.NodeState_NODE_RUNNING, Total: state.Resource{MemoryMB: 4096, VCores: 8}}
				case k == 3:
					n.Total.MemoryMB += 1024
				default:
					n.Used.MemoryMB = rng.Int64N(n.Total.MemoryMB + 1)
					n.Used.VCores = rng.Int32N(n.Total.VCores + 1)
				}
				if err := tx.PutNode(&n); err != nil {
					return err
				}
			}
			return nil
		})
		r := w.s.Snapshot()
		got, want := sch.newView(r, asks(nil), nil), New(nil, 0).newView(r, asks(nil), nil)
		if err := sameNodeViews(got, want); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		// A pass spends its views' room; the next starts from the state.
		for _, nv := range got.nodes {
			nv.free = state.Resource{}
		}
	}
	if sch.buf.reads > steps/2 {
		t.Fatalf("every node was read in %d passes of %d: the views were seldom refreshed", sch.buf.reads, steps)
	}
}

func sameNodeViews(got, want *view) error {
	if got.total != want.total || got.free != want.free {
		return fmt.Errorf("total %v, free %v; want %v, %v", got.total, got.free, want.total, want.free)
	}
	ids := func(nvs []*nodeView) (out []string) {
		for _, nv := range nvs {
			out = append(out, nv.node.ID)
		}
		return out
	}
	if !slices.Equal(ids(got.nodes), ids(want.nodes)) {
		return fmt.Errorf("nodes %v, want %v", ids(got.nodes), ids(want.nodes))
	}
	for _, nv := range want.nodes {
		g := got.byID[nv.node.ID]
		if g == nil || g.node != nv.node || g.free != nv.free || g.total != nv.total || g.unlabeled != nv.unlabeled {
			return fmt.Errorf("node %s: view %+v, want %+v", nv.node.ID, g, nv)
		}
	}
	if len(got.byID) != len(want.byID) || len(got.parts) != len(want.parts) || len(got.labeled) != len(want.labeled) {
		return fmt.Errorf("index %d, partitions %d, labeled %d; want %d, %d, %d", len(got.byID), len(got.parts), len(got.labeled), len(want.byID), len(want.parts), len(want.labeled))
	}
	for label, p := range want.parts {
		if g := got.parts[label]; g == nil || !slices.Equal(ids(g.nodes), ids(p.nodes)) {
			return fmt.Errorf("partition %q differs", label)
		}
	}
	for id := range want.labeled {
		if !got.labeled[id] {
			return fmt.Errorf("node %s not labeled", id)
		}
	}
	return nil
}
