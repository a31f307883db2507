package graph

import (
	"reflect"
	"testing"

	"github.com/loom-project/loom/proto/flinkpb"
)

// vertexes makes a JobGraph of one operator per vertex (node i in vertex
// i) with the given parallelisms, joined by edges {source, target,
// partitioner}.
func vertexes(par []int32, edges ...[3]any) *flinkpb.JobGraph {
	jg := &flinkpb.JobGraph{}
	for i, p := range par {
		jg.Vertices = append(jg.Vertices, &flinkpb.JobVertex{Parallelism: p, Operators: []*flinkpb.Operator{{Node: int32(i)}}})
	}
	for _, e := range edges {
		jg.Edges = append(jg.Edges, &flinkpb.JobEdge{SourceNode: int32(e[0].(int)), TargetNode: int32(e[1].(int)), Partitioner: e[2].(string)})
	}
	return jg
}

func TestRegions(t *testing.T) {
	for _, tc := range []struct {
		name string
		jg   *flinkpb.JobGraph
		want [][]int
		n    int
	}{
		{"a chained pipeline: one region per subtask", vertexes([]int32{3}), [][]int{{0, 1, 2}}, 3},
		{"forward edges keep parallel instances apart", vertexes([]int32{2, 2}, [3]any{0, 1, "FORWARD"}), [][]int{{0, 1}, {0, 1}}, 2},
		{"a keyBy joins every subtask", vertexes([]int32{2, 3}, [3]any{0, 1, "HASH"}), [][]int{{0, 0}, {0, 0, 0}}, 1},
		{"rescale 4 -> 2 pairs producers", vertexes([]int32{4, 2}, [3]any{0, 1, "RESCALE"}), [][]int{{0, 0, 1, 1}, {0, 1}}, 2},
		{"independent pipelines are regions of their own",
			vertexes([]int32{2, 2, 1}, [3]any{0, 1, "REBALANCE"}), [][]int{{0, 0}, {0, 0}, {1}}, 2},
	} {
		got, n := Regions(tc.jg)
		if !reflect.DeepEqual(got, tc.want) || n != tc.n {
			t.Errorf("%s: regions %v (%d), want %v (%d)", tc.name, got, n, tc.want, tc.n)
		}
	}
}

func TestLogicalSlots(t *testing.T) {
	jg := vertexes([]int32{2, 3, 1})
	for i, g := range []string{"a", "b", "a"} {
		jg.Vertices[i].SlotSharingGroup = g
	}
	want := [][]int{{0, 1}, {2, 3, 4}, {0}}
	if got := LogicalSlots(jg); !reflect.DeepEqual(got, want) || SlotsNeeded(jg) != 5 {
		t.Errorf("logical slots %v of %d, want %v of 5", got, SlotsNeeded(jg), want)
	}
}
