package scheduler

import (
	"fmt"
	"testing"

	"github.com/loom-project/loom/proto/yarnpb"
	"github.com/loom-project/loom/rm/state"
)

// BenchmarkPlan measures one scheduling pass over 10,000 nodes and 1,000
// running applications that each ask for 100 more containers of 1 GiB:
// with room on every node (a pass that plans a full batch of 256), and
// with every node full (a pass that finds nothing, as a saturated
// cluster's passes mostly do).
func BenchmarkPlan(b *testing.B) {
	for _, full := range []bool{false, true} {
		b.Run(fmt.Sprintf("full=%v", full), func(b *testing.B) {
			const nodes, apps = 10000, 1000
			w := newWorld(b, nil)
			w.write(func(tx *state.WriteTxn) error {
				for i := range nodes {
					n := &state.Node{ID: fmt.Sprintf("n%05d:1", i), State: yarnpb.NodeState_NODE_RUNNING, Total: state.Resource{MemoryMB: 16 * 1024, VCores: 8}}
					if err := tx.RegisterNode(n, nil, 1); err != nil {
						return err
					}
				}
				return nil
			})
			m := map[string]*Asks{}
			// Each application's AM runs, on a node of its own.
			w.write(func(tx *state.WriteTxn) error {
				for i := range apps {
					id := fmt.Sprintf("application_1_%04d", i+1)
					if err := tx.SubmitApp(&state.Application{ID: id, Queue: "root.default", AMResource: state.Resource{MemoryMB: 1024, VCores: 1}, MaxAttempts: 1}, 1); err != nil {
						return err
					}
					at := yarnpb.AttemptID(id, 1)
					am := &state.Container{ID: yarnpb.ContainerID(1, id, 1, 1), AttemptID: at, NodeID: fmt.Sprintf("n%05d:1", i*7), Resource: state.Resource{MemoryMB: 1024, VCores: 1}, IsAM: true}
					if n, err := tx.PlaceContainers([]*state.Container{am}); err != nil || n != 1 {
						return fmt.Errorf("placing the AM of %s: %d, %v", id, n, err)
					}
					m[at] = one(ask(1, 1024, 100, nil, true))
				}
				return nil
			})
			if full {
				// Fill every node with containers of the first application.
				at := yarnpb.AttemptID("application_1_0001", 1)
				w.write(func(tx *state.WriteTxn) error {
					var cs []*state.Container
					seq := int64(2)
					for _, n := range tx.Read().Nodes() {
						free := n.Total.Sub(n.Used)
						for free.MemoryMB >= 1024 && free.VCores >= 1 {
							cs = append(cs, &state.Container{ID: yarnpb.ContainerID(1, "application_1_0001", 1, seq), AttemptID: at, NodeID: n.ID, Resource: state.Resource{MemoryMB: 1024, VCores: 1}})
							seq++
							free = free.Sub(state.Resource{MemoryMB: 1024, VCores: 1})
						}
					}
					if _, err := tx.PlaceContainers(cs); err != nil {
						return err
					}
					// Handed to the AM, as a running cluster's are.
					ids := make([]string, len(cs))
					for i, c := range cs {
						ids[i] = c.ID
					}
					return tx.AcquireContainers(ids, 1)
				})
			}
			s := New(nil, 256)
			r := w.s.Snapshot()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				plan := s.Plan(r, asks(m), 1, nil)
				if full != (len(plan) == 0) {
					b.Fatalf("planned %d containers", len(plan))
				}
			}
		})
	}
}
