package state

import (
	"fmt"
	"testing"

	"github.com/loom-project/loom/proto/yarnpb"
)

// BenchmarkPlaceContainers measures the FSM's placement of a plan's
// containers into a store that already holds a 10,000-node cluster's
// 80,000, by the containers one write transaction carries.
func BenchmarkPlaceContainers(b *testing.B) {
	for _, batch := range []int{128, 256, 512, 2048} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			const nodes, held = 10000, 80000
			f := &fixture{t: &testing.T{}}
			s, err := NewStore()
			if err != nil {
				b.Fatal(err)
			}
			f.s = s
			f.write(func(tx *WriteTxn) error {
				for i := range nodes {
					n := &Node{ID: fmt.Sprintf("10.0.%d.%d:8041", i/250, i%250), State: yarnpb.NodeState_NODE_RUNNING, Total: Resource{1 << 40, 1 << 20}}
					if err := tx.RegisterNode(n, nil, 1); err != nil {
						return err
					}
				}
				return nil
			})
			f.submit(1)
			app := f.read().App(nil, appID)
			at := f.read().Attempt(nil, app.CurrentAttempt)
			seq := int64(0)
			plan := func(n int) []*Container {
				cs := make([]*Container, n)
				for i := range cs {
					seq++
					cs[i] = &Container{ID: yarnpb.ContainerID(1, appID, at.Num, seq), AttemptID: at.ID, NodeID: fmt.Sprintf("10.0.%d.%d:8041", (seq%nodes)/250, (seq%nodes)%250), Resource: Resource{1024, 1}}
				}
				return cs
			}
			for seq < held {
				cs := plan(batch)
				f.write(func(tx *WriteTxn) error { _, err := tx.PlaceContainers(cs); return err })
			}
			b.ResetTimer()
			placed := 0
			for b.Loop() {
				cs := plan(batch)
				f.index++
				if err := s.Write(f.index, func(tx *WriteTxn) error {
					n, err := tx.PlaceContainers(cs)
					placed += n
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "containers/s")
		})
	}
}
